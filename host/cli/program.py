"""Program a board with a bitstream built by `spinemu build`.

Runs the board's programmer: openFPGALoader (iCEBreaker and ULX3S) or iceprog (iCEBreaker), the
first found on PATH unless --tool says which. The bitstream is written to the board's
configuration flash, so it stays after a power cycle; --sram loads it into the FPGA only (faster,
gone at power-off). When no programmer is installed, the command says which to install and where
the bitstream is (exit status 2). With --port, the design is identified over its serial port
afterwards and its build hash compared with the build's report.json.

examples:
  spinemu build --board icebreaker --out build/icebreaker
  spinemu program --board icebreaker
  spinemu program --board ulx3s --bitstream build/ulx3s --sram --port /dev/ttyUSB0
"""

import json
import shutil
import subprocess
import time
from pathlib import Path

from . import UserError

__all__ = ["add_arguments", "run", "PROGRAMMERS", "find_bitstream", "programmer_command"]

#: Board -> (bitstream file name, programmers that can load it, in order of preference).
PROGRAMMERS = {
    "icebreaker": ("top.bin", ("openFPGALoader", "iceprog")),
    "ulx3s": ("top.bit", ("openFPGALoader",)),
}

_INSTALL = {
    "openFPGALoader": "openFPGALoader (https://github.com/trabucayre/openFPGALoader; "
                      "Debian/Ubuntu: apt install openfpgaloader; or the YosysHQ oss-cad-suite)",
    "iceprog": "iceprog (Project IceStorm; Debian/Ubuntu: apt install fpga-icestorm; or the "
               "YosysHQ oss-cad-suite)",
}


def add_arguments(parser):
    parser.add_argument("--board", required=True, choices=sorted(PROGRAMMERS),
                        help="the board to program")
    parser.add_argument("--bitstream", type=Path, metavar="PATH",
                        help="the bitstream, or the folder `spinemu build --out` wrote "
                             "(default: build/BOARD)")
    parser.add_argument("--tool", choices=("openFPGALoader", "iceprog"),
                        help="the programmer to use (default: the first one found)")
    parser.add_argument("--sram", action="store_true",
                        help="load the FPGA only, not its flash (lost at power-off)")
    parser.add_argument("--port", metavar="URL",
                        help="afterwards, IDENTIFY the design on this serial port (e.g. "
                             "/dev/ttyUSB1) and check its build hash against report.json")


def find_bitstream(board, path=None):
    """The bitstream file of ``board``: ``path`` itself, or the board's file inside ``path``
    (default ``build/BOARD``); UserError saying how to build it if there is none."""
    name = PROGRAMMERS[board][0]
    path = Path("build") / board if path is None else Path(path)
    bitstream = path / name if path.is_dir() or path.suffix == "" else path
    if not bitstream.is_file():
        raise UserError(f"no bitstream at {bitstream}; build one with `spinemu build --board "
                        f"{board} --out {bitstream.parent}` (or pass --bitstream)")
    return bitstream


def programmer_command(tool, board, bitstream, sram=False):
    """The command line that loads ``bitstream`` onto ``board`` with ``tool``."""
    if tool == "openFPGALoader":
        return [tool, "-b", board] + ([] if sram else ["-f"]) + [str(bitstream)]
    if tool == "iceprog":
        return [tool] + (["-S"] if sram else []) + [str(bitstream)]
    raise ValueError(f"unknown programmer {tool!r}")


def _report(bitstream):
    path = bitstream.parent / "report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_design(port, report):
    from ..client import Client, LinkError, ProtocolError
    time.sleep(0.5)                                 # let the FPGA leave configuration
    try:
        with Client.connect(port) as dev:
            info = dev.info
    except (LinkError, ProtocolError) as error:
        raise UserError(f"the board was programmed, but the design does not answer on {port}: "
                        f"{error}") from None
    built = report.get("build_hash") if report else None
    got = f"0x{info.build_hash:08x}"
    if built is not None and built != got:
        raise UserError(f"the design on {port} reports build hash {got}, but the bitstream's "
                        f"report.json says {built}: is this the right port or bitstream?")
    print(f"the design on {port} answers: build hash {got}, {info.config.lanes} lanes, "
          f"max payload {info.max_payload}")


def run(args):
    bitstream = find_bitstream(args.board, args.bitstream)
    candidates = (args.tool,) if args.tool else PROGRAMMERS[args.board][1]
    if args.tool and args.tool not in PROGRAMMERS[args.board][1]:
        raise UserError(f"{args.tool} cannot program the {args.board}; use "
                        f"{' or '.join(PROGRAMMERS[args.board][1])}")
    tool = next((t for t in candidates if shutil.which(t)), None)
    if tool is None:
        example = " ".join(programmer_command(candidates[0], args.board, bitstream, args.sram))
        raise UserError(
            f"no programmer found on PATH: install {' or '.join(_INSTALL[t] for t in candidates)}."
            f"\nThe bitstream is {bitstream.resolve()}; program it with: {example}")
    command = programmer_command(tool, args.board, bitstream, args.sram)
    report = _report(bitstream)
    where = "its SRAM" if args.sram else "its flash"
    hash_note = f" (build hash {report['build_hash']})" if report and "build_hash" in report else ""
    print(f"programming the {args.board} ({where}) with {bitstream}{hash_note}:")
    print("  " + " ".join(command), flush=True)
    try:
        result = subprocess.run(command, check=False)
    except OSError as error:
        raise UserError(f"cannot run {tool}: {error}") from None
    if result.returncode != 0:
        raise UserError(f"{tool} failed with exit status {result.returncode} (is the board "
                        f"plugged in, and may this user open its USB device?)")
    print(f"programmed the {args.board}")
    if args.port:
        _check_design(args.port, report)
    return 0

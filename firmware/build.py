"""Build a board's bitstream with the pip-installed toolchain and report what it takes.

:func:`build_board` puts :class:`~spinemu.firmware.boards.BoardTop` through Amaranth's platform
build (yosys, nextpnr, icepack or ecppack, the YoWASP builds chosen by
:func:`~spinemu.firmware.toolchain.use_yowasp`) and writes ``report.json`` beside the bitstream:
resources counted by yosys, placement and the achieved Fmax from nextpnr's report (timed at the
board's clock, the PLL's output), the clock, PLL and UART settings, and the configuration the
bitstream holds. ``docs/boards.md`` lists the fields and the measured figures.
"""

import json
import re
import subprocess
import time
from pathlib import Path

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import job_cycles
from spinemu.hdl.protocol import build_hash
from spinemu.hdl.uart import divisor_for
from spinemu.hdl.weight_memory import check_spram

from .boards import BoardTop
from .boards import board as find_board
from .errors import FirmwareError
from .synth import AFTER_READ, ECP5_SYNTH_OPTS, FAMILIES, classify_cells
from .toolchain import find_tool, run_tool, use_yowasp

__all__ = ["BuildError", "ConfigurationError", "DesignDoesNotFit", "build_board", "REPORT_FIELDS"]

#: Keys every ``report.json`` has (``docs/boards.md`` explains each).
REPORT_FIELDS = (
    "board", "device", "package", "family", "bitstream", "lut", "ff", "bram", "dsp", "spram",
    "carry", "placed", "fmax_mhz", "clock_mhz", "timing_met", "clock_net", "oscillator_mhz", "pll",
    "baud", "uart_divisor",
    "lanes", "inputs_per_cycle", "layer_sizes", "config", "max_payload", "window", "build_hash",
    "updates_per_s", "updates_per_s_at_fmax", "spin_adds_per_s", "sample_cycles", "samples_per_s",
    "build_seconds", "tools",
)

_TOOLS = {"ice40": ("yosys", "nextpnr-ice40", "icepack"),
          "ecp5": ("yosys", "nextpnr-ecp5", "ecppack")}
_NEXTPNR = {family: tools[1] for family, tools in _TOOLS.items()}
_NEXTPNR_REPORT = "nextpnr_report.json"
_BITSTREAM = {"ice40": "top.bin", "ecp5": "top.bit"}
# nextpnr's error when a cell finds no free place of its type.
_NO_FIT = re.compile(r"no BELs remaining|Unable to place")


class BuildError(FirmwareError):
    """The build did not produce a bitstream; the message says which tool failed and where its
    log is."""


class ConfigurationError(BuildError):
    """The board cannot take the configuration asked for; nothing was built."""


class DesignDoesNotFit(BuildError):
    """nextpnr could not place the design on the device; the message is nextpnr's."""


def _errors(log):
    """The ERROR lines of a tool log (the last lines if there are none)."""
    if not log.exists():
        return ""
    lines = log.read_text(errors="replace").splitlines()
    errors = [line.strip() for line in lines if "ERROR" in line]
    return "\n".join(errors or lines[-10:])


def _over_capacity(log):
    """nextpnr's utilisation lines of the resources the design needs more of than the device has."""
    over = []
    for kind, used, available in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)",
                                            log.read_text(errors="replace"), re.M):
        if int(used) > int(available):
            over.append(f"{kind} {used}/{available}")
    return over


def _failure(build_dir, family):
    """A :class:`BuildError` for a build script that exited with an error."""
    yosys_log, nextpnr_log = build_dir / "top.rpt", build_dir / "top.tim"
    if not (build_dir / "top.json").exists():
        return BuildError(f"yosys failed; see {yosys_log}\n{_errors(yosys_log)}")
    if not (build_dir / _NEXTPNR_REPORT).exists():
        message = _errors(nextpnr_log)
        over = _over_capacity(nextpnr_log) if nextpnr_log.exists() else []
        if over or _NO_FIT.search(message):
            used = f" (used/available: {', '.join(over)})" if over else ""
            return DesignDoesNotFit(f"the design does not fit the device{used}; "
                                    f"{_NEXTPNR[family]} says (log: {nextpnr_log}):\n{message}")
        return BuildError(f"{_NEXTPNR[family]} failed; see {nextpnr_log}\n{message}")
    return BuildError(f"packing the bitstream failed after place and route; see the output above "
                      f"and {build_dir}")


def _version(text, pattern):
    """The first match of ``pattern`` (a tool's name and version) in ``text``, else ``text``."""
    match = re.search(pattern, text)
    return match[0] if match else text.strip()


def build_board(name, out_dir, *, lanes=None, inputs_per_cycle=None, network=None, baud=None,
                seed=1, noise=None, progress=None):
    """Build the bitstream of board ``name`` into ``out_dir``; return the report (also written as
    ``out_dir/report.json``).

    The engine has ``lanes`` lanes of ``inputs_per_cycle`` spin inputs a cycle and is sized for
    the layer sizes ``network`` (defaults: the
    board's; see :meth:`~spinemu.firmware.boards.Board.configure`), its noise blocks start with
    table ``noise`` (the Gaussian by default; every model load writes its own); ``baud`` is the
    UART rate (default: the board's :attr:`~spinemu.firmware.boards.Board.baud`) and ``seed``
    nextpnr's placement seed. The design runs at the board's
    :attr:`~spinemu.firmware.boards.Board.clock_hz` (from its PLL), where nextpnr times it.
    Raises :class:`ConfigurationError` (before running any tool) for an unknown board or a
    configuration or baud rate the board cannot take, :class:`DesignDoesNotFit` when nextpnr
    cannot place the design, and :class:`BuildError` when a tool fails (the message names its
    log); nextpnr also fails when the design misses the clock's frequency. The tool files stay in
    ``out_dir``. ``progress``, if given, is called with a line that says what is being built once
    the configuration is accepted.
    """
    try:
        board = find_board(name)
        sizes = board.network if network is None else tuple(network)
        config = board.configure(lanes, sizes, noise, inputs_per_cycle)
        baud = board.baud if baud is None else baud
        divisor = divisor_for(board.clock_hz, baud)
        if board.family == "ice40":     # the weights must fit the UltraPlus's 4 SPRAMs
            check_spram(config.lanes * config.inputs_per_cycle * config.weight_bits,
                        config.weight_depth)
    except (KeyError, ValueError) as error:
        raise ConfigurationError(error.args[0]) from None
    platform = board.platform()
    top = BoardTop.for_board(board, config, baud=baud)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Products of an earlier build in this folder must not pass for this one's.
    for product in ("report.json", _NEXTPNR_REPORT, "stat.json", "top.json",
                    _BITSTREAM[board.family]):
        (out / product).unlink(missing_ok=True)

    if progress is not None:
        source = ("the oscillator" if board.pll is None
                  else f"the PLL from {board.oscillator_hz / 1e6:g} MHz")
        progress(f"building {board.name} ({board.description}): {config.lanes} lanes x "
                 f"{config.inputs_per_cycle} inputs a cycle, network "
                 f"{'-'.join(map(str, sizes))}, {board.clock_hz / 1e6:g} MHz from {source}, "
                 f"{baud} baud, into {out}; this takes minutes")
    use_yowasp()
    # platform.build() would also demand the programmer (openFPGALoader for the ULX3S) though
    # nothing is programmed, so check the build tools here and run prepare() and the build
    # script as build(do_program=False) does.
    for tool in _TOOLS[board.family]:
        find_tool(tool)
    began = time.perf_counter()
    plan = platform.prepare(
        top, name="top",
        # -dsp: multipliers into SB_MAC16 (synth_ice40 maps them to LUTs without it).
        synth_opts="-dsp" if board.family == "ice40" else ECP5_SYNTH_OPTS,
        script_after_read="\n".join(AFTER_READ),
        script_after_synth="\n".join([*FAMILIES[board.family]["after_synth"],
                                      "tee -q -o stat.json stat -json"]),
        nextpnr_opts=f"--seed {seed} --report {_NEXTPNR_REPORT}")
    try:
        plan.execute_local(str(out))
    except subprocess.CalledProcessError:
        raise _failure(out, board.family) from None
    seconds = time.perf_counter() - began
    nextpnr_version = run_tool(_NEXTPNR[board.family], ["--version"])

    stat = json.loads((out / "stat.json").read_text())
    cells = {t: n for t, n in stat["design"]["num_cells_by_type"].items() if t != "$scopeinfo"}
    counts = classify_cells(board.family, cells)
    nextpnr = json.loads((out / _NEXTPNR_REPORT).read_text())
    clock_hz = board.clock_hz
    # The design has one clock; take the one timed at it should the tools report another.
    clock_net, timing = min(nextpnr["fmax"].items(),
                            key=lambda item: abs(item[1]["constraint"] - clock_hz / 1e6))
    fmax = timing["achieved"]
    pll = board.pll
    per_sample = job_cycles(sizes, config, 2) - job_cycles(sizes, config, 1)
    report = {
        "board": board.name,
        "device": platform.device,
        "package": platform.package,
        "family": board.family,
        "bitstream": _BITSTREAM[board.family],
        "lut": counts["lut"],
        "ff": counts["ff"],
        "bram": counts["bram"],
        "dsp": counts["dsp"],
        "spram": counts.get("spram", 0),
        "carry": counts["carry"],
        "placed": nextpnr.get("utilization", {}),
        "fmax_mhz": fmax,
        "clock_mhz": clock_hz / 1e6,
        "timing_met": fmax >= clock_hz / 1e6,
        "clock_net": clock_net,
        "oscillator_mhz": board.oscillator_hz / 1e6,
        "pll": None if pll is None else pll.as_dict(),
        "baud": baud,
        "uart_divisor": divisor,
        "lanes": config.lanes,
        "inputs_per_cycle": config.inputs_per_cycle,
        "layer_sizes": list(sizes),
        "config": config.as_dict(),
        "max_payload": MAX_PAYLOAD,
        "window": board.window,
        "build_hash": f"0x{build_hash(config, MAX_PAYLOAD, board.window):08x}",
        # Every lane's noise block and comparator update one neuron per cycle.
        "updates_per_s": config.lanes * clock_hz,
        "updates_per_s_at_fmax": config.lanes * fmax * 1e6,
        # and the spin layers' adder trees add lanes x W weights
        "spin_adds_per_s": config.lanes * config.inputs_per_cycle * clock_hz,
        "sample_cycles": per_sample,
        "samples_per_s": clock_hz / per_sample,
        "build_seconds": round(seconds, 1),
        "tools": {"yosys": _version(stat.get("creator", ""), r"Yosys \S+"),
                  "nextpnr": _version(nextpnr_version.stdout + nextpnr_version.stderr,
                                      r"nextpnr-\d[\w.]*")},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report

"""Build a board's bitstream with the pip-installed toolchain and write its report.

Runs yosys, nextpnr and icepack/ecppack (the YoWASP builds) through Amaranth's platform build and
writes the bitstream (`top.bin` for the iCEBreaker, `top.bit` for the ULX3S), the tool files and
logs, and `report.json`: LUT/FF/BRAM/SPRAM/DSP (yosys), placement and the achieved Fmax (nextpnr),
the engine configuration and its build hash, and the neuron updates per second. A build takes
minutes; docs/boards.md has the figures measured for each board.

examples:
  spinemu build --board icebreaker --out build/icebreaker
  spinemu build --board ulx3s --out build/ulx3s-8 --lanes 8 --network 128,256,256,64
"""

from pathlib import Path

from spinemu.firmware.boards import BOARDS

from ..noise_tables import SHAPES, read_table
from .options import layer_sizes


def add_arguments(parser):
    boards = "; ".join(
        f"{b.name}: {b.description}, {b.clock_hz / 1e6:g} MHz, {b.baud:,} baud, default {b.lanes} "
        f"lanes x {b.inputs_per_cycle} inputs a cycle sized for "
        f"{'-'.join(map(str, b.network))}" for b in BOARDS.values())
    parser.add_argument("--board", required=True, metavar="BOARD", help=f"the board ({boards})")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the bitstream, tool files and report.json")
    parser.add_argument("--lanes", type=int, metavar="N",
                        help="neurons computed at once, a power of two (default: the board's)")
    parser.add_argument("--inputs-per-cycle", type=int, metavar="W",
                        help="spin inputs each lane adds per cycle, a power of two (default: the "
                             "board's)")
    parser.add_argument("--network", metavar="N0,N1,...",
                        help="layer sizes the engine's memories are sized for, inputs first "
                             "(default: the board's)")
    parser.add_argument("--baud", type=int,
                        help="UART baud rate; the clock must divide it exactly (default: the "
                             "board's)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    parser.add_argument("--table", metavar="SHAPE|FILE",
                        help="the noise table the design starts with: a shape (" + ", ".join(SHAPES)
                             + ") or the table of a CALIB.json or model image (default: gaussian; "
                             "every model load writes its own)")


def run(args):
    # imported here so that `spinemu --help` does not load the toolchain wrappers' dependencies
    from spinemu.firmware.build import build_board

    network = layer_sizes(args.network, "--network") if args.network else None
    noise = None if args.table is None else read_table(args.table)
    report = build_board(args.board, args.out, lanes=args.lanes,
                         inputs_per_cycle=args.inputs_per_cycle, network=network,
                         baud=args.baud, seed=args.seed, noise=noise, progress=print)
    print(summary(report))
    print(f"wrote {Path(args.out) / report['bitstream']} and {Path(args.out) / 'report.json'}")
    return 0


def summary(report):
    """A few lines that say what was built and how it did."""
    spram = f" SPRAM {report['spram']}" if report["family"] == "ice40" else ""
    return "\n".join([
        f"{report['board']} ({report['device']}): {report['lanes']} lanes x "
        f"{report['inputs_per_cycle']} inputs a cycle, network "
        f"{'-'.join(map(str, report['layer_sizes']))}, build hash {report['build_hash']}",
        f"LUT {report['lut']} FF {report['ff']} BRAM {report['bram']}{spram} DSP {report['dsp']}",
        f"Fmax {report['fmax_mhz']:.1f} MHz (clock {report['clock_mhz']:g} MHz), UART "
        f"{report['baud']} baud, {report['updates_per_s']:.3g} neuron updates/s, "
        f"{report['samples_per_s']:.0f} samples/s of the network; built in "
        f"{report['build_seconds']:.0f} s",
    ])

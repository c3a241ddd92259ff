"""Generate noise codes on a backend, and report their quality.

Writes the raw codes of K noise blocks (`--out F.npz`: `noise`, int16 of shape (N, K), and `sigma`,
the nominal standard deviation in code units), and with `--report` prints the quality figures with
their pass limits (exit status 1 if one fails) and can plot a histogram and a normal QQ plot. The
blocks draw from the Gaussian table unless `--table` names another (a shipped shape, or the table
of a CALIB.json or a model image); its codes are then judged against that table's distribution.

examples:
  spinemu noise --backend verilator --neurons 4 --samples 100000 --seed 3 --out noise.npz
  spinemu noise --report --samples 10000000 --neurons 4 --plot noise.png
  spinemu noise --report --table thermal --samples 1000000
  spinemu noise --report --in noise.npz
"""

import sys
from pathlib import Path

from tqdm import tqdm

from spinemu.hdl.noise_table import CODE_SIGMA
from spinemu.hdl.polynomials import MAX_BLOCKS
from spinemu.sim.backends import BACKENDS
from spinemu.sim.noise_backends import generate_noise

from ..noise_quality import format_report, method_report, noise_quality, read_noise, write_noise
from ..noise_tables import SHAPES, read_table
from ..plots import plot_noise
from . import UserError

SIGMA = float(CODE_SIGMA)


def add_arguments(parser):
    parser.add_argument("--backend", choices=BACKENDS, default="golden",
                        help="where the codes come from (default: golden)")
    parser.add_argument("--neurons", type=int, default=4, metavar="K",
                        help="number of noise blocks (default: 4)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="codes per block (default: 100000; 10^7 with --report on golden)")
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="job seed (default: 1)")
    parser.add_argument("--ready", type=float, default=0.75, metavar="P",
                        help="RTL backends: probability that the consumer is ready in a cycle "
                             "(random back-pressure; default: 0.75)")
    parser.add_argument("--out", type=Path, metavar="F.npz", help="write the codes here")
    parser.add_argument("--report", action="store_true", help="print the quality figures")
    parser.add_argument("--in", dest="input", type=Path, metavar="F.npz",
                        help="report on codes saved by --out instead of generating them")
    parser.add_argument("--plot", type=Path, metavar="F.png",
                        help="write a histogram and a normal QQ plot")
    parser.add_argument("--table", metavar="SHAPE|FILE",
                        help="the noise table: " + ", ".join(SHAPES) + ", or the table of a "
                             "CALIB.json or a model image (default: gaussian)")


def _generate(args, table):
    samples = args.samples or (10_000_000 if args.report and args.backend == "golden" else 100_000)
    print(f"generating {samples} codes x {args.neurons} neurons on {args.backend} "
          f"(seed {args.seed})", file=sys.stderr)
    with tqdm(total=samples, unit="sample", disable=args.backend != "amaranth",
              file=sys.stderr) as bar:
        try:
            run = generate_noise(args.backend, seed=args.seed, blocks=args.neurons,
                                 samples=samples, ready_p=args.ready, progress=bar.update,
                                 table=table)
        except ValueError as error:
            raise UserError(str(error)) from None
    unit = "samples/s" if run.cycles is None else "cycles/s"
    print(f"{args.backend}: {run.seconds:.2f} s, {run.rate:,.0f} {unit}", file=sys.stderr)
    return run.codes


def run(args):
    table = None if args.table is None else read_table(args.table)
    if table is not None:
        print(f"noise table {table.describe()}", file=sys.stderr)
    if args.input is not None:
        codes, sigma = read_noise(args.input)
    else:
        if args.neurons < 1 or args.neurons > MAX_BLOCKS:
            raise UserError(f"--neurons must be 1..{MAX_BLOCKS}, not {args.neurons}")
        if args.samples is not None and args.samples < 1:
            raise UserError(f"--samples must be at least 1, not {args.samples}")
        codes, sigma = _generate(args, table), SIGMA
    if args.out is not None:
        write_noise(args.out, codes, sigma)
        print(f"wrote {args.out}")
    if args.plot is not None:
        plot_noise(codes, sigma, args.plot)
        print(f"wrote {args.plot}")
    if not args.report:
        return 0
    figures = noise_quality(codes, sigma, table=table)
    limits = ("KS target 0.001, tails within 25%" if table is None else
              f"KS target 0.001, chi-square p >= 1e-6, against the {table.name} table")
    print(f"quality of {codes.shape[0]:,} samples x {codes.shape[1]} neurons "
          f"(limits: 5 sampling standard deviations, {limits}):")
    print(format_report(figures))
    if table is None:
        print(method_report())
    failed = [f.name for f in figures if not f.ok]
    print("all figures pass" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0

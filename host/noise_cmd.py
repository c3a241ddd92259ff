"""Generate Gaussian noise codes on a backend, and report their quality.

Writes the raw codes of K noise blocks (`--out F.npz`: `noise`, int16 of shape (N, K), and `sigma`,
the nominal standard deviation in code units), and with `--report` prints the quality figures with
their pass limits (exit status 1 if one fails) and can plot a histogram and a normal QQ plot.

examples:
  spinemu noise --backend verilator --neurons 4 --samples 100000 --seed 3 --out noise.npz
  spinemu noise --report --samples 10000000 --neurons 4 --plot noise.png
  spinemu noise --report --in noise.npz
"""

import sys
from pathlib import Path

import numpy as np
from scipy.stats import norm
from tqdm import tqdm

from spinemu.hdl import noise as hw
from spinemu.hdl.neuron import NeuronFormat
from spinemu.sim import golden
from spinemu.sim.noise_backends import BACKENDS, generate_noise

from .cli import UserError
from .noise_quality import format_report, noise_quality

SIGMA = float(hw.CODE_SIGMA)


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


def _load(path):
    try:
        with np.load(path) as f:
            codes, sigma = f["noise"], float(f["sigma"])
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{path}: not a noise file written by `spinemu noise --out` ({error})")
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise UserError(f"{path}: `noise` must be an integer array of shape (samples, neurons), "
                        f"not {codes.dtype} {codes.shape}")
    return codes, sigma


def _generate(args):
    samples = args.samples or (10_000_000 if args.report and args.backend == "golden" else 100_000)
    print(f"generating {samples} codes x {args.neurons} neurons on {args.backend} "
          f"(seed {args.seed})", file=sys.stderr)
    with tqdm(total=samples, unit="sample", disable=args.backend != "amaranth",
              file=sys.stderr) as bar:
        try:
            run = generate_noise(args.backend, seed=args.seed, blocks=args.neurons,
                                 samples=samples, ready_p=args.ready, progress=bar.update)
        except ValueError as error:
            raise UserError(str(error)) from None
    unit = "samples/s" if run.cycles is None else "cycles/s"
    print(f"{args.backend}: {run.seconds:.2f} s, {run.rate:,.0f} {unit}", file=sys.stderr)
    return run.codes


def method_report():
    """Exact figures of the noise method itself, from the alias table (no sampling)."""
    codes, p = (np.asarray(x) for x in hw.code_pmf())
    z = codes / SIGMA
    ks = np.max(np.abs(np.cumsum(p) - norm.cdf((codes + 1) / SIGMA)))
    lines = [
        f"exact distribution of the codes (alias table, {len(codes)} codes, period 2^64-1 cycles):",
        f"  variance - 1 = {p @ z ** 2 - 1:.1e}, KS to discretized normal = {ks:.2e}, "
        f"largest |z| = {hw.MAX_CODE / SIGMA:.3f}",
        "  P(|z|>t) / normal: " + ", ".join(
            f"t={t:g}: {p[np.abs(z) > t].sum() / (2 * norm.sf(t)):.4f}" for t in (3, 4, 4.5, 5)),
    ]
    fmt = NeuronFormat()
    sigma, theta = 100.0, 0.5
    a = np.arange(-6 * int(sigma), 6 * int(sigma) + 1)
    emulated = golden.switch_probability(a, fmt.theta_code(theta), fmt.sigma_code(sigma), fmt)
    error = np.max(np.abs(emulated - norm.cdf((a - theta) / sigma)))
    lines.append(f"  neuron switching curve, sigma={sigma:g}, theta={theta:g}, a in +-6 sigma: "
                 f"max |P_emulated - Phi((a-theta)/sigma)| = {error:.4f}")
    return "\n".join(lines)


def plot_noise(codes, sigma, path):
    """Histogram (log scale, with the normal density) and normal QQ plot of ``codes / sigma``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = codes.reshape(-1) / sigma
    fig, (hist, qq) = plt.subplots(1, 2, figsize=(11, 4.2))
    step = 1 / hw.BINS_PER_SIGMA  # the method's own bins
    edges = np.arange(-6, 6 + step / 2, step)
    counts, _ = np.histogram(z, edges)
    hist.semilogy((edges[:-1] + edges[1:]) / 2, counts / z.size / step, ".", ms=3,
                  label="emulated noise")
    grid = np.linspace(-6, 6, 601)
    hist.semilogy(grid, norm.pdf(grid), "k-", lw=0.8, label="N(0, 1)")
    hist.set(xlabel="z = code / sigma", ylabel="density", title=f"{z.size:,} samples",
             ylim=(0.5 / z.size / step, 1))
    hist.legend()
    # Quantiles evenly spaced in z, so the tails get as many points as the centre.
    reach = norm.isf(10 / z.size)
    probs = norm.cdf(np.linspace(-reach, reach, 201))
    qq.plot(norm.ppf(probs), np.quantile(z, probs), ".", ms=3, label="quantiles")
    qq.plot([-reach, reach], [-reach, reach], "k-", lw=0.8, label="y = x")
    qq.set(xlabel="normal quantile", ylabel="noise quantile", title="normal QQ plot")
    qq.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args):
    if args.input is not None:
        codes, sigma = _load(args.input)
    else:
        if args.neurons < 1 or args.neurons > hw.MAX_BLOCKS:
            raise UserError(f"--neurons must be 1..{hw.MAX_BLOCKS}, not {args.neurons}")
        if args.samples is not None and args.samples < 1:
            raise UserError(f"--samples must be at least 1, not {args.samples}")
        codes, sigma = _generate(args), SIGMA
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.out, noise=codes, sigma=sigma)
        print(f"wrote {args.out}")
    if args.plot is not None:
        plot_noise(codes, sigma, args.plot)
        print(f"wrote {args.plot}")
    if not args.report:
        return 0
    try:
        figures = noise_quality(codes, sigma)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(f"quality of {codes.shape[0]:,} samples x {codes.shape[1]} neurons "
          f"(limits: 5 sampling standard deviations, KS target 0.001, tails within 25%):")
    print(format_report(figures))
    print(method_report())
    failed = [f.name for f in figures if not f.ok]
    print("all figures pass" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0

"""Benchmark imagination: reconstruct occluded held-out images, score them with a fixed classifier.

Runs one engine job per image of the data set's held-out test split (all of it unless --count),
exactly as `spinemu reconstruct` does (the same masks, job seeds and R.npz), on --backend: `float`
(the trained float model with its noise table, from the companion M.npz) or an engine backend
(`golden`, the bit-exact golden model = the hardware's result; `amaranth`, `icarus`, `verilator`,
the simulated design), or with --url on the design at a pyserial URL (a board, or `spinemu serve`),
through the host client, as `spinemu reconstruct --url` does. Then scores the reconstructions with
the reference classifier saved with the model (trained on the clean training images only):

  accuracy on clean, zero-filled, mean-filled, nearest-neighbour-filled and reconstructed images;
  improvement ratio = reconstructed / zero-filled accuracy; MSE and PSNR on the hidden pixels;
  fid_classifier_features: the Frechet distance on the classifier's penultimate features (against
  the clean training images; the clean test images' own value is the floor), not Inception's FID.

On a non-float backend or --url the float model runs too, with the same job seeds, and the report
gives the difference (hardware minus float, in points). --sweep adds accuracy against samples per
image.
--model default is the shipped digits model (host/data/digits_model.bin).

examples:
  spinemu evaluate --model default --backend golden --occlusion bottom --samples 32 \\
      --out out/r.npz --report out/r.json --grid out/r.png --sweep 1,2,4,8,16,32,64
  spinemu evaluate --model default --backend float --occlusion random --report out/rf.json
  spinemu evaluate --model default --backend verilator --count 20 --report out/rv.json
  spinemu evaluate --model default --url socket://127.0.0.1:7777 --report out/rs.json
"""

import json
import sys
from pathlib import Path

from ..datasets import split
from ..imagination import FID_FEATURES, check_companion, evaluate, finite, target
from ..jobs import check_jobs
from ..models import read_trained, resolve_model
from ..plots import draw_grid
from ..runners import RUNNERS
from . import UserError
from .files import write_npz, write_text
from .options import add_job_arguments, dataset_from_args, open_job_runner, report_departures

__all__ = ["add_arguments", "run"]


def _list(text, option):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(1 <= v < 1 << 16 for v in values):
        raise UserError(f"{option} must be sample counts 1..65535 separated by commas, "
                        f"not {text!r}")
    return values


def add_arguments(parser):
    parser.add_argument("--model", default="default", metavar="M.bin",
                        help="the model image, with its companion M.npz beside it; 'default' is "
                             "the shipped digits model (default: default)")
    add_job_arguments(parser, RUNNERS)
    parser.add_argument("--out", type=Path, metavar="R.npz",
                        help="the reconstructions, as `spinemu reconstruct` writes them")
    parser.add_argument("--report", type=Path, metavar="R.json", help="the figures as JSON")
    parser.add_argument("--grid", type=Path, metavar="G.png",
                        help="a figure: originals, occluded, imagined samples, reconstructions")
    parser.add_argument("--grid-images", type=int, default=10, metavar="N",
                        help="images in the figure, the first test image of each class first "
                             "(default: 10)")
    parser.add_argument("--grid-samples", type=int, default=4, metavar="N",
                        help="single-sample imaginations per image in the figure (default: 4)")
    parser.add_argument("--sweep", metavar="S1,S2,...",
                        help="also report the figures for these samples per image")


def _summary(report):
    acc, m = report["accuracy"], report["methods"]
    lines = [f"{report['images']} {report['dataset']} test images, {report['occlusion']} occluded, "
             f"{target(report)}, {report['samples']} samples:",
             f"  {'':18} {'accuracy':>9} {'MSE':>8} {'PSNR dB':>8} {'FID(clf)':>9}"]
    for name in ("clean", "zero_filled", "mean_filled", "nearest_neighbour", "reconstructed"):
        f = m[name]
        mse = f"{f['mse_occluded']:8.4f}" if "mse_occluded" in f else f"{'':8}"
        ps = f"{f['psnr_occluded_db']:8.2f}" if "psnr_occluded_db" in f else f"{'':8}"
        lines.append(f"  {name:18} {acc[name]:9.1%} {mse} {ps} "
                     f"{f['fid_classifier_features']:9.3f}")
    lines.append(f"  improvement ratio (reconstructed / zero-filled): "
                 f"{report['improvement_ratio']:.2f}x")
    if report["images"] < 2 * FID_FEATURES:
        lines.append(f"  (FID over {report['images']} images, fewer than {2 * FID_FEATURES}, is "
                     f"dominated by sampling error: compare FIDs over the whole split)")
    if "float_model" in report:
        fm = report["float_model"]
        lines.append(f"  float model, same seeds: {fm['accuracy']:.1%} "
                     f"({fm['hardware_minus_float_points']:+.1f} points on "
                     f"{target(report)})")
    for row in report.get("sweep", []):
        lines.append(f"  S = {row['samples']:5}: accuracy {row['accuracy']:.1%}, "
                     f"MSE {row['mse_occluded']:.4f}, "
                     f"FID(clf) {row['fid_classifier_features']:.3f}")
    return lines


def run(args):
    from tqdm import tqdm

    check_jobs(args.samples, args.seed)
    if args.grid_images < 1 or args.grid_samples < 0:
        raise UserError("--grid-images must be at least 1 and --grid-samples at least 0")
    sweep = _list(args.sweep, "--sweep") if args.sweep else ()
    path = resolve_model(args.model)
    model, companion = read_trained(path)
    dataset = dataset_from_args(args)
    check_companion(model, companion, path, dataset)
    with open_job_runner(args, model, path, companion) as runner:
        print(f"evaluating {path} on {runner.name}: {args.dataset}, {args.occlusion} occluded, "
              f"{args.samples} samples", file=sys.stderr)
        jobs = len(split(dataset)[1]) if args.count is None else max(args.count, 0)
        with tqdm(total=jobs * (1 + len(sweep)), unit="image", file=sys.stderr,
                  disable=not runner.needs_bar) as bar:
            report, arrays = evaluate(model, companion, dataset, runner,
                                      occlusion=args.occlusion, samples=args.samples,
                                      seed=args.seed, count=args.count, sweep=sweep,
                                      progress=bar.update)
        report_departures(runner)
        report["model"] = str(path)
        report["model_sha256"] = companion.meta["model_sha256"]
        for line in _summary(report):
            print(line)
        if args.out:
            write_npz(args.out, arrays)
            print(f"wrote {args.out}")
        if args.report:
            write_text(args.report, json.dumps(finite(report), indent=2) + "\n")
            print(f"wrote {args.report}")
        if args.grid:   # it runs jobs of its own on the runner
            draw_grid(args.grid, dataset, report, arrays, runner, seed=args.seed,
                      images=args.grid_images, samples=args.grid_samples)
            print(f"wrote {args.grid}")
    return 0

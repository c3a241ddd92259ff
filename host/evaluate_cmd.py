"""Benchmark imagination: reconstruct occluded held-out images, score them with a fixed classifier.

Runs one engine job per image of the data set's held-out test split (all of it unless --count),
exactly as `spinemu reconstruct` does (the same masks, job seeds and R.npz), on --backend: `float`
(the trained float model with Gaussian noise, from the companion M.npz) or an engine backend
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

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from spinemu.sim.engine_backends import BACKENDS as ENGINE_BACKENDS

from .cli import UserError
from .datasets import dataset_from_args, split
from .evaluate import CLASSIFIER_HIDDEN
from .model_cmd import resolve_model
from .reconstruct_cmd import add_job_arguments, check_job_arguments, design_session, job_seed
from .occlusion import occlusion_masks

__all__ = ["add_arguments", "run", "job_seed", "run_backend",
           "evaluate", "BACKENDS"]

#: The float model of the companion M.npz, or an engine backend.
BACKENDS = ("float",) + ENGINE_BACKENDS
FID_FEATURES = CLASSIFIER_HIDDEN[-1]   # the reference classifier's penultimate layer


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
    add_job_arguments(parser, BACKENDS)
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


def run_backend(backend, model, companion, inputs, seeds, samples, lanes, progress=None):
    """Output spin counts ``(jobs, N_L)`` of ``inputs`` on ``backend``: a name from
    :data:`BACKENDS`, or a connected :class:`~spinemu.host.client.Client` holding ``model`` (the
    design's lanes apply, and its own progress bar)."""
    seeds = [int(s) for s in seeds]
    if not isinstance(backend, str):
        return backend.run(inputs, seeds, samples).counts
    if backend == "float":
        return companion.network.counts(inputs, seeds, samples)
    try:
        from spinemu.sim.engine_backends import default_config, run_engine
    except ImportError as error:
        if backend != "golden":
            raise UserError(f"--backend {backend} needs spinemu.sim.engine_backends ({error})") \
                from None
        from spinemu.sim.engine_model import run_jobs
        return run_jobs(model, inputs, seeds, samples, lanes)
    from spinemu.hdl.model_image import ModelError
    from spinemu.sim.rtl import BenchError
    try:
        config = default_config(model, lanes)
    except ValueError as error:
        raise UserError(f"--lanes: {error}") from None
    try:
        return run_engine(backend, config, model, inputs, seeds, samples,
                          progress=progress).counts
    except (ModelError, BenchError) as error:
        raise UserError(str(error)) from None


def _check_model(model, companion, path, dataset):
    meta = companion.meta
    pixels = int(np.prod(dataset.shape))
    if list(model.sizes) != list(meta["sizes"]):
        raise UserError(f"{path}: the model's sizes {model.sizes} differ from its companion's")
    if meta["dataset"] != dataset.name or tuple(meta["shape"]) != tuple(dataset.shape):
        raise UserError(f"{path}: trained on {meta['dataset']} ({meta['shape'][0]}x"
                        f"{meta['shape'][1]}), not {dataset.name} ({dataset.shape[0]}x"
                        f"{dataset.shape[1]})")
    if model.sizes[0] != 2 * pixels or model.sizes[-1] != pixels:
        raise UserError(f"{path}: sizes {model.sizes} do not fit {dataset.shape} images")
    if dataset.max_value >= 1 << model.input_bits:
        raise UserError(f"{path}: {model.input_bits}-bit inputs cannot hold pixel values up to "
                        f"{dataset.max_value}")


def _reconstruct(images, masks, counts, samples, max_value):
    return np.where(masks == 1, images / max_value, counts.reshape(images.shape) / samples)


def evaluate(model, companion, dataset, *, backend="golden", occlusion="bottom", samples=32,
             seed=1, lanes=4, count=None, sweep=(), progress=None):
    """Run the benchmark; returns ``(report, arrays)``: the figures (a JSON-able dict) and the
    R.npz arrays. ``backend`` is a name or a connected client (see :func:`run_backend`; the report
    then names its ``url``). See the module docstring and ``docs/training.md``."""
    from spinemu.sim.engine_model import job_inputs, macs_per_job

    from .evaluate import benchmark_report, method_figures, feature_statistics

    train_idx, test_idx = split(dataset)
    count = len(test_idx) if count is None else count
    if not 1 <= count <= len(test_idx):
        raise UserError(f"--count must be 1..{len(test_idx)} (the held-out {dataset.name} "
                        f"images), not {count}")
    indices = test_idx[:count]
    top = dataset.max_value
    images, labels = dataset.images[indices], dataset.labels[indices]
    masks = occlusion_masks(occlusion, count, dataset.shape, seed)
    seeds = np.array([job_seed(seed, k) for k in range(count)], dtype=np.uint64)
    inputs = job_inputs(images, masks)
    train_images = dataset.images[train_idx] / top
    originals = images / top
    classifier = companion.classifier

    began = time.perf_counter()
    counts = run_backend(backend, model, companion, inputs, seeds, samples, lanes, progress)
    seconds = time.perf_counter() - began
    reconstructed = _reconstruct(images, masks, counts, samples, top)
    figures = benchmark_report(classifier, reconstructed, originals, labels, masks, train_images)
    sizes = model.sizes
    report = {
        "dataset": dataset.name, "split": "held-out test split (datasets.split)",
        "images": int(count), "occlusion": occlusion,
        **({"backend": backend} if isinstance(backend, str) else
           {"backend": "url", "url": backend.url}),
        "samples": int(samples), "seed": int(seed), "lanes": int(lanes),
        "sizes": list(sizes),
        "macs_per_image": {"once": sizes[0] * sizes[1], "per_sample": model.macs_per_sample,
                           "total": macs_per_job(sizes, samples)},
        "classifier": "reference MLP trained on the clean training images only (saved with the "
                      "model); FID on its penultimate features against the clean training images",
        **figures,
        "seconds": round(seconds, 3),
    }
    if backend != "float":
        float_counts = run_backend("float", model, companion, inputs, seeds, samples, lanes)
        float_acc = float(np.mean(classifier.predict(
            _reconstruct(images, masks, float_counts, samples, top)) == labels))
        report["float_model"] = {
            "accuracy": float_acc,
            "hardware_minus_float_points": 100 * (figures["accuracy"]["reconstructed"] - float_acc),
        }
    if dataset.name == "digits" and occlusion == "bottom" and count == len(test_idx):
        acc = figures["accuracy"]["reconstructed"]
        report["targets"] = {"reconstructed_accuracy_at_least_0.85": acc >= 0.85,
                             "improvement_ratio_at_least_3.5": figures["improvement_ratio"] >= 3.5}
    if sweep:
        reference = feature_statistics(classifier.features(train_images))
        rows = []
        for s in sweep:
            c = run_backend(backend, model, companion, inputs, seeds, s, lanes, progress)
            r = method_figures(classifier, _reconstruct(images, masks, c, s, top), originals,
                               labels, masks, reference)
            rows.append({"samples": int(s), **r,
                         "improvement_ratio": r["accuracy"] / figures["accuracy"]["zero_filled"]
                         if figures["accuracy"]["zero_filled"] else math.inf})
        report["sweep"] = rows
    arrays = {"indices": indices, "mask": masks, "reconstructed": reconstructed, "counts": counts,
              "seeds": seeds, "samples": samples, "lanes": lanes, "labels": labels,
              "predicted": classifier.predict(reconstructed)}
    return report, arrays


def draw_grid(path, model, companion, dataset, report, arrays, *, backend, seed, lanes,
              images=10, samples=4):
    """Rows: original, occluded, ``samples`` single-sample imaginations (sample i runs with job
    seeds of ``--seed + i``, so the first is the first sample of the benchmark's run), the mean
    reconstruction of S samples. Columns: the first test image of each class, then the next ones."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinemu.sim.engine_model import job_inputs

    labels, top = arrays["labels"], dataset.max_value
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    rest = [k for k in range(len(labels)) if k not in firsts]
    chosen = (firsts + rest)[:images]
    pics = dataset.images[arrays["indices"][chosen]]
    masks = arrays["mask"][chosen]
    inputs = job_inputs(pics, masks)
    rows = [("original", pics / top, None), ("occluded", pics / top, masks)]
    for i in range(samples):
        seeds = [job_seed(seed + i, k) for k in chosen]
        counts = run_backend(backend, model, companion, inputs, seeds, 1, lanes)
        rows.append((f"sample {i + 1}", _reconstruct(pics, masks, counts, 1, top), None))
    rows.append((f"mean of {report['samples']}", arrays["reconstructed"][chosen], None))
    fig, axes = plt.subplots(len(rows), len(chosen), squeeze=False,
                             figsize=(0.9 * len(chosen) + 1.2, 0.9 * len(rows) + 0.6))
    for r, (name, pictures, hide) in enumerate(rows):
        for c in range(len(chosen)):
            ax = axes[r][c]
            grey = np.clip(pictures[c], 0, 1)
            rgb = np.repeat(grey[..., None], 3, axis=2)
            if hide is not None:
                rgb[hide[c] == 0] = (0.25, 0.45, 0.85)
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
            if r == 0:
                ax.set_title(dataset.classes[labels[chosen[c]]], fontsize=8)
    acc = report["accuracy"]
    fig.suptitle(f"{report['occlusion']} occluded, {_target(report)}: reconstructed accuracy "
                 f"{acc['reconstructed']:.1%} (zero-filled {acc['zero_filled']:.1%})", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finite(value):
    """``value`` with every non-finite float (an infinite PSNR) as ``None``: strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _target(report):
    """What ran the jobs, for people: the backend, or the URL of the design."""
    return report.get("url", report["backend"])


def _summary(report):
    acc, m = report["accuracy"], report["methods"]
    lines = [f"{report['images']} {report['dataset']} test images, {report['occlusion']} occluded, "
             f"{_target(report)}, {report['samples']} samples:",
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
                     f"{_target(report)})")
    for row in report.get("sweep", []):
        lines.append(f"  S = {row['samples']:5}: accuracy {row['accuracy']:.1%}, "
                     f"MSE {row['mse_occluded']:.4f}, "
                     f"FID(clf) {row['fid_classifier_features']:.3f}")
    return lines


def run(args):
    from spinemu.hdl.model_image import ModelError, ModelImage

    from .train import companion_path, load_companion

    check_job_arguments(args)
    if args.grid_images < 1 or args.grid_samples < 0:
        raise UserError("--grid-images must be at least 1 and --grid-samples at least 0")
    sweep = _list(args.sweep, "--sweep") if args.sweep else ()
    path = resolve_model(args.model)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such model file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the model image ({error.strerror})") from None
    try:
        model = ModelImage.from_bytes(data, source=str(path))
    except ModelError as error:
        raise UserError(str(error)) from None
    companion = load_companion(companion_path(path), data)
    dataset = dataset_from_args(args)
    _check_model(model, companion, path, dataset)
    with contextlib.ExitStack() as stack:
        if args.url:
            backend = stack.enter_context(design_session(args.url, model, path, args.lanes))
            where, lanes = f"the design at {args.url}", backend.info.config.lanes
        else:
            backend = where = args.backend or "golden"
            lanes = 4 if args.lanes is None else args.lanes
        print(f"evaluating {path} on {where}: {args.dataset}, {args.occlusion} occluded, "
              f"{args.samples} samples", file=sys.stderr)
        report, arrays = _evaluate(args, model, companion, dataset, backend, lanes, sweep)
        _write(args, model, companion, dataset, report, arrays, backend, lanes)
    return 0


def _evaluate(args, model, companion, dataset, backend, lanes, sweep):
    from tqdm import tqdm
    jobs = len(split(dataset)[1]) if args.count is None else max(args.count, 0)
    # the Amaranth simulator runs one job at a time and slowly: show its progress (a client
    # shows its own)
    with tqdm(total=jobs * (1 + len(sweep)), unit="image", file=sys.stderr,
              disable=backend != "amaranth") as bar:
        report, arrays = evaluate(model, companion, dataset, backend=backend,
                                  occlusion=args.occlusion, samples=args.samples, seed=args.seed,
                                  lanes=lanes, count=args.count, sweep=sweep,
                                  progress=bar.update)
    report["model"] = str(args.model)
    report["model_sha256"] = companion.meta["model_sha256"]
    return report, arrays


def _write(args, model, companion, dataset, report, arrays, backend, lanes):
    """The summary, and the files asked for (the grid runs jobs of its own on ``backend``)."""
    for line in _summary(report):
        print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "wb") as f:  # np.savez would add ".npz" to any other name
            np.savez(f, **arrays)
        print(f"wrote {args.out}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(_finite(report), indent=2) + "\n")
        print(f"wrote {args.report}")
    if args.grid:
        draw_grid(args.grid, model, companion, dataset, report, arrays, backend=backend,
                  seed=args.seed, lanes=lanes, images=args.grid_images,
                  samples=args.grid_samples)
        print(f"wrote {args.grid}")

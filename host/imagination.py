"""The imagination benchmark: reconstruct occluded held-out images, score them with a fixed classifier.

:func:`evaluate` runs one job per held-out image (:func:`~spinemu.host.jobs.image_jobs`) on a
:class:`~spinemu.host.runners.JobRunner`, then scores the reconstructions with the reference
classifier saved with the model (trained on the clean training images only): accuracy on clean,
zero-, mean- and nearest-neighbour-filled and reconstructed images, the improvement ratio
(reconstructed / zero-filled accuracy), MSE and PSNR on the hidden pixels, and the Frechet
distance on the classifier's penultimate features. Off the float model, the float model runs with
the same job seeds too and the report gives the difference. ``docs/training.md`` has the method.
"""

import math
import time

import numpy as np

from spinemu.hdl.memory_map import macs_per_job

from .datasets import split
from .errors import InputError
from .evaluate import CLASSIFIER_HIDDEN, benchmark_report, feature_statistics, method_figures
from .jobs import check_model_for, image_jobs
from .runners import FloatRunner

__all__ = ["FID_FEATURES", "check_companion", "evaluate", "target", "finite"]

FID_FEATURES = CLASSIFIER_HIDDEN[-1]   # the reference classifier's penultimate layer


def check_companion(model, companion, source, dataset):
    """:class:`InputError` naming ``source`` unless the companion was trained with ``model`` on
    ``dataset``'s images, and the model imagines them."""
    meta = companion.meta
    if list(model.sizes) != list(meta["sizes"]):
        raise InputError(f"{source}: the model's sizes {model.sizes} differ from its companion's")
    if meta["dataset"] != dataset.name or tuple(meta["shape"]) != tuple(dataset.shape):
        raise InputError(f"{source}: trained on {meta['dataset']} ({meta['shape'][0]}x"
                         f"{meta['shape'][1]}), not {dataset.name} ({dataset.shape[0]}x"
                         f"{dataset.shape[1]})")
    check_model_for(model, dataset, source)


def evaluate(model, companion, dataset, runner, *, occlusion="bottom", samples=32, seed=1,
             count=None, sweep=(), progress=None):
    """Run the benchmark on ``runner``; returns ``(report, arrays)``: the figures (a JSON-able
    dict) and the R.npz arrays (as ``spinemu reconstruct`` writes them, plus labels and
    predictions). ``sweep``: more sample counts to report the figures for."""
    train_idx, test_idx = split(dataset)
    jobs = image_jobs(dataset, occlusion, seed, count)
    top = dataset.max_value
    train_images = dataset.images[train_idx] / top
    originals = jobs.images / top
    classifier = companion.classifier

    began = time.perf_counter()
    counts = runner.run(jobs.inputs, jobs.seeds, samples, progress=progress).counts
    seconds = time.perf_counter() - began
    reconstructed = jobs.reconstruct(counts, samples, top)
    figures = benchmark_report(classifier, reconstructed, originals, jobs.labels, jobs.masks,
                               train_images)
    sizes = model.sizes
    report = {
        "dataset": dataset.name, "split": "held-out test split (datasets.split)",
        "images": len(jobs), "occlusion": occlusion,
        **runner.where(),
        "samples": int(samples), "seed": int(seed),
        "lanes": runner.lanes,
        "sizes": list(sizes),
        "macs_per_image": {"once": sizes[0] * sizes[1], "per_sample": model.macs_per_sample,
                           "total": macs_per_job(sizes, samples)},
        "classifier": "reference MLP trained on the clean training images only (saved with the "
                      "model); FID on its penultimate features against the clean training images",
        **figures,
        "seconds": round(seconds, 3),
    }
    if not isinstance(runner, FloatRunner):
        float_counts = FloatRunner(companion).run(jobs.inputs, jobs.seeds, samples).counts
        float_acc = float(np.mean(classifier.predict(
            jobs.reconstruct(float_counts, samples, top)) == jobs.labels))
        report["float_model"] = {
            "accuracy": float_acc,
            "hardware_minus_float_points": 100 * (figures["accuracy"]["reconstructed"] - float_acc),
        }
    if dataset.name == "digits" and occlusion == "bottom" and len(jobs) == len(test_idx):
        acc = figures["accuracy"]["reconstructed"]
        report["targets"] = {"reconstructed_accuracy_at_least_0.85": acc >= 0.85,
                             "improvement_ratio_at_least_3.5": figures["improvement_ratio"] >= 3.5}
    if sweep:
        reference = feature_statistics(classifier.features(train_images))
        rows = []
        for s in sweep:
            c = runner.run(jobs.inputs, jobs.seeds, s, progress=progress).counts
            r = method_figures(classifier, jobs.reconstruct(c, s, top), originals, jobs.labels,
                               jobs.masks, reference)
            rows.append({"samples": int(s), **r,
                         "improvement_ratio": r["accuracy"] / figures["accuracy"]["zero_filled"]
                         if figures["accuracy"]["zero_filled"] else math.inf})
        report["sweep"] = rows
    arrays = {"indices": jobs.indices, "mask": jobs.masks, "reconstructed": reconstructed,
              "counts": counts, "seeds": jobs.seeds, "samples": samples, "lanes": runner.lanes,
              "labels": jobs.labels, "predicted": classifier.predict(reconstructed)}
    return report, arrays


def target(report):
    """What ran the jobs, for people: the backend, or the URL of the design (a pool's or a
    cluster's)."""
    if "scheduler" in report:
        return f"the cluster at {report['scheduler']}"
    if "urls" in report:
        return "a pool of " + ", ".join(report["urls"])
    return report.get("url", report["backend"])


def finite(value):
    """``value`` with every non-finite float (an infinite PSNR) as ``None``: strict JSON."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

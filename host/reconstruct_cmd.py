"""Imagine the hidden part of occluded images with a model, on any backend.

Takes the first N images of the data set's held-out test split, hides part of each (--occlusion),
and runs one engine job per image: the input is the image with its hidden pixels zeroed, then the
mask (so the model must have 2 x pixels inputs and pixels outputs). A hidden pixel becomes the
fraction of the S samples in which its output spin fired; known pixels are kept as they are.

Image k of the split runs with job seed (SEED * 2^20 + k) mod 2^64, so an image's result depends
only on the arguments and on k, never on --count; the same arguments give the same `reconstructed`
on every backend.

Writes --out R.npz with `indices` (into the data set's own order: scikit-learn's load_digits order
for digits), `mask` (uint8, 1 = known pixel), `reconstructed` (float in [0, 1], known pixels
unchanged), `counts` (the output spin counts, int64 (N, pixels)), `seeds` (the job seeds),
`samples` and `lanes` (which set the noise schedule), and for the simulation backends `cycles`
(the engine's cycles per image).

examples:
  spinemu model random --shape 128,256,256,64 --out model.bin
  spinemu reconstruct --model model.bin --count 100 --samples 32 --out out/recon.npz
  spinemu reconstruct --model model.bin --backend verilator --count 5 --out out/recon_v.npz
"""

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spinemu.hdl.model_image import ModelError
from spinemu.sim.engine_backends import BACKENDS, default_config, run_engine
from spinemu.sim.engine_model import job_inputs, macs_per_job
from spinemu.sim.rtl import BenchError

from .cli import UserError
from .datasets import add_dataset_arguments, dataset_from_args, split
from .model_cmd import load_model, resolve_model
from .occlusion import OCCLUSIONS, occlusion_masks

__all__ = ["add_arguments", "run", "job_seed", "reconstruct_images"]

_MASK64 = (1 << 64) - 1


def add_arguments(parser):
    parser.add_argument("--model", type=resolve_model, required=True, metavar="M.bin",
                        help="the model image (see `spinemu model`), or `default`: the shipped "
                             "digits model")
    parser.add_argument("--backend", choices=BACKENDS, default="golden",
                        help="where the jobs run (default: golden)")
    add_dataset_arguments(parser)
    parser.add_argument("--occlusion", choices=OCCLUSIONS, default="bottom",
                        help="which pixels are hidden (default: bottom)")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="how many test images, from the first (default: all)")
    parser.add_argument("--samples", type=int, default=32, metavar="S",
                        help="samples per image, 1..65535 (default: 32)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the jobs and of random masks, 0..2^64-1 (default: 1)")
    parser.add_argument("--lanes", type=int, default=4,
                        help="engine lanes (a power of two); they set the noise schedule, so "
                             "results depend on them (default: 4)")
    parser.add_argument("--out", type=Path, required=True, metavar="R.npz",
                        help="where to write the results")


def job_seed(seed, k):
    """The job seed of image ``k`` (0, 1, ... in the test split) for ``--seed seed``."""
    return (seed * (1 << 20) + k) & _MASK64


def _check_model(model, path, dataset):
    pixels = int(np.prod(dataset.shape))
    if model.sizes[0] != 2 * pixels or model.sizes[-1] != pixels:
        raise UserError(
            f"{path}: the model has {model.sizes[0]} inputs and {model.sizes[-1]} outputs "
            f"(sizes {'-'.join(map(str, model.sizes))}); {dataset.name} images of "
            f"{dataset.shape[0]}x{dataset.shape[1]} pixels need {2 * pixels} inputs "
            f"({pixels} pixels and {pixels} mask bits) and {pixels} outputs")
    if dataset.max_value >= 1 << model.input_bits:
        raise UserError(f"{path}: the model takes {model.input_bits}-bit inputs, but "
                        f"{dataset.name} pixels go up to {dataset.max_value}")


def reconstruct_images(images, masks, counts, samples, max_value):
    """Known pixels as they are (scaled to [0, 1]), hidden ones the fraction of samples fired."""
    return np.where(masks == 1, images / max_value, counts.reshape(images.shape) / samples)


def run(args):
    if not 1 <= args.samples < 1 << 16:
        raise UserError(f"--samples must be 1..65535, not {args.samples}")
    if not 0 <= args.seed <= _MASK64:
        raise UserError(f"--seed must be 0..2^64-1, not {args.seed}")
    model = load_model(args.model)
    try:
        config = default_config(model, args.lanes)
    except ValueError as error:
        raise UserError(f"--lanes: {error}") from None
    dataset = dataset_from_args(args)
    _check_model(model, args.model, dataset)
    test = split(dataset)[1]
    count = len(test) if args.count is None else args.count
    if not 1 <= count <= len(test):
        raise UserError(f"--count must be 1..{len(test)} (the held-out {dataset.name} images), "
                        f"not {count}")
    indices = test[:count]
    images = dataset.images[indices]
    masks = occlusion_masks(args.occlusion, count, dataset.shape, args.seed)
    seeds = np.array([job_seed(args.seed, k) for k in range(count)], dtype=np.uint64)

    print(f"reconstructing {count} {dataset.name} images ({args.occlusion} occluded) with "
          f"{args.model} on {args.backend}: {args.samples} samples, {args.lanes} lanes",
          file=sys.stderr)
    with tqdm(total=count, unit="image", disable=args.backend != "amaranth",
              file=sys.stderr) as bar:
        try:
            result = run_engine(args.backend, config, model, job_inputs(images, masks),
                                [int(s) for s in seeds], args.samples, progress=bar.update)
        except (ModelError, BenchError) as error:
            raise UserError(str(error)) from None

    outputs = {"indices": indices, "mask": masks,
               "reconstructed": reconstruct_images(images, masks, result.counts, args.samples,
                                                   dataset.max_value),
               "counts": result.counts, "seeds": seeds, "samples": args.samples,
               "lanes": args.lanes}
    per_image = f"{result.seconds / count:.3g} s per image"
    if args.backend != "golden":
        outputs["cycles"] = result.cycles
        ideal = macs_per_job(model.sizes, args.samples) / args.lanes
        per_image += (f"; {result.cycles.mean():,.0f} engine cycles per image, "
                      f"{ideal / result.cycles.mean():.1%} of the MACs/lanes ideal")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:  # np.savez would add ".npz" to any other name
        np.savez(f, **outputs)
    print(f"{args.backend}: {result.seconds:.2f} s ({per_image})", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0

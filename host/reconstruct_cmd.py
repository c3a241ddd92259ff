"""Imagine the hidden part of occluded images with a model, on any backend or a board.

Takes the first N images of the data set's held-out test split, hides part of each (--occlusion),
and runs one engine job per image: the input is the image with its hidden pixels zeroed, then the
mask (so the model must have 2 x pixels inputs and pixels outputs). A hidden pixel becomes the
fraction of the S samples in which its output spin fired; known pixels are kept as they are.

The jobs run on --backend (default golden), or with --url on the design that answers at a pyserial
URL: a board's serial port (/dev/ttyUSB1) or a simulated board (`spinemu serve`,
socket://127.0.0.1:PORT), through the host client, which identifies the design and loads the model
first (refused, with the reason, if the design cannot hold it). The design's lanes set the noise
schedule there; --lanes, if given, must equal them.

Image k of the split runs with job seed (SEED * 2^20 + k) mod 2^64, so an image's result depends
only on the arguments and on k, never on --count; the same arguments give the same `reconstructed`
on every backend and on every design with the same lanes.

Writes --out R.npz with `indices` (into the data set's own order: scikit-learn's load_digits order
for digits), `mask` (uint8, 1 = known pixel), `reconstructed` (float in [0, 1], known pixels
unchanged), `counts` (the output spin counts, int64 (N, pixels)), `seeds` (the job seeds),
`samples` and `lanes` (which set the noise schedule), and for the simulation backends and --url
`cycles` (the engine's cycles per image; a design reports them with each job).

examples:
  spinemu model random --shape 128,256,256,64 --out model.bin
  spinemu reconstruct --model model.bin --count 100 --samples 32 --out out/recon.npz
  spinemu reconstruct --model model.bin --backend verilator --count 5 --out out/recon_v.npz
  spinemu reconstruct --model model.bin --url socket://127.0.0.1:7777 --out out/recon_s.npz
"""

import contextlib
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

__all__ = ["add_arguments", "add_job_arguments", "check_job_arguments", "run", "job_seed", "reconstruct_images",
           "design_session"]

_MASK64 = (1 << 64) - 1
#: The slowest clock of a simulated board (a socket:// URL, `spinemu serve`): the Amaranth
#: simulator's. A board's serial port gets the client's default. Too slow a guess only lengthens
#: the wait for a lost answer to the first job; after it the client times the design itself.
_SIMULATED_CLOCK_HZ = 1000


def add_arguments(parser):
    parser.add_argument("--model", type=resolve_model, required=True, metavar="M.bin",
                        help="the model image (see `spinemu model`), or `default`: the shipped "
                             "digits model")
    add_job_arguments(parser, BACKENDS)
    parser.add_argument("--out", type=Path, required=True, metavar="R.npz",
                        help="where to write the results")


def add_job_arguments(parser, backends):
    """What the jobs are and where they run, as `reconstruct` and `evaluate` take them: --backend
    (one of ``backends``, default golden) or --url, the data set, --occlusion, --count, --samples,
    --seed and --lanes."""
    target = parser.add_mutually_exclusive_group()
    # default None, not "golden": argparse lets `--backend golden --url U` through otherwise (it
    # tells given from default by identity, and the interned "golden" is the default object)
    target.add_argument("--backend", choices=backends, default=None,
                        help="where the jobs run (default: golden)")
    target.add_argument("--url", metavar="URL",
                        help="run the jobs on the design at this pyserial URL instead: a board "
                             "(/dev/ttyUSB1) or `spinemu serve` (socket://127.0.0.1:PORT)")
    add_dataset_arguments(parser)
    parser.add_argument("--occlusion", choices=OCCLUSIONS, default="bottom",
                        help="which pixels are hidden (default: bottom)")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="how many test images, from the first (default: all)")
    parser.add_argument("--samples", type=int, default=32, metavar="S",
                        help="samples per image, 1..65535 (default: 32)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the jobs and of random masks, 0..2^64-1 (default: 1)")
    parser.add_argument("--lanes", type=int, default=None,
                        help="engine lanes (a power of two); they set the noise schedule, so "
                             "results depend on them (default: 4; with --url, the design's)")


@contextlib.contextmanager
def design_session(url, model, path, lanes=None):
    """Connect to the design at ``url``, check its lanes (``lanes``; None: any) and load ``model``
    (read from ``path``); yields the connected :class:`~spinemu.host.client.Client`.

    Every failure of the client inside the ``with`` block, the jobs included, becomes a
    :class:`UserError` naming the URL: nothing answers, the link drops, the design refuses a
    request or cannot hold the model (with the client's reasons)."""
    from .client import Client, SpinemuError
    options = {"min_clock_hz": _SIMULATED_CLOCK_HZ} if url.startswith("socket://") else {}
    try:
        with Client.connect(url, **options) as dev:
            design = dev.info.config.lanes
            if lanes is not None and lanes != design:
                raise UserError(f"--lanes {lanes}: the design at {url} has {design} lanes, which "
                                f"set the noise schedule (leave --lanes out to use them)")
            try:
                dev.load_model(model)
            except ModelError as error:
                raise UserError(f"{url}: {path}: {error}") from None
            yield dev
    except SpinemuError as error:
        message = str(error)
        raise UserError(message if url in message else f"{url}: {message}") from None


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


def _run_jobs(args, model, inputs, seeds, what):
    """The jobs on --url or --backend: ``(result, lanes, where)``; ``result`` has ``counts``,
    ``cycles`` and ``seconds``."""
    if args.url:
        where = f"the design at {args.url}"
        with design_session(args.url, model, args.model, args.lanes) as dev:
            lanes = dev.info.config.lanes
            print(f"reconstructing {what} on {where}: {args.samples} samples, {lanes} lanes",
                  file=sys.stderr)
            return dev.run(inputs, seeds, args.samples), lanes, where   # its own progress bar
    where, lanes = args.backend or "golden", 4 if args.lanes is None else args.lanes
    try:
        config = default_config(model, lanes)
    except ValueError as error:
        raise UserError(f"--lanes: {error}") from None
    print(f"reconstructing {what} on {where}: {args.samples} samples, {lanes} lanes",
          file=sys.stderr)
    with tqdm(total=len(inputs), unit="image", disable=where != "amaranth",
              file=sys.stderr) as bar:
        try:
            return run_engine(where, config, model, inputs, [int(s) for s in seeds],
                              args.samples, progress=bar.update), lanes, where
        except (ModelError, BenchError) as error:
            raise UserError(str(error)) from None


def check_job_arguments(args):
    """UserError for --samples or --seed out of range (see :func:`add_job_arguments`)."""
    if not 1 <= args.samples < 1 << 16:
        raise UserError(f"--samples must be 1..65535, not {args.samples}")
    if not 0 <= args.seed <= _MASK64:
        raise UserError(f"--seed must be 0..2^64-1, not {args.seed}")


def run(args):
    check_job_arguments(args)
    model = load_model(args.model)
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
    what = f"{count} {dataset.name} images ({args.occlusion} occluded) with {args.model}"
    result, lanes, where = _run_jobs(args, model, job_inputs(images, masks), seeds, what)

    outputs = {"indices": indices, "mask": masks,
               "reconstructed": reconstruct_images(images, masks, result.counts, args.samples,
                                                   dataset.max_value),
               "counts": result.counts, "seeds": seeds, "samples": args.samples,
               "lanes": lanes}
    per_image = f"{result.seconds / count:.3g} s per image"
    if where != "golden":
        outputs["cycles"] = result.cycles
        ideal = macs_per_job(model.sizes, args.samples) / lanes
        per_image += (f"; {result.cycles.mean():,.0f} engine cycles per image, "
                      f"{ideal / result.cycles.mean():.1%} of the MACs/lanes ideal")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:  # np.savez would add ".npz" to any other name
        np.savez(f, **outputs)
    print(f"{where}: {result.seconds:.2f} s ({per_image})", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0

"""Imagine the hidden part of occluded images with a model, on any backend or a board.

Takes the first N images of the data set's held-out test split, hides part of each (--occlusion),
and runs one engine job per image: the input is the image with its hidden pixels zeroed, then the
mask (so the model must have 2 x pixels inputs and pixels outputs). A hidden pixel becomes the
fraction of the S samples in which its output spin fired; known pixels are kept as they are.

The jobs run on --backend (default golden), or with --url on the design that answers at a pyserial
URL: a board's serial port (/dev/ttyUSB1) or a simulated board (`spinemu serve`,
socket://127.0.0.1:PORT), through the host client, which identifies the design and loads the model
first (refused, with the reason, if the design cannot hold it). --lanes, if given, must equal the
design's lanes there. --url repeated makes a pool: every design gets the model and its own client,
the jobs go to whichever is free, and the results are the same as on one; a board that stops
answering leaves the pool (named on stderr) and the others run its jobs.

Image k of the split runs with job seed (SEED * 2^20 + k) mod 2^64, so an image's result depends
only on the arguments and on k, never on --count; the same arguments give the same `reconstructed`
on every backend and on every design.

Writes --out R.npz with `indices` (into the data set's own order: scikit-learn's load_digits order
for digits), `mask` (uint8, 1 = known pixel), `reconstructed` (float in [0, 1], known pixels
unchanged), `counts` (the output spin counts, int64 (N, pixels)), `seeds` (the job seeds),
`samples` and `lanes` (the design's; they set its cycles, never its counts), and for the
simulation backends and --url `cycles` (the engine's cycles per image; a design reports them with
each job).

examples:
  spinemu model random --shape 128,256,256,64 --out model.bin
  spinemu reconstruct --model model.bin --count 100 --samples 32 --out out/recon.npz
  spinemu reconstruct --model model.bin --backend verilator --count 5 --out out/recon_v.npz
  spinemu reconstruct --model model.bin --url socket://127.0.0.1:7777 --out out/recon_s.npz
"""

import sys
from pathlib import Path

from spinemu.hdl.memory_map import macs_per_job
from spinemu.hdl.model_image import ModelImage
from spinemu.sim.backends import BACKENDS

from ..jobs import check_jobs, check_model_for, image_jobs
from ..models import resolve_model
from .files import write_npz
from .options import (
    add_job_arguments,
    dataset_from_args,
    open_job_runner,
    report_departures,
    run_jobs,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("--model", type=resolve_model, required=True, metavar="M.bin",
                        help="the model image (see `spinemu model`), or `default`: the shipped "
                             "digits model")
    add_job_arguments(parser, tuple(BACKENDS))
    parser.add_argument("--out", type=Path, required=True, metavar="R.npz",
                        help="where to write the results")


def run(args):
    check_jobs(args.samples, args.seed)
    model = ModelImage.read(args.model)
    dataset = dataset_from_args(args)
    check_model_for(model, dataset, args.model)
    jobs = image_jobs(dataset, args.occlusion, args.seed, args.count)
    what = f"{len(jobs)} {dataset.name} images ({args.occlusion} occluded) with {args.model}"
    with open_job_runner(args, model, args.model) as runner:
        lanes = runner.lanes if isinstance(runner.lanes, int) else "/".join(map(str, runner.lanes))
        print(f"reconstructing {what} on {runner.name}: {args.samples} samples, "
              f"{lanes} lanes", file=sys.stderr)
        result = run_jobs(runner, jobs.inputs, jobs.seeds, args.samples)
        report_departures(runner)

    outputs = {"indices": jobs.indices, "mask": jobs.masks,
               "reconstructed": jobs.reconstruct(result.counts, args.samples, dataset.max_value),
               "counts": result.counts, "seeds": jobs.seeds, "samples": args.samples,
               "lanes": runner.lanes}
    per_image = f"{result.seconds / len(jobs):.3g} s per image"
    if runner.name != "golden":
        outputs["cycles"] = result.cycles
        per_image += f"; {result.cycles.mean():,.0f} engine cycles per image"
        if isinstance(runner.lanes, int):   # a pool's designs may differ
            ideal = macs_per_job(model.sizes, args.samples) / runner.lanes
            per_image += f", {ideal / result.cycles.mean():.1%} of the MACs/lanes ideal"
    write_npz(args.out, outputs)
    print(f"{runner.name}: {result.seconds:.2f} s ({per_image})", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0

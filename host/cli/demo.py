"""Demo: the shipped digits model imagines the hidden halves of 540 digits on a simulated board.

Starts the native simulated board (the design's Verilog compiled by Verilator with a C++ clock and
socket loop, ``spinemu.sim.board.native``), loads the shipped model through the client, streams the
held-out digits with their bottom half occluded through it, checks every result bit for bit against
the golden model, and writes a PNG grid and a report (``demo.png``, ``demo.json`` in ``--out``,
default ``out/demo/``). Exit status 1 if any result differs from the golden model. With --url
(repeatable) it runs on those designs instead (a pool of boards, `docs/cluster.md`); --lanes and
--inputs-per-cycle then only size the simulated board it no longer starts.
"""

import json
import time
from pathlib import Path

import numpy as np

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import fitted_config, job_cycles

from ..board_bench import start_board
from ..datasets import load_dataset, split
from ..evaluate import benchmark_report
from ..jobs import check_jobs, image_jobs
from ..models import DEFAULT_MODEL, read_trained
from ..plots import draw_grid
from ..runners import open_runner
from . import UserError
from .files import write_text
from .options import run_jobs

__all__ = ["add_arguments", "run", "DEFAULT_LANES", "DEFAULT_INPUTS_PER_CYCLE", "DEFAULT_OUT",
           "SEED"]

DEFAULT_LANES = 16
DEFAULT_INPUTS_PER_CYCLE = 8
DEFAULT_OUT = Path("out/demo")
BOARD_KIND = "native Verilator"
SEED = 1


def add_arguments(parser):
    parser.add_argument("--count", type=int, metavar="N",
                        help="digits to reconstruct (default: all 540 held-out ones)")
    parser.add_argument("--samples", type=int, default=32, metavar="S",
                        help="samples per digit (default: %(default)s)")
    parser.add_argument("--lanes", type=int, default=DEFAULT_LANES,
                        help="engine lanes of the simulated design (default: %(default)s)")
    parser.add_argument("--inputs-per-cycle", type=int, default=DEFAULT_INPUTS_PER_CYCLE,
                        metavar="W", help="spin inputs each lane adds per cycle (default: "
                                          "%(default)s)")
    parser.add_argument("--url", action="append", metavar="URL",
                        help="run on the design at this pyserial URL (a board, or `spinemu "
                             "serve`) instead of starting a simulated board; repeat it for a "
                             "pool of boards")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help="where the grid and the report go (default: %(default)s)")
    parser.add_argument("--prepare", action="store_true",
                        help="only build (or find in the cache) the simulated board, then exit: "
                             "`make` does this at installation, so the demo itself starts at once")


def run(args):
    check_jobs(args.samples, SEED)
    model, companion = read_trained(DEFAULT_MODEL)
    dataset = load_dataset("digits")
    jobs = image_jobs(dataset, "bottom", SEED, args.count)
    count = len(jobs)
    try:
        config = fitted_config(model, args.lanes, args.inputs_per_cycle)
    except ValueError as error:
        raise UserError(f"--lanes, --inputs-per-cycle: {error}") from None
    if args.prepare:
        from spinemu.sim.board.native import build_native
        print(f"simulated board ready: {build_native(config, MAX_PAYLOAD)}")
        return 0

    top = dataset.max_value
    per_job = job_cycles(model.sizes, config, args.samples)
    simulated = "" if args.url else (f", {args.lanes} lanes x {args.inputs_per_cycle} inputs a "
                                     f"cycle ({per_job} cycles per digit)")
    print(f"demo: shipped model {'-'.join(map(str, model.sizes))}, {count} held-out digits, "
          f"bottom half occluded, S = {args.samples} samples{simulated}")
    board, urls = None, args.url
    if not urls:
        began = time.perf_counter()
        board = start_board(config, MAX_PAYLOAD)
        urls = [board.url]
        print(f"demo: simulated board ({BOARD_KIND}) on {board.url}, started in "
              f"{time.perf_counter() - began:.1f} s")
    try:
        # one board: the client's own progress bar (over jobs), shown even off a terminal
        with open_runner(url=urls, model=model, source=str(DEFAULT_MODEL), timeout=5.0,
                         progress=True) as design:
            print(f"demo: running on {design.name}")
            result = run_jobs(design, jobs.inputs, jobs.seeds, args.samples)
        board_stats = board.stats() if board is not None else None
    finally:
        if board is not None:
            board.stop()
    seconds = result.seconds
    golden = open_runner("golden", model=model, lanes=args.lanes)
    golden_counts = golden.run(jobs.inputs, jobs.seeds, args.samples).counts
    mismatched = int(np.sum(np.any(golden_counts != result.counts, axis=1)))
    # a design of --url has its own configuration, and so its own cycles per job
    cycles_ok = bool(np.all(result.cycles == per_job)) if board is not None else None
    bit_exact = mismatched == 0

    reconstructed = jobs.reconstruct(result.counts, args.samples, top)
    figures = benchmark_report(companion.classifier, reconstructed, jobs.images / top,
                               jobs.labels, jobs.masks,
                               dataset.images[split(dataset)[0]] / top)
    acc = figures["accuracy"]
    total_cycles = int(result.cycles.sum())
    report = {
        "model": str(DEFAULT_MODEL), "sizes": list(model.sizes), "dataset": "digits",
        "images": count, "occlusion": "bottom", "samples": args.samples, "seed": SEED,
        "lanes": args.lanes if board is not None else design.lanes,
        "inputs_per_cycle": args.inputs_per_cycle if board is not None else None,
        "board": BOARD_KIND if board is not None else design.name,
        "backend": BOARD_KIND if board is not None else "url", "urls": urls,
        "accuracy": {"reconstructed": acc["reconstructed"], "zero_filled": acc["zero_filled"]},
        "improvement_ratio": figures["improvement_ratio"],
        "seconds": round(seconds, 3),
        "images_per_s": count / seconds if seconds > 0 else None,
        "cycles_per_image": per_job, "cycles": total_cycles,
        "cycles_per_s": total_cycles / seconds if seconds > 0 else None,
        "cycles_match_model": cycles_ok,
        "board_stats": board_stats,
        "bit_exact": bit_exact, "mismatched_images": mismatched,
    }
    out = args.out
    grid = out / "demo.png"
    arrays = {"indices": jobs.indices, "mask": jobs.masks, "reconstructed": reconstructed,
              "labels": jobs.labels}
    # The grid's single-sample rows come from the golden model (bit-identical to the board, as
    # checked above), so drawing it needs no second pass through the simulated board.
    draw_grid(grid, dataset, report, arrays, golden, seed=SEED, images=min(10, count), samples=2)
    write_text(out / "demo.json", json.dumps(report, indent=2) + "\n")

    print(f"accuracy of the reference classifier: reconstructed {acc['reconstructed']:.1%}, "
          f"zero-filled {acc['zero_filled']:.1%} (ratio {figures['improvement_ratio']:.2f})")
    print(f"speed: {report['images_per_s']:.2f} images/s, {report['cycles_per_s']:,.0f} "
          f"simulated cycles/s ({seconds:.1f} s for {count} digits)")
    print(f"bit-exact: {'yes' if bit_exact else 'no'}"
          + ("" if bit_exact else f" ({mismatched} of {count} digits differ from the golden model)"))
    print(f"wrote {grid}")
    print(f"wrote {out / 'demo.json'}")
    return 0 if bit_exact else 1

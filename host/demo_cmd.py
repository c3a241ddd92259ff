"""Demo: the shipped digits model imagines the hidden halves of 540 digits on a simulated board.

Starts the native simulated board (the design's Verilog compiled by Verilator with a C++ clock and
socket loop, ``spinemu.sim.native_serve``), loads the shipped model through the client, streams the
held-out digits with their bottom half occluded through it, checks every result bit for bit against
the golden model, and writes a PNG grid and a report (``demo.png``, ``demo.json`` in ``--out``, default ``out/demo/``). Exit status 1 if any
result differs from the golden model.
"""

import json
import time
from pathlib import Path

import numpy as np

from .cli import UserError
from .occlusion import occlusion_masks
from .reconstruct_cmd import job_seed

__all__ = ["add_arguments", "run", "occluded_jobs", "start_board", "DEFAULT_LANES", "DEFAULT_OUT",
           "SEED"]

DEFAULT_LANES = 16
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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help="where the grid and the report go (default: %(default)s)")
    parser.add_argument("--prepare", action="store_true",
                        help="only build (or find in the cache) the simulated board, then exit: "
                             "`make` does this at installation, so the demo itself starts at once")


def occluded_jobs(dataset, test_idx, count):
    """The demo's jobs: the first ``count`` held-out digits (``test_idx``, the data set's test
    split) with their bottom half hidden. Returns ``(indices, masks, seeds)``."""
    if not 1 <= count <= len(test_idx):
        raise UserError(f"--count must be 1..{len(test_idx)}, not {count}")
    masks = occlusion_masks("bottom", count, dataset.shape, SEED)
    seeds = np.array([job_seed(SEED, k) for k in range(count)], dtype=np.uint64)
    return test_idx[:count], masks, seeds


def start_board(config, max_payload):
    """The native board; a clear error if it cannot start."""
    from spinemu.sim.native_serve import start_native_server
    from spinemu.sim.serve import ServeError
    try:
        return start_native_server(config, max_payload, once=False)
    except (ServeError, OSError) as error:
        raise UserError(f"the simulated board could not start: {error}") from None


def run(args):
    from spinemu.hdl.framing import MAX_PAYLOAD
    from spinemu.sim.engine_backends import default_config
    from spinemu.sim.engine_model import job_cycles, job_inputs, run_jobs

    from .client import Client
    from .datasets import load_dataset, split
    from .evaluate import benchmark_report
    from .evaluate_cmd import draw_grid
    from .model_cmd import DEFAULT_MODEL, load_model
    from .train import companion_path, load_companion

    if not 1 <= args.samples < 1 << 16:
        raise UserError(f"--samples must be 1..65535, not {args.samples}")
    model = load_model(DEFAULT_MODEL)
    companion = load_companion(companion_path(DEFAULT_MODEL), DEFAULT_MODEL.read_bytes())
    dataset = load_dataset("digits")
    train_idx, test_idx = split(dataset)
    count = len(test_idx) if args.count is None else args.count
    indices, masks, seeds = occluded_jobs(dataset, test_idx, count)
    try:
        config = default_config(model, args.lanes)
    except ValueError as error:
        raise UserError(f"--lanes: {error}") from None
    if args.prepare:
        from spinemu.sim.native_serve import build_native
        from spinemu.sim.serve import ServeError
        try:
            print(f"simulated board ready: {build_native(config, MAX_PAYLOAD)}")
        except ServeError as error:
            raise UserError(str(error)) from None
        return 0

    top = dataset.max_value
    images, labels = dataset.images[indices], dataset.labels[indices]
    inputs = job_inputs(images, masks)
    per_job = job_cycles(model.sizes, args.lanes, args.samples)

    print(f"demo: shipped model {'-'.join(map(str, model.sizes))}, {count} held-out digits, "
          f"bottom half occluded, S = {args.samples} samples, {args.lanes} lanes "
          f"({per_job} cycles per digit)")
    began = time.perf_counter()
    board = start_board(config, MAX_PAYLOAD)
    print(f"demo: simulated board ({BOARD_KIND}) on {board.url}, started in "
          f"{time.perf_counter() - began:.1f} s")
    try:
        with Client.connect(board.url, min_clock_hz=1000, timeout=5.0) as dev:
            dev.load_model(model)
            # the client's own progress bar (over jobs), shown even off a terminal
            result = dev.reconstruct(images, masks, seeds, args.samples, max_value=top,
                                     progress=True)
        board_stats = board.stats()
    finally:
        board.stop()
    seconds = result.seconds
    golden = run_jobs(model, inputs, [int(s) for s in seeds], args.samples, args.lanes)
    mismatched = int(np.sum(np.any(golden != result.counts, axis=1)))
    cycles_ok = bool(np.all(result.cycles == per_job))
    bit_exact = mismatched == 0

    originals = images / top
    figures = benchmark_report(companion.classifier, result.reconstructed, originals, labels,
                               masks, dataset.images[train_idx] / top)
    acc = figures["accuracy"]
    total_cycles = int(result.cycles.sum())
    report = {
        "model": str(DEFAULT_MODEL), "sizes": list(model.sizes), "dataset": "digits",
        "images": count, "occlusion": "bottom", "samples": args.samples, "seed": SEED,
        "lanes": args.lanes, "board": BOARD_KIND, "backend": BOARD_KIND,
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
    out.mkdir(parents=True, exist_ok=True)
    grid = out / "demo.png"
    arrays = {"indices": indices, "mask": masks, "reconstructed": result.reconstructed,
              "labels": labels}
    # The grid's single-sample rows come from the golden model (bit-identical to the board, as
    # checked above), so drawing it needs no second pass through the simulated board.
    draw_grid(grid, model, companion, dataset, report, arrays,
              backend="golden", seed=SEED, lanes=args.lanes, images=min(10, count), samples=2)
    (out / "demo.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"accuracy of the reference classifier: reconstructed {acc['reconstructed']:.1%}, "
          f"zero-filled {acc['zero_filled']:.1%} (ratio {figures['improvement_ratio']:.2f})")
    print(f"speed: {report['images_per_s']:.2f} images/s, {report['cycles_per_s']:,.0f} "
          f"simulated cycles/s ({seconds:.1f} s for {count} digits)")
    print(f"bit-exact: {'yes' if bit_exact else 'no'}"
          + ("" if bit_exact else f" ({mismatched} of {count} digits differ from the golden model)"))
    print(f"wrote {grid}")
    print(f"wrote {out / 'demo.json'}")
    return 0 if bit_exact else 1

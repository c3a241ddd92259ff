"""Measure speed and size: the figures the project reports, each measured in this run.

`spinemu bench noise` measures the golden model's noise samples per second (against numpy's own
normal generator, the named reference, in the same run), the cycles per second of each simulator on
a noise bank, and LUT/FF/BRAM/DSP (yosys) and Fmax (nextpnr) of one noise block, one neuron and one
complete noisy neuron on iCE40 UP5K and ECP5 85F.

`spinemu bench engine` measures, for a network (`--shape`, or `--model M.bin`), the golden model's
jobs per second against a float torch forward pass of the same network (the named reference, same
jobs, same run), and the engine's cycles per image on Verilator against multiply-accumulates / lanes.

`spinemu bench board` measures the images per second of the shipped digits model through the
simulated board and the shares of the simulator, the transport and Python in that time, and
computes what each board would reach against its UART.

`spinemu bench shapes` calibrates four SYNTHETIC devices of known shape (probit, logistic, thermal
activation, a two-population mixture; 16 currents x 4000 trials), and reports the model their data
prefer (it must be the true one), the emulated neuron's exact and sampled (`--backend`) distance to
the TRUE curve (target 0.005), and that forcing the probit on the thermal device fails
verification.

The figures are measured by :mod:`spinemu.host.speed`, :mod:`spinemu.host.board_bench` and
:mod:`spinemu.host.shape_bench`; this module prints them.
"""

import json
import sys
from pathlib import Path

import numpy as np

from spinemu.hdl.memory_map import EngineConfig
from spinemu.hdl.model_image import ModelImage, random_model
from spinemu.sim.backends import BACKENDS

from ..board_bench import BITS_PER_BYTE, board_rows, load_reports, stream_digits
from ..models import DEFAULT_MODEL, resolve_model
from ..shape_bench import BENCH_TRIALS, shape_bench, shape_statistics
from ..speed import engine_speed, noise_speed, noise_synthesis
from . import UserError
from .files import write_text
from .options import layer_sizes

TARGETS = ("noise", "engine", "board", "shapes")


def add_arguments(parser):
    parser.add_argument("target", choices=TARGETS, help="what to measure")
    parser.add_argument("--samples", type=int, default=10_000_000,
                        help="golden-model samples per block (default: 10^7)")
    parser.add_argument("--sim-samples", type=int, default=100_000,
                        help="samples per block on each simulator (default: 100000)")
    parser.add_argument("--blocks", type=int, default=4, help="noise blocks (default: 4)")
    parser.add_argument("--no-synth", action="store_true", help="skip synthesis and Fmax")
    parser.add_argument("--shape", default="128,256,256,64",
                        help="engine: layer sizes of a random network (default: 128,256,256,64)")
    parser.add_argument("--model", type=resolve_model,
                        help="engine: a model image instead of --shape (`default`: the shipped one)")
    parser.add_argument("--lanes", type=int, default=4, help="engine: lanes (default: 4)")
    parser.add_argument("--jobs", type=int, default=540,
                        help="engine: golden/torch jobs (default: 540, the digits test split)")
    parser.add_argument("--job-samples", type=int, default=32,
                        help="engine, board: samples per job (default: 32)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="engine: timed rounds of the golden model and torch, taking turns "
                             "(default: 7)")
    parser.add_argument("--no-rtl", action="store_true", help="engine: skip the Verilator run")
    parser.add_argument("--count", type=int, default=64,
                        help="board: occluded digits streamed through the simulated board "
                             "(default: 64)")
    parser.add_argument("--board", default="ulx3s",
                        help="board: the simulated board has this board's lanes (default: ulx3s)")
    parser.add_argument("--report", action="append", metavar="[BOARD=]PATH",
                        help="board: a build's report.json (or its folder) whose Fmax to use; "
                             "repeat for each board")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="board, shapes: write the figures here")
    parser.add_argument("--backend", choices=BACKENDS, default="golden",
                        help="shapes: where the emulated neurons are swept (default: golden)")
    parser.add_argument("--trials", type=int,
                        help="shapes: evaluations per swept input (default: "
                             + ", ".join(f"{b} {t}" for b, t in BENCH_TRIALS.items()) + ")")
    parser.add_argument("--data-trials", type=int, default=4000,
                        help="shapes: trials per current of the synthetic data (default: 4000)")
    parser.add_argument("--seed", type=int, default=2026,
                        help="shapes: seed of the synthetic data (default: 2026)")
    parser.add_argument("--data-sets", type=int, metavar="N",
                        help="shapes: instead, how often the targets hold over N data sets per "
                             "device (seeds --seed .. --seed + N - 1; exact curves only)")


def _noise(args):
    figures = noise_speed(args.blocks, args.samples, args.sim_samples,
                          log=lambda line: print(line, file=sys.stderr))
    g = figures["golden"]
    print(f"golden model: {g['samples']:,} samples in {g['seconds']:.2f} s = {g['rate']:,.0f} "
          f"samples/s; numpy standard_normal (float64): {figures['reference_rate']:,.0f} "
          f"samples/s; ratio {g['rate'] / figures['reference_rate']:.2f}")
    for row in figures["simulators"]:
        print(f"{row['backend']}: {row['cycles']:,} cycles in {row['seconds']:.2f} s = "
              f"{row['rate']:,.0f} cycles/s (equal to golden: {'yes' if row['equal'] else 'NO'})")
    if not args.no_synth:
        print(f"{'design':<14} {'family':<6} {'LUT':>5} {'FF':>5} {'BRAM':>5} {'DSP':>4} "
              f"{'Fmax MHz':>9}")
        for r in noise_synthesis():
            print(f"{r['design']:<14} {r['family']:<6} {r['lut']:>5} {r['ff']:>5} {r['bram']:>5} "
                  f"{r['dsp']:>4} {r['fmax_mhz']:>9.1f}")
    return all(row["equal"] for row in figures["simulators"])


def _jobs_per_s(jobs, seconds):
    rates = jobs / np.array(seconds)
    return f"{np.median(rates):,.0f} jobs/s [{rates.min():,.0f}-{rates.max():,.0f}]"


def _engine(args):
    if args.model is not None:
        model = ModelImage.read(args.model)
    else:
        try:
            model = random_model(layer_sizes(args.shape, "--shape"), seed=1,
                                 fmt=EngineConfig().fmt)
        except ValueError as error:
            raise UserError(f"--shape {args.shape}: {error}") from None
    if args.rounds < 1 or args.jobs < 1:
        raise UserError("--rounds and --jobs must be >= 1")
    f = engine_speed(model, args.lanes, args.jobs, args.job_samples, args.rounds,
                     rtl=not args.no_rtl, log=lambda line: print(line, file=sys.stderr))
    print(f"network {model.sizes}, {args.lanes} lanes, S={args.job_samples}, {args.jobs} jobs, "
          f"median of {args.rounds} interleaved rounds (slowest-fastest in brackets)")
    print(f"golden model ({f['golden_threads']} threads): {_jobs_per_s(args.jobs, f['golden_s'])}; "
          f"float torch forward pass ({f['torch_threads']} threads): "
          f"{_jobs_per_s(args.jobs, f['torch_s'])}; "
          f"ratio {np.median(f['torch_s']) / np.median(f['golden_s']):.2f}")
    ideal = f["macs"] / args.lanes
    print(f"MACs per image {f['macs']:,}; MACs / lanes {ideal:,.0f}; documented cycles "
          f"{f['cycles']:,} ({f['cycles'] / ideal:.3f} x)")
    if args.no_rtl:
        return True
    v = f["verilator"]
    print(f"verilator: {v['cycles']:,} cycles per image = {v['cycles'] / ideal:.3f} x MACs/lanes "
          f"(equal to the documented count: {'yes' if v['cycles'] == f['cycles'] else 'NO'}; "
          f"counts equal to golden: {'yes' if v['equal'] else 'NO'}); "
          f"{v['cycles_per_s']:,.0f} cycles/s")
    return v["equal"] and v["cycles"] == f["cycles"]


def _print_simulated(sim, sizes, board):
    seconds, shares = sim["split_s"], sim["shares"]
    print(f"simulated board (native Verilator; {sim['lanes']} lanes as on the {board}, sized for "
          f"the model as in `spinemu demo`): model {'-'.join(map(str, sizes))}, "
          f"{sim['images']} occluded digits, "
          f"S = {sim['samples']}; started in {sim['start_s']:.1f} s, model loaded in "
          f"{sim['load_s']:.1f} s")
    print(f"  {sim['images_per_s']:.2f} images/s ({sim['seconds']:.2f} s); bit-exact against "
          f"the golden model: {'yes' if sim['bit_exact'] else 'NO'}"
          + ("" if sim["bit_exact"] else f" ({sim['mismatched_images']} images differ)"))
    print(f"  wall time: simulator {shares['simulator']:.1%} ({seconds['simulator']:.2f} s), "
          f"Python {shares['python']:.1%} ({seconds['python']:.2f} s), transport "
          f"{shares['transport']:.1%} ({seconds['transport']:.2f} s)")
    print(f"    simulator: the board's time moving bytes and clocking the design (its stats.json: "
          f"compute_s - idle_compute_s); Python: the host process's CPU time "
          f"({sim['python_cpu_s']:.2f} s) less the {sim['python_hidden_s']:.2f} s it spent while "
          f"the board ran a job; transport: the rest (sockets, wake-ups, scheduling)")
    print(f"  cycles per image: engine {sim['engine_cycles_per_image']:,} (the RUN answers: "
          f"{'as documented' if sim['cycles_match_model'] else 'NOT as documented'}), simulated "
          f"{sim['sim_cycles_per_image']:,.0f} (with the bytes and the idle cycles between "
          f"requests)")
    print(f"  simulator speed {sim['sim_cycles_per_s']:,.0f} cycles/s; engine cycles through the "
          f"link {sim['engine_cycles_per_s']:,.0f}/s")
    sent, answered = sim["job_wire_bytes"]
    print(f"  bytes per image on the link: {sim['bytes_in_per_image']:.0f} to the board, "
          f"{sim['bytes_out_per_image']:.0f} back (the protocol's frames of the first job: "
          f"{sent} + {answered})")


def _print_boards(rows, sim):
    print(f"boards: per image the engine's cycles at the clock, then the job's bytes on the UART "
          f"(8N1, {BITS_PER_BYTE} bits per byte), one after the other (stop-and-wait); images/s "
          f"of the engine alone, the UART alone, and both")
    print(f"  {'board':<11} {'lanes':>5} {'clock':<30} {'cycles':>9} {'bytes':>9} "
          f"{'engine ms':>9} {'UART ms':>8} {'engine/s':>9} {'UART/s':>9} {'both/s':>9}  "
          f"bottleneck")
    for row in rows:
        if not row["fits"]:
            print(f"  {row['board']:<11} {row['lanes']:>5} the model does not fit the build of "
                  f"{row['report']}: {row['reason']}")
            continue
        points = [("at_clock", "nominal board clock" if row["report"] is None else "board clock")]
        if "at_fmax" in row:
            points.append(("at_fmax", "Fmax of the build"))
        for key, label in points:
            t, rate = row[key], row[key]["images_per_s"]
            clock = f"{t['clock_hz'] / 1e6:.1f} MHz ({label})"
            wire = f"{row['request_bytes']}+{row['answer_bytes']}"
            print(f"  {row['board']:<11} {row['lanes']:>5} {clock:<30} {row['cycles']:>9,} "
                  f"{wire:>9} {t['engine_s'] * 1e3:>9.2f} {t['uart_s'] * 1e3:>8.2f} "
                  f"{rate['engine']:>9.1f} {rate['uart']:>9.1f} {rate['combined']:>9.1f}  "
                  f"{t['bottleneck']}")
    for row in rows:
        if row["report"] is not None and row["fits"]:
            print(f"  {row['board']}: clock, Fmax, lanes and baud rate from {row['report']}")
    bauds = ", ".join(f"{b:,}" for b in sorted({row["baud"] for row in rows}))
    print(f"  UART {bauds} baud; bytes: requests + answers of one job, frames with their COBS, "
          f"CRC and delimiter, and the 0x00 the client sends before each request")
    print(f"  not modelled: the host's time per job (its Python took "
          f"{sim['python_s_per_image'] * 1e3:.2f} ms of CPU per image above) and the USB-serial "
          f"adapter's latency on each of the job's round trips")


def _board(args):
    from spinemu.firmware.boards import board as find_board

    if not 1 <= args.job_samples < 1 << 16:
        raise UserError(f"--job-samples must be 1..65535, not {args.job_samples}")
    reports = load_reports(args.report)
    path = DEFAULT_MODEL
    model = ModelImage.read(path)
    try:
        lanes = find_board(args.board).lanes
    except KeyError as error:
        raise UserError(f"--board: {error.args[0]}") from None
    sim = stream_digits(model, args.count, args.job_samples, lanes)
    rows = board_rows(model, args.job_samples, reports)
    _print_simulated(sim, model.sizes, args.board)
    _print_boards(rows, sim)
    if args.json is not None:
        figures = {"model": str(path), "sizes": list(model.sizes), "simulated": sim,
                   "boards": rows}
        write_text(args.json, json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if sim["bit_exact"] and sim["cycles_match_model"] else 1

def _shape_statistics(args):
    if args.data_sets < 1:
        raise UserError(f"--data-sets must be at least 1, not {args.data_sets}")
    from tqdm import tqdm
    with tqdm(total=4 * args.data_sets, unit="data set", file=sys.stderr) as bar:
        f = shape_statistics(args.data_sets, data_trials=args.data_trials, seed=args.seed,
                             progress=bar.update)
    last = f["seed"] + f["data_sets"] - 1
    print(f"shape statistics: {f['data_sets']} data sets per SYNTHETIC device, {f['currents']} "
          f"currents x {f['data_trials']} trials (seeds {f['seed']}..{last})")
    within = f"exact-true <= {f['true_target']:g}"
    print(f"  {'device':<14} {'preferred = true':>16} {within:>18} {'median exact-true':>17}")
    for r in f["devices"]:
        print(f"  {r['device']:<14} {r['preferred_true']:>16.0%} {r['within_target']:>18.0%} "
              f"{r['median_exact_true']:>17.4f}")
    if args.json is not None:
        write_text(args.json, json.dumps(f, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _shapes(args):
    if args.data_trials < 1 or (args.trials is not None and args.trials < 1):
        raise UserError("--data-trials and --trials must be >= 1")
    if args.data_sets is not None:
        return _shape_statistics(args)
    f = shape_bench(backend=args.backend, trials=args.trials, data_trials=args.data_trials,
                    seed=args.seed, log=sys.stderr)
    print(f"shape bench: 4 SYNTHETIC devices, {f['currents']} currents x {f['data_trials']} trials "
          f"(seed {f['seed']}), each calibrated and emulated; sweep on {f['backend']}, "
          f"{f['trials']} trials per input")
    print(f"  {'device':<14} {'preferred':<14} {'exact-true':>10} {'fit-true':>8} "
          f"{'exact-fit':>9} {'sampled-true':>12} {'sd':>6} {'cons. p':>7} "
          f"{'data p':>7}  targets")
    ok = True
    for r in f["devices"]:
        met = r["correct"] and r["exact_met"] and r["sampled_met"]
        ok &= met
        print(f"  {r['device']:<14} {r['preferred'] + ('' if r['correct'] else ' (WRONG)'):<14} "
              f"{r['exact_true']:>10.4f} {r['fit_true']:>8.4f} {r['exact_fit']:>9.5f} "
              f"{r['sampled_true']:>12.4f} {r['sampling_sd']:>6.4f} "
              f"{r['consistency_p']:>7.2g} {r['data_p']:>7.2g}  {'met' if met else 'MISSED'}")
    print(f"  targets: preferred = the true model; exact-true <= {f['true_target']:g} over every "
          f"input of the measured range; sampled-true <= {f['true_target']:g} + "
          f"{f['sampling_sds']} sd with the counts consistent with the exact curve (cons. p >= "
          "0.001)")
    print("  exact-true: the exact emulated curve against the TRUE curve; fit-true: the preferred "
          "fit against it (estimation error); exact-fit: the emulated curve against the fit "
          "(emulation error); data p: the measured counts against the exact emulated "
          "probabilities")
    forced = f["forced_probit_on_thermal"]
    print(f"forced --model probit on the thermal device: data p = {forced['data_p']:.2g}, exact "
          f"curve {forced['exact_max_abs_error']:.4f} from the thermal fit: verification "
          + ("FAILS, as it must" if forced["failed"] else "PASSES, which it must not"))
    ok &= forced["failed"]
    if args.json is not None:
        write_text(args.json, json.dumps(f, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if ok else 1


def run(args):
    if args.target == "shapes":
        return _shapes(args)
    if args.target == "board":
        return _board(args)
    if args.target == "engine":
        return 0 if _engine(args) else 1
    if args.blocks < 1 or args.samples < 1 or args.sim_samples < 10:
        raise UserError("--blocks, --samples must be >= 1 and --sim-samples >= 10")
    return 0 if _noise(args) else 1

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
computes what each board would reach: the slower of its engine and its UART, with requests in
flight, at each round-trip latency, and its model load time. With --url (repeatable) it streams
through those designs instead (boards, or a pool of them) and checks every result.

`spinemu bench link` streams the same digits through the simulated board directly and through a
loopback proxy adding 8 and 16 ms per round trip (`spinemu.host.latency_proxy`), in one run, and
judges the link against issue #14's targets: images/s at each latency >= 0.9 of the direct rate,
identical results, wire bytes per image at most half of format 3's; then the boards' table.

`spinemu bench shapes` calibrates four SYNTHETIC devices of known shape (probit, logistic, thermal
activation, a two-population mixture; 16 currents x 4000 trials), and reports the model their data
prefer (it must be the true one), the emulated neuron's exact and sampled (`--backend`) distance to
the TRUE curve (target 0.005), and that forcing the probit on the thermal device fails
verification.

`spinemu bench pool` streams the same digits through one native simulated board, a pool of
`--boards` of them, and a Dask cluster on loopback with a worker per board (started and stopped by
the bench), then once more on the cluster with a worker killed mid-run; it prints each run's
images/s, the speed-up over one board (target 1.7 for 2 boards) and whether every result is the
golden model's.

The figures are measured by :mod:`spinemu.host.speed`, :mod:`spinemu.host.board_bench`,
:mod:`spinemu.host.pool_bench` and :mod:`spinemu.host.shape_bench`; this module prints them.
"""

import json
import sys
from pathlib import Path

import numpy as np

from spinemu.hdl.memory_map import EngineConfig
from spinemu.hdl.model_image import ModelImage, random_model
from spinemu.sim.backends import BACKENDS

from ..board_bench import (
    BITS_PER_BYTE,
    LINK_RTTS_S,
    board_rows,
    link_targets,
    load_reports,
    stream_designs,
    stream_digits,
    stream_link,
)
from ..models import DEFAULT_MODEL, resolve_model
from ..shape_bench import BENCH_TRIALS, shape_bench, shape_statistics
from ..speed import engine_speed, noise_speed, noise_synthesis
from . import UserError
from .files import write_text
from .options import layer_sizes

TARGETS = ("noise", "engine", "board", "link", "shapes", "pool")


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
    parser.add_argument("--inputs-per-cycle", type=int, default=1, metavar="W",
                        help="engine: spin inputs each lane adds per cycle (default: 1)")
    parser.add_argument("--jobs", type=int, default=540,
                        help="engine: golden/torch jobs (default: 540, the digits test split)")
    parser.add_argument("--job-samples", type=int, default=32,
                        help="engine, board, link: samples per job (default: 32)")
    parser.add_argument("--rounds", type=int,
                        help="engine: timed rounds of the golden model and torch, taking turns "
                             "(default: 31: a round of 540 jobs is a tenth of a second, which the "
                             "machine's load sways); link: rounds of the direct and proxied "
                             "streams, taking turns (default: 3)")
    parser.add_argument("--no-rtl", action="store_true", help="engine: skip the Verilator run")
    parser.add_argument("--count", type=int,
                        help="board, link, pool: occluded digits streamed through the simulated "
                             "board (default: 64; pool: 96)")
    parser.add_argument("--url", action="append", metavar="URL",
                        help="board: stream through the design at this pyserial URL (a board, "
                             "or `spinemu serve`) instead of a simulated board; repeat it for a "
                             "pool")
    parser.add_argument("--boards", type=int, default=2,
                        help="pool: simulated boards in the pool and the cluster (default: 2)")
    parser.add_argument("--board", default="ulx3s",
                        help="board, link, pool: the simulated board has this board's lanes "
                             "(default: ulx3s)")
    parser.add_argument("--report", action="append", metavar="[BOARD=]PATH",
                        help="board, link: a build's report.json (or its folder) whose clock, "
                             "Fmax and baud to use; "
                             "repeat for each board")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="board, link, shapes, pool: write the figures here")
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
    if args.rounds is None:
        args.rounds = 31
    if args.rounds < 1 or args.jobs < 1:
        raise UserError("--rounds and --jobs must be >= 1")
    f = engine_speed(model, args.lanes, args.inputs_per_cycle, args.jobs, args.job_samples,
                     args.rounds,
                     rtl=not args.no_rtl, log=lambda line: print(line, file=sys.stderr))
    print(f"network {model.sizes}, {args.lanes} lanes x {args.inputs_per_cycle} inputs a cycle, "
          f"S={args.job_samples}, {args.jobs} jobs, "
          f"median of {args.rounds} interleaved rounds (slowest-fastest in brackets)")
    print(f"golden model ({f['golden_threads']} threads): {_jobs_per_s(args.jobs, f['golden_s'])}; "
          f"float torch forward pass ({f['torch_threads']} threads): "
          f"{_jobs_per_s(args.jobs, f['torch_s'])}; "
          f"ratio {np.median(f['torch_s']) / np.median(f['golden_s']):.2f}")
    ideal = f["macs"] / args.lanes
    print(f"MACs per image {f['macs']:,}; MACs / lanes {ideal:,.0f}; documented cycles "
          f"{f['cycles']:,} ({f['cycles'] / ideal:.3f} x; the spin layers add "
          f"{args.inputs_per_cycle} a cycle per lane); weight words delivered in "
          f"{f['word_utilisation']:.3f} of the spin layers' cycles")
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
    print(f"simulated board (native Verilator; {sim['lanes']} lanes x {sim['inputs_per_cycle']} "
          f"inputs a cycle as on the {board}, sized for "
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
    print(f"  cycles per image: engine {sim['engine_cycles_per_image']:,} (the jobs' answers: "
          f"{'as documented' if sim['cycles_match_model'] else 'NOT as documented'}), simulated "
          f"{sim['sim_cycles_per_image']:,.0f} (with the bytes and the idle cycles between "
          f"requests)")
    print(f"  simulator speed {sim['sim_cycles_per_s']:,.0f} cycles/s; engine cycles through the "
          f"link {sim['engine_cycles_per_s']:,.0f}/s")
    sent, answered = sim["job_frame_bytes"]
    old = sim["job_wire_bytes"]
    print(f"  bytes per image on the link: {sim['bytes_in_per_image']:.0f} to the board, "
          f"{sim['bytes_out_per_image']:.0f} back (the protocol's frames of the first job: one "
          f"JOB {sent} + {answered}; format 3's WRITE, RUN and READ {old[0]} + {old[1]})")


def _ms(seconds):
    return f"{seconds * 1e3:g} ms"


def _print_boards(rows, python_s_per_image=None):
    window = sorted({row["window"] for row in rows})
    print(f"boards: one JOB per image with requests in flight (a receive window of "
          f"{', '.join(map(str, window))} bytes); the engine and the UART (full duplex, 8N1, "
          f"{BITS_PER_BYTE} bits per byte) work at once, so a board runs at the slower of the "
          f"two: images/s = min(engine-bound, link-bound), link-bound = baud / ({BITS_PER_BYTE} "
          f"x the bytes of the larger direction); at a round-trip latency at most the window's "
          f"requests per round trip")
    first = next((row for row in rows if row["fits"]), None)
    rtts = [p["rtt_s"] for p in first["at_clock"]["at_rtt"] if p["rtt_s"]] if first else []
    latency = "".join(f" {'at ' + _ms(rtt):>15}" for rtt in rtts)
    print(f"  {'board':<11} {'lanes':>5} {'clock':<29} {'baud':>9} {'cycles':>9} {'bytes':>7} "
          f"{'engine/s':>9} {'link/s':>8} {'engine:link':>11} {'images/s':>9}  {'bottleneck':<10}"
          + latency)
    loads = []
    for row in rows:
        if not row["fits"]:
            build = "its default build" if row["report"] is None else f"the build of {row['report']}"
            reason = row["reason"].replace("this design", build)
            print(f"  {row['board']:<11} {row['lanes']:>5} {reason}")
            continue
        points = [("at_clock", "board clock")]
        if "at_fmax" in row:
            points.append(("at_fmax", "Fmax of the build"))
        for key, label in points:
            t, rate = row[key], row[key]["images_per_s"]
            clock = f"{t['clock_hz'] / 1e6:.1f} MHz ({label})"
            wire = f"{row['request_bytes']}+{row['answer_bytes']}"
            at = "".join(f" {p['images_per_s']:>8.1f} ({p['ratio']:.2f})"
                         + ("w" if p["bottleneck"] == "window" else " ")
                         for p in t["at_rtt"] if p["rtt_s"])
            print(f"  {row['board']:<11} {row['lanes']:>5} {clock:<29} {t['baud']:>9,} "
                  f"{row['cycles']:>9,} {wire:>7} {rate['engine']:>9.1f} {rate['link']:>8.1f} "
                  f"{t['engine_to_link']:>11.3f} {rate['both']:>9.1f}  {t['bottleneck']:<10}"
                  + at)
            loads.append((row, key, label))
    print("  at a latency: images/s (the share of the rate without latency); w: bound by the "
          "window (in flight / (round trip + the job's bytes and engine time))")
    for row in rows:
        if row["fits"]:
            sw = row["stop_and_wait_bytes"]
            print(f"  {row['board']}: bytes per image {row['request_bytes']} + "
                  f"{row['answer_bytes']} = {row['request_bytes'] + row['answer_bytes']} "
                  f"({row['frames']} frames), against format 3's WRITE, RUN and READ "
                  f"{sw[0]} + {sw[1]} = {sum(sw)}"
                  + (f"; clock, Fmax, baud from {row['report']}" if row["report"] else ""))
    print("  model load (the WRITE frames of the model and the IDENTIFY after them, through the "
          "window), seconds:")
    for row, key, label in loads:
        times = ", ".join(f"{p['seconds']:.2f} s " + ("direct" if not p["rtt_s"] else
                                                      f"at {_ms(p['rtt_s'])}")
                          for p in row[key]["load_s"])
        print(f"    {row['board']:<11} {label:<17} {row['load_frames']} frames, "
              f"{row['load_bytes']:,} bytes: {times}")
    if python_s_per_image is not None:
        print(f"  not modelled: the host's time per job (its Python took "
              f"{python_s_per_image * 1e3:.2f} ms of CPU per image on the simulated board) and a "
              f"USB-serial adapter's own limits beyond its latency")


def _model_and_lanes(args):
    from spinemu.firmware.boards import board as find_board

    if args.count is None:
        args.count = 96 if args.target == "pool" else 64
    if not 1 <= args.job_samples < 1 << 16:
        raise UserError(f"--job-samples must be 1..65535, not {args.job_samples}")
    if args.count < 1:
        raise UserError(f"--count must be at least 1, not {args.count}")
    try:
        found = find_board(args.board)
    except KeyError as error:
        raise UserError(f"--board: {error.args[0]}") from None
    return DEFAULT_MODEL, ModelImage.read(DEFAULT_MODEL), found.lanes, found.inputs_per_cycle


def _designs(args):
    path, model, _, _ = _model_and_lanes(args)
    f = stream_designs(model, args.url, args.count, args.job_samples)
    print(f"board: the shipped model {'-'.join(map(str, model.sizes))} on "
          f"{', '.join(f['urls'])}: {f['images']} occluded digits, S = {f['samples']}; model "
          f"loaded in {f['load_s']:.2f} s")
    print(f"  {f['images_per_s']:.2f} images/s ({f['seconds']:.2f} s); bit-exact against the "
          f"golden model: {'yes' if f['bit_exact'] else 'NO'}"
          + ("" if f["bit_exact"] else f" ({f['mismatched_images']} images differ)"))
    for gone in f["left"]:
        print(f"  {gone['url']} left the pool: {gone['reason']}")
    if args.json is not None:
        write_text(args.json, json.dumps({"model": str(path), "designs": f}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if f["bit_exact"] else 1


def _board(args):
    if args.url:
        return _designs(args)
    reports = load_reports(args.report)
    path, model, lanes, w = _model_and_lanes(args)
    sim = stream_digits(model, args.count, args.job_samples, lanes, w)
    rows = board_rows(model, args.job_samples, reports)
    _print_simulated(sim, model.sizes, args.board)
    _print_boards(rows, sim["python_s_per_image"])
    if args.json is not None:
        figures = {"model": str(path), "sizes": list(model.sizes), "simulated": sim,
                   "boards": rows}
        write_text(args.json, json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if sim["bit_exact"] and sim["cycles_match_model"] else 1


def _print_link(f, sizes, board):
    print(f"link: the shipped model {'-'.join(map(str, sizes))} on the native simulated board "
          f"({f['lanes']} lanes x {f['inputs_per_cycle']} inputs a cycle as on the {board}), "
          f"{f['images']} occluded digits, "
          f"S = {f['samples']}, the same seeds in every run; directly and through a loopback "
          f"proxy adding each round trip (half each way; spinemu.host.latency_proxy), "
          f"{f['rounds']} round{'s' if f['rounds'] > 1 else ''} taking turns (medians); board "
          f"started in {f['start_s']:.1f} s")
    print("  the simulated board has no UART (its bytes come at socket speed) and runs far "
          "slower than a board's engine, so these ratios test the client's window against the "
          "latency, not a board's UART: the boards' table below has that")
    print(f"  {'round trip':<10} {'images/s':>9} {'ratio':>6} {'identical':>11} "
          f"{'bytes out+in per image':>23} {'load s':>7} {'in flight':>9} {'resends':>7} "
          f"{'board working':>13} {'sim cycles/s':>12} {'ratio at sim speed':>18}")
    for run in f["runs"]:
        out, back = run["bytes_out_per_image"], run["bytes_in_per_image"]
        same = ("golden: " + ("yes" if f["bit_exact"] else "NO")) if not run["rtt_s"] else (
            "yes" if run["identical"] else "NO")
        sim = run["board"]
        corrected = run["ratio_at_direct_sim_speed"]
        working = (f"{sim['working_share']:>13.1%} {sim['sim_cycles_per_s']:>12,.0f} "
                   f"{corrected:>18.3f}" if sim else f"{'-':>13} {'-':>12} {'-':>18}")
        print(f"  {'direct' if not run['rtt_s'] else _ms(run['rtt_s']):<10} "
              f"{run['images_per_s']:>9.2f} {run['ratio']:>6.3f} {same:>11} "
              f"{f'{out:.1f}+{back:.1f} = {out + back:.1f}':>23} {run['load_s']:>7.2f} "
              f"{run['in_flight']:>9} {run['resends']:>7} {working}")
    print("  in flight: the most requests unanswered at once; board working: the share of the "
          "stream's wall time the simulated board spent simulating the design other than idle "
          "for want of a request (its stats.json); a lower one through the proxy is latency the "
          "window did not hide, a lower simulator speed is the machine's load; ratio at sim "
          "speed: the ratio were the simulator as fast as in the direct run (the targets take "
          "the plain ratio)")
    sw, job = f["stop_and_wait_bytes"], f["job_frame_bytes"]
    print(f"  the protocol's frames of the first digit: format 3's WRITE, RUN and READ "
          f"{sw[0]} + {sw[1]} = {sum(sw)} bytes, format 4's JOB {job[0]} + {job[1]} = "
          f"{sum(job)}")


def _link(args):
    if args.rounds is None:
        args.rounds = 3
    if args.rounds < 1:
        raise UserError(f"--rounds must be at least 1, not {args.rounds}")
    reports = load_reports(args.report)
    path, model, lanes, w = _model_and_lanes(args)
    figures = stream_link(model, args.count, args.job_samples, lanes, w, rtts=LINK_RTTS_S,
                          rounds=args.rounds)
    rows = board_rows(model, args.job_samples, reports)
    targets = link_targets(figures)
    _print_link(figures, model.sizes, args.board)
    print("targets (issue #14):")
    for t in targets:
        value = t["value"]
        shown = (f"{value:.3f}" if isinstance(value, float) and value < 10 else
                 f"{value:.1f}" if isinstance(value, float) else
                 ("yes" if value else "no"))
        print(f"  {t['target']}: {shown}: {'met' if t['met'] else 'MISSED'}")
    _print_boards(rows)
    if args.json is not None:
        out = {"model": str(path), "sizes": list(model.sizes), "link": figures,
               "targets": targets, "boards": rows}
        write_text(args.json, json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(t["met"] for t in targets) else 1


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


def _pool(args):
    from tqdm import tqdm

    from ..pool_bench import pool_bench, pool_targets
    if args.boards < 2:
        raise UserError(f"--boards must be at least 2, not {args.boards}")
    path, model, lanes, w = _model_and_lanes(args)
    f = pool_bench(model, args.count, args.job_samples, lanes, w, boards=args.boards,
                   bar=lambda total, label: tqdm(total=total, unit="image", desc=label,
                                                 file=sys.stderr))
    print(f"pool: the shipped model {'-'.join(map(str, model.sizes))} on native simulated boards "
          f"({lanes} lanes x {w} inputs a cycle as on the {args.board}, each a process), "
          f"{f['images']} occluded digits, S = {f['samples']}, the same seeds in every run; "
          f"{f['boards']} boards started in {f['start_s']:.1f} s; the Dask scheduler and a worker "
          f"per board on loopback")
    print(f"  {'run':<28} {'images/s':>9} {'x 1 board':>9} {'identical':>9}  left")
    for run in f["runs"]:
        left = "; ".join(f"{d['url']} ({d['reason']})" for d in run["left"]) or "-"
        if run["killed_after"] is not None:
            left = f"killed after {run['killed_after']} images: {left}"
        print(f"  {run['run']:<28} {run['images_per_s']:>9.2f} {run['speedup']:>9.3f} "
              f"{'yes' if run['identical'] else 'NO':>9}  {left}")
    print("  the reference is the first run, one board, in this run; the host's client, the "
          "scheduler and the workers share the machine's cores with the boards")
    targets = pool_targets(f)
    print("targets (issue #15):")
    for t in targets:
        value = t["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else ("yes" if value else "no")
        print(f"  {t['target']}: {shown}: {'met' if t['met'] else 'MISSED'}")
    if args.json is not None:
        write_text(args.json, json.dumps({"model": str(path), "pool": f, "targets": targets},
                                         indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(t["met"] for t in targets) else 1


def run(args):
    if args.target == "pool":
        return _pool(args)
    if args.target == "shapes":
        return _shapes(args)
    if args.target == "board":
        return _board(args)
    if args.target == "link":
        return _link(args)
    if args.target == "engine":
        return 0 if _engine(args) else 1
    if args.blocks < 1 or args.samples < 1 or args.sim_samples < 10:
        raise UserError("--blocks, --samples must be >= 1 and --sim-samples >= 10")
    return 0 if _noise(args) else 1

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
computes what each board would reach against its UART (:mod:`spinemu.host.board_bench`).
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from spinemu.hdl.memory_map import EngineConfig, fitted_config, job_cycles, macs_per_job
from spinemu.hdl.model_image import ModelImage, random_model
from spinemu.hdl.neuron import NoisyNeuron, SpinNeuron
from spinemu.hdl.noise import GaussianNoise
from spinemu.sim import golden
from spinemu.sim.backends import BACKENDS
from spinemu.sim.noise_backends import generate_noise

from ..board_bench import BITS_PER_BYTE, board_rows, load_reports, stream_digits
from ..models import DEFAULT_MODEL, resolve_model
from ..runners import open_runner
from . import UserError
from .files import write_text

TARGETS = ("noise", "engine", "board")
FAMILIES = ("ice40", "ecp5")


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
    parser.add_argument("--json", type=Path, metavar="PATH", help="board: write the figures here")


def _timed(fn):
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def _noise_speed(args):
    rows = []
    codes, seconds = _timed(lambda: golden.noise_codes(1, args.blocks, args.samples))
    rng = np.random.default_rng(1)
    _, reference = _timed(lambda: rng.standard_normal((args.samples, args.blocks)))
    rate, ref_rate = codes.size / seconds, codes.size / reference
    print(f"golden model: {codes.size:,} samples in {seconds:.2f} s = {rate:,.0f} samples/s; "
          f"numpy standard_normal (float64): {ref_rate:,.0f} samples/s; ratio {rate / ref_rate:.2f}")
    for backend in list(BACKENDS)[1:]:
        samples = args.sim_samples // (10 if backend == "amaranth" else 1)
        print(f"running {backend} ({samples:,} samples x {args.blocks} blocks)...", file=sys.stderr)
        run = generate_noise(backend, seed=1, blocks=args.blocks, samples=samples, ready_p=0.75)
        same = np.array_equal(run.codes, golden.noise_codes(1, args.blocks, samples))
        rows.append((backend, run.cycles, run.seconds, run.rate, same))
        print(f"{backend}: {run.cycles:,} cycles in {run.seconds:.2f} s = {run.rate:,.0f} "
              f"cycles/s (equal to golden: {'yes' if same else 'NO'})")
    return all(same for *_, same in rows)


def _synthesis():
    from spinemu.firmware.synth import place_and_route_fmax, synth_stats
    designs = [("GaussianNoise", lambda: GaussianNoise(0)), ("SpinNeuron", SpinNeuron),
               ("NoisyNeuron", lambda: NoisyNeuron(0))]
    print(f"{'design':<14} {'family':<6} {'LUT':>5} {'FF':>5} {'BRAM':>5} {'DSP':>4} {'Fmax MHz':>9}")
    for name, make in designs:
        for family in FAMILIES:
            stats = synth_stats(make(), family)
            fmax = place_and_route_fmax(make(), family)["fmax_mhz"]
            print(f"{name:<14} {family:<6} {stats['lut']:>5} {stats['ff']:>5} {stats['bram']:>5} "
                  f"{stats['dsp']:>4} {fmax:>9.1f}")


def _torch_forward(model, inputs, samples):
    """The same network in float32 torch: spins sampled with torch's Gaussian noise."""
    import torch
    x = torch.as_tensor(inputs, dtype=torch.float32)
    layers = [(torch.as_tensor(np.asarray(w), dtype=torch.float32),
               torch.as_tensor(np.asarray(b), dtype=torch.float32),
               torch.as_tensor(np.asarray(t) / (1 << model.fmt.theta_frac), dtype=torch.float32),
               torch.as_tensor(np.asarray(s) / (1 << model.fmt.sigma_frac), dtype=torch.float32))
              for w, b, t, s in zip(model.weights, model.bias, model.theta, model.sigma, strict=True)]

    def forward():
        with torch.no_grad():
            w, b, t, s = layers[0]
            a = (x @ w.T + b)[:, None, :].expand(-1, samples, -1)
            spins = (a + s * torch.randn_like(a) > t).float()
            for w, b, t, s in layers[1:]:
                a = spins @ w.T + b
                spins = (a + s * torch.randn_like(a) > t).float()
            return spins.sum(dim=1)
    return forward


def _interleaved(fns, rounds):
    """Seconds of each of ``fns`` in ``rounds`` rounds, the functions taking turns so that a change
    in the machine's load falls on all of them; one untimed call each first (caches, threads)."""
    for fn in fns:
        fn()
    seconds = [[] for _ in fns]
    for _ in range(rounds):
        for fn, spent in zip(fns, seconds, strict=True):
            spent.append(_timed(fn)[1])
    return seconds


def _jobs_per_s(jobs, seconds):
    rates = jobs / np.array(seconds)
    return f"{np.median(rates):,.0f} jobs/s [{rates.min():,.0f}-{rates.max():,.0f}]"


def _engine(args):
    import torch

    if args.model is not None:
        model = ModelImage.read(args.model)
    else:
        try:
            shape = tuple(int(n) for n in args.shape.split(","))
            model = random_model(shape, seed=1, fmt=EngineConfig().fmt)
        except ValueError as error:
            raise UserError(f"--shape {args.shape}: {error}") from None
    try:
        fitted_config(model, args.lanes)
    except ValueError as error:
        raise UserError(f"--lanes: {error}") from None
    if args.rounds < 1 or args.jobs < 1:
        raise UserError("--rounds and --jobs must be >= 1")
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 1 << model.input_bits, size=(args.jobs, model.sizes[0]))
    seeds = list(range(args.jobs))
    S = args.job_samples
    forward = _torch_forward(model, inputs, S)
    reference = open_runner("golden", model=model, lanes=args.lanes)
    golden_s, torch_s = _interleaved([lambda: reference.run(inputs, seeds, S), forward],
                                     args.rounds)
    print(f"network {model.sizes}, {args.lanes} lanes, S={S}, {args.jobs} jobs, median of "
          f"{args.rounds} interleaved rounds (slowest-fastest in brackets)")
    print(f"golden model ({os.cpu_count()} threads): {_jobs_per_s(args.jobs, golden_s)}; "
          f"float torch forward pass "
          f"({torch.get_num_threads()} threads): {_jobs_per_s(args.jobs, torch_s)}; "
          f"ratio {np.median(torch_s) / np.median(golden_s):.2f}")
    macs = macs_per_job(model.sizes, S)
    formula = job_cycles(model.sizes, args.lanes, S)
    print(f"MACs per image {macs:,}; MACs / lanes {macs / args.lanes:,.0f}; documented cycles "
          f"{formula:,} ({formula / (macs / args.lanes):.3f} x)")
    if args.no_rtl:
        return True
    print("running one job on verilator...", file=sys.stderr)
    rtl = open_runner("verilator", model=model, lanes=args.lanes).run(inputs[:1], seeds[:1], S)
    cycles = int(rtl.cycles[0])
    same = np.array_equal(rtl.counts, reference.run(inputs[:1], seeds[:1], S).counts)
    print(f"verilator: {cycles:,} cycles per image = {cycles / (macs / args.lanes):.3f} x MACs/lanes "
          f"(equal to the documented count: {'yes' if cycles == formula else 'NO'}; counts equal "
          f"to golden: {'yes' if same else 'NO'}); {cycles / rtl.job_seconds:,.0f} cycles/s")
    return same and cycles == formula



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

def run(args):
    if args.target == "board":
        return _board(args)
    if args.target == "engine":
        return 0 if _engine(args) else 1
    if args.blocks < 1 or args.samples < 1 or args.sim_samples < 10:
        raise UserError("--blocks, --samples must be >= 1 and --sim-samples >= 10")
    ok = _noise_speed(args)
    if not args.no_synth:
        _synthesis()
    return 0 if ok else 1

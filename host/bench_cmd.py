"""Measure speed and size: the figures the project reports, each measured in this run.

`spinemu bench noise` measures the golden model's noise samples per second (against numpy's own
normal generator, the named reference, in the same run), the cycles per second of each simulator on
a noise bank, and LUT/FF/BRAM/DSP (yosys) and Fmax (nextpnr) of one noise block, one neuron and one
complete noisy neuron on iCE40 UP5K and ECP5 85F.
"""

import sys
import time

import numpy as np

from spinemu.hdl.neuron import NoisyNeuron, SpinNeuron
from spinemu.hdl.noise import GaussianNoise
from spinemu.sim import golden
from spinemu.sim.noise_backends import BACKENDS, generate_noise

from .cli import UserError

TARGETS = ("noise",)
FAMILIES = ("ice40", "ecp5")


def add_arguments(parser):
    parser.add_argument("target", choices=TARGETS, help="what to measure")
    parser.add_argument("--samples", type=int, default=10_000_000,
                        help="golden-model samples per block (default: 10^7)")
    parser.add_argument("--sim-samples", type=int, default=100_000,
                        help="samples per block on each simulator (default: 100000)")
    parser.add_argument("--blocks", type=int, default=4, help="noise blocks (default: 4)")
    parser.add_argument("--no-synth", action="store_true", help="skip synthesis and Fmax")


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
    for backend in BACKENDS[1:]:
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


def run(args):
    if args.blocks < 1 or args.samples < 1 or args.sim_samples < 10:
        raise UserError("--blocks, --samples must be >= 1 and --sim-samples >= 10")
    ok = _noise_speed(args)
    if not args.no_synth:
        _synthesis()
    return 0 if ok else 1

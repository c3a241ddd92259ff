"""The speed and size figures of ``spinemu bench noise`` and ``spinemu bench engine``, each measured
against its named reference in the same run.

:func:`noise_speed`: the golden model's noise samples per second against numpy's normal generator,
and each simulator's cycles per second on a noise bank, with its codes checked against the golden
model. :func:`noise_synthesis`: LUT/FF/BRAM/DSP (yosys) and Fmax (nextpnr) of a noise block, a
neuron and a noisy neuron. :func:`engine_speed`: the golden model's jobs per second against a
float torch forward pass of the same network (taking turns over several rounds, so that a change
in the machine's load falls on both), the documented cycles against MACs/lanes, and one job on
Verilator. (The board figures are :mod:`spinemu.host.board_bench`'s.)
"""

import os
import time

import numpy as np

from spinemu.hdl.memory_map import fitted_config, job_cycles, macs_per_job, word_utilisation
from spinemu.hdl.neuron import NoisyNeuron, SpinNeuron
from spinemu.hdl.noise import AliasNoise
from spinemu.sim import golden
from spinemu.sim.backends import BACKENDS
from spinemu.sim.noise_backends import generate_noise

from .runners import open_runner

__all__ = ["FAMILIES", "noise_speed", "noise_synthesis", "engine_speed", "interleaved"]

FAMILIES = ("ice40", "ecp5")


def _timed(fn):
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def noise_speed(blocks, samples, sim_samples, *, log=None):
    """Noise figures: ``{"golden": {samples, seconds, rate}, "reference_rate", "simulators":
    [{backend, samples, cycles, seconds, rate, equal}]}``; the Amaranth simulator runs a tenth of
    ``sim_samples``. ``log(line)`` hears what starts."""
    codes, seconds = _timed(lambda: golden.noise_codes(1, blocks, samples))
    rng = np.random.default_rng(1)
    _, reference = _timed(lambda: rng.standard_normal((samples, blocks)))
    figures = {"golden": {"samples": codes.size, "seconds": seconds,
                          "rate": codes.size / seconds},
               "reference_rate": codes.size / reference, "simulators": []}
    for backend in list(BACKENDS)[1:]:
        n = sim_samples // (10 if backend == "amaranth" else 1)
        if log is not None:
            log(f"running {backend} ({n:,} samples x {blocks} blocks)...")
        run = generate_noise(backend, seed=1, blocks=blocks, samples=n, ready_p=0.75)
        figures["simulators"].append({
            "backend": backend, "samples": n, "cycles": run.cycles, "seconds": run.seconds,
            "rate": run.rate,
            "equal": bool(np.array_equal(run.codes, golden.noise_codes(1, blocks, n)))})
    return figures


def noise_synthesis():
    """``[{design, family, lut, ff, bram, dsp, fmax_mhz}]`` of the noise block, the neuron and the
    noisy neuron on each of :data:`FAMILIES`."""
    from spinemu.firmware.synth import place_and_route_fmax, synth_stats
    designs = [("AliasNoise", lambda: AliasNoise(0)), ("SpinNeuron", SpinNeuron),
               ("NoisyNeuron", lambda: NoisyNeuron(0))]
    rows = []
    for name, make in designs:
        for family in FAMILIES:
            stats = synth_stats(make(), family)
            rows.append({"design": name, "family": family, **stats,
                         "fmax_mhz": place_and_route_fmax(make(), family)["fmax_mhz"]})
    return rows


def _torch_forward(model, inputs, samples):
    """The same network in float32 torch: spins sampled with torch's Gaussian noise."""
    import torch
    x = torch.as_tensor(inputs, dtype=torch.float32)
    layers = [(torch.as_tensor(np.asarray(w), dtype=torch.float32),
               torch.as_tensor(np.asarray(b), dtype=torch.float32),
               torch.as_tensor(np.asarray(t) / (1 << model.fmt.theta_frac), dtype=torch.float32),
               torch.as_tensor(np.asarray(s) / (1 << model.fmt.sigma_frac), dtype=torch.float32))
              for w, b, t, s in zip(model.weights, model.bias, model.theta, model.sigma,
                                    strict=True)]

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


def interleaved(fns, rounds):
    """Seconds of each of ``fns`` in ``rounds`` rounds, the functions taking turns so that a change
    in the machine's load falls on all of them; one untimed call each first (caches, threads)."""
    for fn in fns:
        fn()
    seconds = [[] for _ in fns]
    for _ in range(rounds):
        for fn, spent in zip(fns, seconds, strict=True):
            spent.append(_timed(fn)[1])
    return seconds


def engine_speed(model, lanes, inputs_per_cycle, jobs, samples, rounds, *, rtl=True, log=None):
    """Engine figures for ``jobs`` random jobs of ``model`` with ``samples`` samples: the golden
    model's and torch's seconds per round (``golden_s``, ``torch_s``, with their thread counts),
    ``macs``, the documented ``cycles`` per job and ``word_utilisation`` of a design of ``lanes``
    lanes of ``inputs_per_cycle`` inputs a cycle, and with ``rtl`` one job on Verilator
    (``verilator``: its cycles, cycles/s and whether its counts equal the golden model's)."""
    import torch

    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 1 << model.input_bits, size=(jobs, model.sizes[0]))
    seeds = list(range(jobs))
    config = fitted_config(model, lanes, inputs_per_cycle)
    reference = open_runner("golden", model=model, lanes=lanes)
    golden_s, torch_s = interleaved([lambda: reference.run(inputs, seeds, samples),
                                     _torch_forward(model, inputs, samples)], rounds)
    figures = {"golden_s": golden_s, "golden_threads": os.cpu_count(), "torch_s": torch_s,
               "torch_threads": torch.get_num_threads(), "macs": macs_per_job(model.sizes, samples),
               "cycles": job_cycles(model.sizes, config, samples),
               "word_utilisation": word_utilisation(model.sizes, config)}
    if rtl:
        if log is not None:
            log("running one job on verilator...")
        run = open_runner("verilator", model=model, lanes=lanes,
                          inputs_per_cycle=inputs_per_cycle).run(inputs[:1], seeds[:1], samples)
        figures["verilator"] = {
            "cycles": int(run.cycles[0]), "cycles_per_s": float(run.cycles[0]) / run.job_seconds,
            "equal": bool(np.array_equal(run.counts,
                                         reference.run(inputs[:1], seeds[:1], samples).counts))}
    return figures

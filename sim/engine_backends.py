"""Imagination jobs on any backend: the golden model, the Amaranth simulator, or Verilog (cocotb).

Every backend returns the same spin counts for the same arguments (contract 2). The simulation
backends run a :class:`~spinemu.hdl.engine.LayerEngine` built with the given
:class:`~spinemu.hdl.engine.EngineConfig` (:func:`default_config` gives one just large enough for a
model) and report the engine's cycles per job; the golden model reports the documented cycle count
(:func:`~spinemu.sim.engine_model.job_cycles`), which the engine meets when results are taken at
once.
"""

import json
import shutil
import time
from dataclasses import dataclass

import numpy as np

from spinemu.hdl.engine import (EngineConfig, LayerEngine, check_fits, groups, input_writes,
                                model_writes)

from . import rtl
from .engine_model import job_cycles, run_jobs
from .engine_sim import run_engine_amaranth

__all__ = ["BACKENDS", "EngineRun", "default_config", "run_engine"]

BACKENDS = ("golden", "amaranth") + rtl.SIMULATORS


@dataclass
class EngineRun:
    """What one backend gave for a batch of jobs.

    ``counts``: int64 ``(jobs, N_L)``; ``cycles``: int64 ``(jobs,)``, the engine's cycles per job
    (the documented count for ``golden``); ``seconds``: wall-clock time of the whole run, building
    the Verilog and loading the model included; ``job_seconds``: the part of it spent in the jobs,
    from start to last count (RTL backends only, where the bench measures it).
    """

    backend: str
    counts: np.ndarray
    cycles: np.ndarray
    seconds: float
    job_seconds: float | None = None

    @property
    def rate(self):
        """Simulated engine cycles per second of the jobs (``None`` without ``job_seconds``)."""
        if self.job_seconds is None:
            return None
        return float(self.cycles.sum()) / self.job_seconds if self.job_seconds > 0 else float("inf")


def default_config(model, lanes=4):
    """An :class:`EngineConfig` just large enough for ``model`` with ``lanes`` lanes: its layers,
    sizes, input and weight bits and neuron format, and exactly the weight words and per-lane
    parameter entries it needs (the counts :func:`~spinemu.hdl.engine.check_fits` checks).
    ValueError if ``lanes`` is not a power of two the design allows."""
    words = sum(groups(model.sizes[l + 1], lanes) * model.sizes[l] for l in range(model.layers))
    entries = sum(groups(n, lanes) for n in model.sizes[1:])
    return EngineConfig(lanes=lanes, max_layers=model.layers, max_inputs=model.sizes[0],
                        max_width=max(model.sizes[1:]), weight_depth=words, param_depth=entries,
                        input_bits=model.input_bits, weight_bits=model.weight_bits, fmt=model.fmt)


def _check(model, inputs, seeds, samples, valid_p, ready_p):
    jobs = len(inputs)
    if inputs.ndim != 2 or inputs.shape[1] != model.sizes[0]:
        raise ValueError(f"inputs must have shape (jobs, {model.sizes[0]}), not {inputs.shape}")
    if len(seeds) != jobs:
        raise ValueError(f"{len(seeds)} seeds for {jobs} jobs")
    if inputs.size and (inputs.min() < 0 or inputs.max() >= 1 << model.input_bits):
        raise ValueError(f"inputs must be {model.input_bits}-bit unsigned values")
    if any(not isinstance(s, (int, np.integer)) or not 0 <= s < 1 << 64 for s in seeds):
        raise ValueError("seeds must be integers 0..2^64-1")
    if not 1 <= samples < 1 << 16:
        raise ValueError(f"samples must be 1..65535, not {samples}")
    for name, p in (("valid_p", valid_p), ("ready_p", ready_p)):
        if not 0 < p <= 1:
            raise ValueError(f"{name} must be in (0, 1], not {p}")


def _rtl(simulator, config, model, inputs, seeds, samples, valid_p, ready_p, stall_seed):
    dut = LayerEngine(config)

    def pack(writes):
        return [dut.write_layout.const({"region": r, "addr": a, "data": d}).as_bits()
                for r, a, d in writes]

    start_layout = dut.start.payload.shape()
    # Either phase (computing, handing out counts under back-pressure) ends well inside this.
    max_cycles = (2 * job_cycles(model.sizes, config.lanes, samples)
                  + int(8 * model.sizes[-1] / ready_p) + 1000)
    bench = {
        "model": pack(model_writes(model, config)),
        "jobs": [{"inputs": pack(input_writes(x)), "max_cycles": max_cycles,
                  "start": start_layout.const({"seed": int(s), "samples": samples}).as_bits()}
                 for x, s in zip(inputs, seeds)],
        "last_bit": dut.result.payload.shape()["last"].offset,
        "valid_p": valid_p, "ready_p": ready_p, "stall_seed": stall_seed,
    }
    out = rtl.run_bench(dut, simulator=simulator, test_module="spinemu.sim.benches.engine_bench",
                        config=bench)
    jobs = json.loads((out / "engine.json").read_text())["jobs"]
    shutil.rmtree(out, ignore_errors=True)
    result_layout = dut.result.payload.shape()
    counts = [[result_layout.from_bits(w).count for w in job["words"]] for job in jobs]
    return (np.array(counts, dtype=np.int64).reshape(len(jobs), -1),
            np.array([job["cycles"] for job in jobs], dtype=np.int64),
            sum(job["seconds"] for job in jobs))


def run_engine(backend, config, model, inputs, seeds, samples, *, valid_p=1.0, ready_p=1.0,
               stall_seed=0, progress=None):
    """Run one job per row of ``inputs`` (``(jobs, N_0)``, see
    :func:`~spinemu.sim.engine_model.job_inputs`) with the matching job seed and ``samples``
    samples on ``backend``; returns an :class:`EngineRun`.

    ``config`` is the engine the simulation backends build (it must fit the model, else
    :class:`~spinemu.hdl.model_image.ModelError`); the golden model uses only its ``lanes``, which
    set the noise schedule. ``valid_p`` / ``ready_p`` (simulation backends) are the per-cycle
    probabilities of offering a write and of taking a count, drawn from ``stall_seed``; at 1 the
    cycles equal the documented count. ``progress`` (optional) is called with the number of jobs
    finished (Amaranth backend only: the golden model is fast and the RTL backends run in a separate
    process).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    inputs = np.asarray(inputs, dtype=np.int64)
    _check(model, inputs, seeds, samples, valid_p, ready_p)
    check_fits(model, config)
    seeds = [int(s) for s in seeds]
    jobs, lanes = len(inputs), config.lanes
    began = time.perf_counter()
    job_seconds = None
    if jobs == 0:
        counts, cycles = np.zeros((0, model.sizes[-1]), np.int64), np.zeros(0, np.int64)
    elif backend == "golden":
        counts = run_jobs(model, inputs, seeds, samples, lanes)
        cycles = np.full(jobs, job_cycles(model.sizes, lanes, samples), dtype=np.int64)
    elif backend == "amaranth":
        # One simulation per job, so that progress can be shown; results do not depend on what ran
        # before (contract 2), only the model is loaded again each time.
        counts, cycles = np.zeros((jobs, model.sizes[-1]), np.int64), np.zeros(jobs, np.int64)
        for k in range(jobs):
            c, n = run_engine_amaranth(config, model, inputs[k:k + 1], seeds[k:k + 1], samples,
                                       valid_p=valid_p, ready_p=ready_p, stall_seed=stall_seed + k)
            counts[k], cycles[k] = c[0], n[0]
            if progress is not None:
                progress(1)
    else:
        counts, cycles, job_seconds = _rtl(backend, config, model, inputs, seeds, samples,
                                           valid_p, ready_p, stall_seed)
    return EngineRun(backend, counts, cycles, time.perf_counter() - began, job_seconds)

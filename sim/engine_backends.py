"""Imagination jobs on any backend: the golden model, the Amaranth simulator, or Verilog (cocotb).

Every backend returns the same spin counts for the same arguments (contract 2). The simulation
backends run a :class:`~spinemu.hdl.engine.LayerEngine` built with the given
:class:`~spinemu.hdl.memory_map.EngineConfig` (:func:`~spinemu.hdl.memory_map.fitted_config`
gives one just large enough for a model) and report the engine's cycles per job; the golden model
reports the documented cycle count (:func:`~spinemu.hdl.memory_map.job_cycles`), which the engine
meets when results are taken at once.
"""

import time
from dataclasses import dataclass

import numpy as np

from spinemu.hdl.memory_map import check_fits

from .backends import find_backend

__all__ = ["EngineRun", "run_engine"]


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


def run_engine(backend, config, model, inputs, seeds, samples, *, valid_p=1.0, ready_p=1.0,
               stall_seed=0, progress=None):
    """Run one job per row of ``inputs`` (``(jobs, N_0)``, see
    :func:`~spinemu.hdl.memory_map.job_inputs`) with the matching job seed and ``samples``
    samples on ``backend``; returns an :class:`EngineRun`.

    ``config`` is the engine the simulation backends build (it must fit the model, else
    :class:`~spinemu.hdl.model_image.ModelError`); the golden model uses it only for the cycles
    (the counts do not depend on it). ``valid_p`` / ``ready_p`` (simulation backends) are the per-cycle
    probabilities of offering a write and of taking a count, drawn from ``stall_seed``; at 1 the
    cycles equal the documented count. ``progress`` (optional) is called with the number of jobs
    finished (Amaranth backend only: the golden model is fast and the RTL backends run in a separate
    process).
    """
    where = find_backend(backend)
    inputs = np.asarray(inputs, dtype=np.int64)
    _check(model, inputs, seeds, samples, valid_p, ready_p)
    check_fits(model, config)
    seeds = [int(s) for s in seeds]
    began = time.perf_counter()
    if len(inputs) == 0:
        counts, cycles = np.zeros((0, model.sizes[-1]), np.int64), np.zeros(0, np.int64)
        job_seconds = None
    else:
        counts, cycles, job_seconds = where.engine(config, model, inputs, seeds, samples,
                                                   valid_p, ready_p, stall_seed, progress)
    return EngineRun(backend, counts, cycles, time.perf_counter() - began, job_seconds)

"""Noise codes from any backend: the golden model, the Amaranth simulator, or Verilog under cocotb.

Every backend returns the same int16 array of shape ``(samples, blocks)`` for the same arguments;
the RTL backends stall the output stream at random (``ready_p``), which must not change the codes.
"""

import random
import time
from dataclasses import dataclass

import numpy as np

from spinemu.hdl.noise import CODE_WIDTH, MAX_BLOCKS, NoiseBank
from spinemu.hdl.polynomials import NOISE_DEGREE
from spinemu.hdl.seeding import seed_state

from . import golden, rtl
from .rtl import unpack_fields

__all__ = ["BACKENDS", "NoiseRun", "generate_noise"]

BACKENDS = ("golden", "amaranth") + rtl.SIMULATORS


@dataclass
class NoiseRun:
    """Codes from one backend, with the simulated cycles and wall time when there are any."""

    codes: np.ndarray
    backend: str
    seconds: float
    cycles: int | None = None

    @property
    def rate(self):
        """Cycles per second of simulation (samples per second for the golden model)."""
        work = self.cycles if self.cycles is not None else self.codes.size
        return work / self.seconds if self.seconds > 0 else float("inf")


def _states(seed, blocks):
    return [seed_state(seed, j) for j in range(blocks)]


def _amaranth(seed, blocks, samples, ready_p, stall_seed, progress):
    from amaranth.sim import Simulator

    dut = NoiseBank(blocks)
    words, counter = [], {"cycles": 0}

    async def bench(ctx):
        rng = random.Random(stall_seed)
        states = _states(seed, blocks)
        ctx.set(dut.states.as_value(), sum(s << (NOISE_DEGREE * j) for j, s in enumerate(states)))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        while len(words) < samples:
            ready = rng.random() < ready_p
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            counter["cycles"] += 1
            if ready and valid:
                words.append([payload[j] for j in range(blocks)])
                if progress is not None:
                    progress(1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    began = time.perf_counter()
    sim.run()
    return np.array(words, dtype=np.int16).reshape(samples, blocks), counter["cycles"], \
        time.perf_counter() - began


def _cocotb(simulator, seed, blocks, samples, ready_p, stall_seed):
    states = sum(s << (NOISE_DEGREE * j) for j, s in enumerate(_states(seed, blocks)))
    result = rtl.run_stream_bench(NoiseBank(blocks), simulator=simulator,
                                  load={"states": states}, outputs=samples,
                                  ready_p=ready_p, stall_seed=stall_seed)
    codes = unpack_fields(result.outputs, CODE_WIDTH, blocks, signed=True)
    return codes.astype(np.int16), result.cycles, result.seconds


def generate_noise(backend, *, seed, blocks, samples, ready_p=0.75, stall_seed=0, progress=None):
    """Run noise blocks ``0 .. blocks-1`` from job seed ``seed`` for ``samples`` codes each.

    ``progress`` (optional) is called with the number of new samples (Amaranth backend only; the
    others finish too fast or run in a separate process).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not 1 <= blocks <= MAX_BLOCKS:
        raise ValueError(f"neurons must be 1..{MAX_BLOCKS} (one primitive polynomial each)")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, not {samples}")
    if not 0 < ready_p <= 1:
        raise ValueError(f"ready_p must be in (0, 1], not {ready_p}")
    if backend == "golden":
        began = time.perf_counter()
        codes = golden.noise_codes(seed, blocks, samples)
        return NoiseRun(codes, backend, time.perf_counter() - began)
    if backend == "amaranth":
        codes, cycles, seconds = _amaranth(seed, blocks, samples, ready_p, stall_seed, progress)
    else:
        codes, cycles, seconds = _cocotb(backend, seed, blocks, samples, ready_p, stall_seed)
    return NoiseRun(codes, backend, seconds, cycles)

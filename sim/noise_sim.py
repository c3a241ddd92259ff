"""A :class:`~spinemu.hdl.noise.NoiseBank` in a simulator: the codes of its blocks, under random
back-pressure (which must not change them).
"""

import random
import time

import numpy as np

from spinemu.hdl.formats import CODE_WIDTH
from spinemu.hdl.noise import NoiseBank
from spinemu.hdl.polynomials import NOISE_DEGREE
from spinemu.hdl.seeding import seed_state

from . import rtl
from .streams import receive, run

__all__ = ["noise_amaranth", "noise_verilog"]

_PROGRESS_STEP = 1000      # codes taken from the Amaranth simulation between progress calls


def _states(seed, blocks):
    return [seed_state(seed, j) for j in range(blocks)]


def noise_amaranth(seed, blocks, samples, ready_p, stall_seed, progress, table=None):
    """``(codes, cycles, seconds)`` of blocks ``0 .. blocks-1`` (noise table ``table``, the
    Gaussian by default) in the Amaranth simulator; ``progress`` (optional) is called with the
    number of new samples."""
    dut = NoiseBank(blocks, table=table)
    words = []

    async def bench(ctx):
        rng = random.Random(stall_seed)
        states = _states(seed, blocks)
        ctx.set(dut.states.as_value(), sum(s << (NOISE_DEGREE * j) for j, s in enumerate(states)))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        while len(words) < samples:
            taken = await receive(ctx, dut.o, min(_PROGRESS_STEP, samples - len(words)), rng,
                                  1 - ready_p)
            words.extend([payload[j] for j in range(blocks)] for payload in taken)
            if progress is not None:
                progress(len(taken))

    began = time.perf_counter()
    cycles = run(dut, bench)
    return (np.array(words, dtype=np.int16).reshape(samples, blocks), cycles,
            time.perf_counter() - began)


def noise_verilog(simulator, seed, blocks, samples, ready_p, stall_seed, table=None):
    """``(codes, cycles, seconds)`` of blocks ``0 .. blocks-1``: their Verilog under
    ``simulator`` (``seconds``: the simulation's, without the build)."""
    states = sum(s << (NOISE_DEGREE * j) for j, s in enumerate(_states(seed, blocks)))
    result = rtl.run_stream_bench(NoiseBank(blocks, table=table), simulator=simulator,
                                  load={"states": states}, outputs=samples,
                                  ready_p=ready_p, stall_seed=stall_seed)
    codes = rtl.unpack_fields(result.outputs, CODE_WIDTH, blocks, signed=True)
    return codes.astype(np.int16), result.cycles, result.seconds

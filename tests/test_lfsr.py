"""The LFSR component against its integer model, full periods, jump-ahead, and refusals."""

import random

import numpy as np
import pytest

from spinemu.hdl.lfsr import LFSR, lfsr_step
from spinemu.hdl.polynomials import MAXIMAL_TAPS, NOISE_TAPS
from spinemu.sim.golden import lfsr_outputs
from spinemu.sim.streams import run


def _simulate(dut, cycles, enable_p=0.7, seed=0, load=None):
    """Record (bits, state) after each enabled step, with random disabled cycles in between."""
    seen = []

    async def bench(ctx):
        rng = random.Random(seed)
        if load is not None:
            ctx.set(dut.seed, load)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
        seen.append((ctx.get(dut.bits), ctx.get(dut.state)))
        while len(seen) <= cycles:
            en = rng.random() < enable_p
            ctx.set(dut.en, en)
            await ctx.tick()
            if en:
                seen.append((ctx.get(dut.bits), ctx.get(dut.state)))

    run(dut, bench)
    return seen


@pytest.mark.parametrize("width,step", [(5, 1), (8, 4), (17, 14), (64, 32)])
def test_lfsr_matches_integer_model(width, step):
    init = (0x5DEECE66D % ((1 << width) - 1)) + 1
    dut = LFSR(width, step=step, init=init)
    seen = _simulate(dut, 300)
    state = init
    for bits, hw_state in seen:
        assert hw_state == state and bits == state & ((1 << step) - 1)
        state = lfsr_step(state, width, dut.taps, step)


def test_lfsr_visits_every_nonzero_state_once():
    dut = LFSR(8, step=1)
    states = [s for _, s in _simulate(dut, 255, enable_p=1.0)]
    assert sorted(states[:255]) == list(range(1, 256)) and states[255] == states[0]


def test_lfsr_load_takes_priority_and_restarts():
    dut = LFSR(64, taps=NOISE_TAPS[3], step=32, init=1)
    seen = _simulate(dut, 20, load=0xDEADBEEF12345678)
    assert seen[0][1] == 0xDEADBEEF12345678


@pytest.mark.parametrize("index", [0, 100, 255])
def test_golden_jump_ahead_matches_stepping(index):
    taps, state = NOISE_TAPS[index], 0x0123456789ABCDEF
    cycles = 3 * 512 + 77  # several segments and a partial one
    expect = []
    for _ in range(cycles):
        expect.append(state & 0xFFFFFFFF)
        state = lfsr_step(state, 64, taps, 32)
    got = lfsr_outputs(0x0123456789ABCDEF, cycles, width=64, taps=taps, step=32)
    np.testing.assert_array_equal(got, np.array(expect, dtype=np.uint64))


def test_refuses_bad_parameters():
    with pytest.raises(ValueError, match="no maximal-length polynomial is tabulated for LFSR width 65"):
        LFSR(65)
    with pytest.raises(ValueError, match="not a primitive polynomial"):
        LFSR(4, taps=(2, 0))
    with pytest.raises(ValueError, match="can advance 1..60 bits per cycle, not 61"):
        LFSR(64, taps=MAXIMAL_TAPS[64], step=61)
    with pytest.raises(ValueError, match="zero locks it"):
        LFSR(16, init=0)

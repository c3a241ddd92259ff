"""The gateware seeder computes seed_state exactly, including the zero guard."""

import random

import pytest

from spinemu.hdl.seeder import Seeder
from spinemu.hdl.seeding import seed_state, seeding_cycles
from spinemu.sim.streams import receive, run, send

WEYL = 0x9E3779B97F4A7C15


@pytest.mark.parametrize("count,digit_bits", [(1, 1), (3, 1), (3, 2), (3, 4), (2, 8)])
def test_seeder_matches_seed_state(count, digit_bits):
    seeds = [0, 2 ** 64 - 1, 12345, (-(2 + 1) * WEYL) % 2 ** 64]  # the last hits the zero guard
    seeds += [random.Random(1).getrandbits(64) for _ in range(2)]
    dut = Seeder(count, digit_bits)
    got = []

    async def source(ctx):
        await send(ctx, dut.i, seeds, random.Random(1), idle=0)

    async def sink(ctx):
        got.extend((p.block, p.state) for p in
                   await receive(ctx, dut.o, len(seeds) * count, random.Random(2), stall=0.5))

    run(dut, source, sink, cycles=1000 * len(seeds) * count)
    assert got == [(j, seed_state(s, j)) for s in seeds for j in range(count)]
    if count == 3:
        assert (2, WEYL) in got


@pytest.mark.parametrize("digit_bits", [1, 4])
def test_seeder_takes_its_documented_cycles(digit_bits):
    dut = Seeder(5, digit_bits)

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        await send(ctx, dut.i, [7], random.Random(0), idle=0)
        await ctx.tick().until(dut.o.valid & (dut.o.payload.block == 4))

    # the cycle that takes the seed, block 0's Weyl value, then the blocks one after the other
    assert run(dut, bench, cycles=2000) == seeding_cycles(5, digit_bits)
    assert seeding_cycles(5, digit_bits) == 2 + 5 * (2 * (64 // digit_bits + 1) + 2)


def test_seeder_refuses_a_digit_it_cannot_multiply():
    with pytest.raises(ValueError, match="1, 2, 4 or 8 bits a cycle, not 3"):
        Seeder(1, 3)

"""The gateware seeder computes seed_state exactly, including the zero guard."""

import random

import pytest

from spinemu.hdl.seeder import Seeder
from spinemu.hdl.seeding import seed_state
from spinemu.sim.streams import receive, run, send

WEYL = 0x9E3779B97F4A7C15


@pytest.mark.parametrize("count", [1, 3])
def test_seeder_matches_seed_state(count):
    seeds = [0, 2 ** 64 - 1, 12345, (-(2 + 1) * WEYL) % 2 ** 64]  # the last hits the zero guard
    seeds += [random.Random(1).getrandbits(64) for _ in range(2)]
    dut = Seeder(count)
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

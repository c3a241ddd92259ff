"""The gateware seeder computes seed_state exactly, including the zero guard."""

import random

import pytest
from amaranth.sim import Simulator

from spinemu.hdl.seeder import Seeder
from spinemu.hdl.seeding import seed_state

WEYL = 0x9E3779B97F4A7C15


@pytest.mark.parametrize("count", [1, 3])
def test_seeder_matches_seed_state(count):
    seeds = [0, 2 ** 64 - 1, 12345, (-(2 + 1) * WEYL) % 2 ** 64]  # the last hits the zero guard
    seeds += [random.Random(1).getrandbits(64) for _ in range(2)]
    dut = Seeder(count)
    got = []

    async def send(ctx):
        for seed in seeds:
            ctx.set(dut.i.payload, seed)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def receive(ctx):
        rng = random.Random(2)
        while len(got) < len(seeds) * count:
            ready = rng.random() < 0.5
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                got.append((payload.block, payload.state))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run()
    assert got == [(j, seed_state(s, j)) for s in seeds for j in range(count)]
    if count == 3:
        assert (2, WEYL) in got

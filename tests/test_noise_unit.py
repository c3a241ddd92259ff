"""NoiseUnit in the Amaranth simulator: codes in the engine's schedule, whatever the generators
and width."""

import random

import numpy as np
import pytest

from noise_schedule import schedule, stream_codes
from spinemu.hdl import noise_table as nt
from spinemu.hdl.noise_unit import NoiseUnit
from spinemu.hdl.seeding import seed_state
from spinemu.sim.streams import receive, run


async def load(ctx, dut, seed, sizes, rng):
    """Hold the unit, set the network, load every stream's state for ``seed`` in a random order,
    release it."""
    ctx.set(dut.hold, 1)
    ctx.set(dut.layers, len(sizes))
    ctx.set(dut.sizes, list(sizes) + [0] * (dut.max_layers - len(sizes)))
    for v in rng.sample(range(dut.streams), dut.streams):
        ctx.set(dut.load, {"en": 1, "stream": v, "state": seed_state(seed, v)})
        await ctx.tick()
        for _ in range(rng.randrange(3)):
            ctx.set(dut.load.en, 0)
            await ctx.tick()
    ctx.set(dut.load.en, 0)
    ctx.set(dut.hold, 0)


@pytest.mark.parametrize("streams,generators,width,stall,sizes", [
    (1, 1, 1, 0.0, [3, 1]), (4, 1, 1, 0.3, [5, 4, 2]), (4, 2, 4, 0.5, [6, 1, 9]),
    (16, 4, 8, 0.2, [20, 16, 3]), (16, 16, 16, 0.4, [33, 7, 16]), (16, 1, 2, 0.0, [17, 1]),
    (16, 2, 8, 0.3, [9])])
def test_vectors_follow_the_schedule_after_every_load(streams, generators, width, stall, sizes):
    table = nt.thermal()
    dut = NoiseUnit(streams, generators, width, table, max_layers=4, size_bits=8)
    samples, seeds = 3, [11, 2 ** 64 - 1, 11]
    vectors = samples * sum(-(-n // width) for n in sizes)
    got = []

    async def bench(ctx):
        rng = random.Random(streams * 100 + width)
        for seed in seeds:
            await load(ctx, dut, seed, sizes, rng)
            # a job takes what its samples need; the unit draws ahead, and the next load restarts it
            got.append(await receive(ctx, dut.o, vectors, rng, stall))
            for _ in range(rng.randrange(4)):
                await ctx.tick()

    run(dut, bench, cycles=len(seeds) * (vectors * width * 4 + 200))
    for seed, job in zip(seeds, got, strict=True):
        job = iter(np.array(job))
        for expect in schedule(seed, streams, sizes, samples, table):
            layer = np.concatenate([next(job) for _ in range(-(-len(expect) // width))])
            np.testing.assert_array_equal(layer[:len(expect)], expect)   # the rest: no neuron's


@pytest.mark.parametrize("streams,generators,sizes", [(8, 4, [200]), (16, 16, [200, 9]),
                                                      (1, 1, [3, 1])])
def test_one_vector_a_cycle_with_a_generator_per_code(streams, generators, sizes):
    # (8, 4): 50 vectors a layer end on the second of the two states, so no round waits for a
    # write; a generator of one stream holds it in a register and never waits
    dut = NoiseUnit(streams, generators, generators, max_layers=2, size_bits=8)
    cycles = []

    async def bench(ctx):
        await load(ctx, dut, 5, sizes, random.Random(0))
        ctx.set(dut.o.ready, 1)
        for t in range(40):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            if valid:
                cycles.append(t)

    run(dut, bench, cycles=200)
    assert cycles == list(range(cycles[0], 40))


def test_refuses_shapes_it_cannot_serve():
    for shape in [(3, 1, 1), (4, 2, 1), (4, 8, 8), (2, 1, 4)]:
        with pytest.raises(ValueError, match="powers of two generators <= width <= streams"):
            NoiseUnit(*shape)


def test_streams_of_one_polynomial_are_uncorrelated():
    # 4 streams of 2^18 codes: every cross-correlation at lags -64..64 and autocorrelation at
    # lags 1..64 below 5 standard errors (1/sqrt(n) each, for uncorrelated streams)
    n, lags = 1 << 18, 64
    codes = stream_codes(2026, 4, n, nt.gaussian()).astype(np.float64)
    z = (codes - codes.mean(axis=1, keepdims=True)) / codes.std(axis=1, keepdims=True)
    worst = 0.0
    for a in range(4):
        for b in range(a, 4):
            for lag in range(0 if a != b else 1, lags + 1):
                for x, y in ((z[a], z[b]), (z[b], z[a])):
                    worst = max(worst, abs(np.mean(x[lag:] * y[:n - lag])))
    assert worst < 5 / np.sqrt(n - lags), worst

"""NoiseUnit in the Amaranth simulator: codes in neuron order, whatever the generators and width."""

import random

import numpy as np
import pytest

from spinemu.hdl import noise_table as nt
from spinemu.hdl.noise_unit import STREAM_TAPS, NoiseUnit
from spinemu.hdl.seeding import seed_state
from spinemu.sim import golden
from spinemu.sim.streams import receive, run


def neuron_order(seed, streams, count, table):
    """The reference: code ``n`` is the ``n // V``-th code of stream ``n mod V``."""
    per_stream = -(-count // streams)
    states = [seed_state(seed, v) for v in range(streams)]
    words = golden.lfsr_outputs(states, per_stream, width=64, taps=STREAM_TAPS, step=32)
    codes = golden.words_to_codes(words, table)             # (streams, per_stream)
    return codes.T.reshape(-1)[:count]


async def load(ctx, dut, seed, streams, rng):
    """Hold the unit, load every stream's state for ``seed`` in a random order, release it."""
    ctx.set(dut.hold, 1)
    for v in rng.sample(range(streams), streams):
        ctx.set(dut.load, {"en": 1, "stream": v, "state": seed_state(seed, v)})
        await ctx.tick()
        for _ in range(rng.randrange(3)):
            ctx.set(dut.load.en, 0)
            await ctx.tick()
    ctx.set(dut.load.en, 0)
    ctx.set(dut.hold, 0)


@pytest.mark.parametrize("streams,generators,width,stall", [
    (1, 1, 1, 0.0), (4, 1, 1, 0.3), (4, 2, 4, 0.5), (16, 4, 8, 0.2), (16, 16, 16, 0.4),
    (16, 1, 2, 0.0)])
def test_vectors_follow_neuron_order_after_every_load(streams, generators, width, stall):
    table = nt.thermal()
    dut = NoiseUnit(streams, generators, width, table)
    vectors, seeds = 3 * streams + 5, [11, 2 ** 64 - 1, 11]
    got = []

    async def bench(ctx):
        rng = random.Random(streams * 100 + width)
        for seed in seeds:
            await load(ctx, dut, seed, streams, rng)
            # a job takes only part of what the unit has drawn ahead; the next load restarts it
            got.append(await receive(ctx, dut.o, vectors, rng, stall))
            for _ in range(rng.randrange(4)):
                await ctx.tick()

    run(dut, bench, cycles=len(seeds) * (vectors * width * 4 + 200))
    for seed, job in zip(seeds, got, strict=True):
        np.testing.assert_array_equal(np.array(job).reshape(-1),
                                      neuron_order(seed, streams, vectors * width, table))


def test_one_vector_a_cycle_with_a_generator_per_code():
    dut = NoiseUnit(8, 4, 4)
    cycles = []

    async def bench(ctx):
        await load(ctx, dut, 5, 8, random.Random(0))
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
    codes = neuron_order(2026, 4, 4 * n, nt.gaussian()).reshape(n, 4).T.astype(np.float64)
    z = (codes - codes.mean(axis=1, keepdims=True)) / codes.std(axis=1, keepdims=True)
    worst = 0.0
    for a in range(4):
        for b in range(a, 4):
            for lag in range(0 if a != b else 1, lags + 1):
                for x, y in ((z[a], z[b]), (z[b], z[a])):
                    worst = max(worst, abs(np.mean(x[lag:] * y[:n - lag])))
    assert worst < 5 / np.sqrt(n - lags), worst

"""GaussianNoise and NoiseBank in the Amaranth simulator against the golden model; the alias table."""

import random

import numpy as np
import pytest
from scipy.stats import norm

from spinemu.hdl import noise as hw
from spinemu.hdl.seeding import seed_state
from spinemu.sim import golden
from spinemu.sim.streams import receive, run


def _directed_words():
    """Uniform words that reach every table entry through both alias branches, with both signs."""
    _, q, _ = hw.alias_table()
    rng = random.Random(1)
    words = []
    for i, qi in enumerate(q):
        thresholds = [qi - 1, qi] if qi else [0, (1 << hw.THRESHOLD_BITS) - 1]
        for v in thresholds:
            for sign in (0, 1):
                offset = rng.randrange(1 << hw.OFFSET_BITS)
                words.append(i | v << 7 | offset << 25 | sign << 28 | rng.randrange(8) << 29)
    return words


def test_every_table_entry_branch_and_sign():
    # The first code after a load comes from the low 32 bits of the loaded state.
    words = _directed_words()
    dut = hw.GaussianNoise(9)
    got, rng = [], random.Random(2)

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for word in words:
            ctx.set(dut.seed, rng.getrandbits(32) << 32 | word)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            got.append((await ctx.tick().sample(dut.o.payload).until(dut.o.valid))[0])

    run(dut, bench, cycles=10 * len(words))
    expect = golden.words_to_codes(np.array(words, dtype=np.uint64))
    np.testing.assert_array_equal(np.array(got), expect)
    # The directed words really cover all bins that can be drawn, and the largest codes.
    magnitudes = np.abs(expect)
    assert magnitudes.max() >= hw.MAX_CODE - 2 * 7
    used = sum(1 for w in hw.alias_table()[0] if w)
    assert len(set(((magnitudes - 1) // 2) >> hw.OFFSET_BITS)) == used


@pytest.mark.parametrize("index,seed,ready_p", [(0, 1, 0.5), (200, 2 ** 64 - 1, 0.9)])
def test_stream_under_backpressure_matches_golden(index, seed, ready_p):
    dut = hw.GaussianNoise(index)
    count, got = 2000, []

    async def bench(ctx):
        rng = random.Random(seed)
        ctx.set(dut.seed, seed_state(seed, index))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        got.extend(await receive(ctx, dut.o, count, rng, 1 - ready_p))

    run(dut, bench, cycles=100 * count)
    np.testing.assert_array_equal(got, golden.noise_codes(seed, 1, count, first=index)[:, 0])


def test_reset_state_is_job_seed_zero_and_load_restarts():
    dut = hw.GaussianNoise(4)
    before, after = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(50):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                before.append(payload)
        ctx.set(dut.seed, seed_state(77, 4))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        for _ in range(50):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                after.append(payload)

    run(dut, bench, cycles=200)
    np.testing.assert_array_equal(before, golden.noise_codes(0, 1, len(before), first=4)[:, 0])
    np.testing.assert_array_equal(after, golden.noise_codes(77, 1, len(after), first=4)[:, 0])


def test_bank_matches_golden_per_block():
    dut = hw.NoiseBank(3, first=10)
    got = []

    async def bench(ctx):
        ctx.set(dut.states.as_value(), sum(seed_state(5, 10 + j) << (64 * j) for j in range(3)))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        got.extend([p[j] for j in range(3)] for p in
                   await receive(ctx, dut.o, 500, random.Random(0), stall=0.3))

    run(dut, bench, cycles=100 * 500)
    np.testing.assert_array_equal(got, golden.noise_codes(5, 3, 500, first=10))


@pytest.mark.parametrize("jobs, samples", [(1, 5), (3, 1000), (300, 77)])
def test_job_noise_codes_equal_the_generic_lfsr_model(jobs, samples):
    # job_noise_codes steps the noise LFSR as 32-bit words and converts words in blocks: check it
    # against the generic LFSR model and the word-to-code map, over many seeds and block indices.
    from spinemu.hdl.polynomials import MAX_BLOCKS, NOISE_DEGREE, NOISE_TAPS
    rng = np.random.default_rng(jobs)
    seeds = [0, 2 ** 64 - 1] + [int(s) for s in rng.integers(0, 2 ** 63, jobs)]
    first = int(rng.integers(0, MAX_BLOCKS - 8))
    got = golden.job_noise_codes(seeds, 8, samples, first=first)
    for j in range(8):
        states = [seed_state(s, first + j) for s in seeds]
        words = golden.lfsr_outputs(states, samples, width=NOISE_DEGREE,
                                    taps=NOISE_TAPS[first + j], step=hw.WORD_BITS)
        np.testing.assert_array_equal(got[:, :, j], golden.words_to_codes(words))


def test_alias_table_draws_exactly_the_weights():
    weights, q, alias = hw.alias_table()
    cap, total = 1 << hw.THRESHOLD_BITS, 1 << (hw.BIN_BITS + hw.THRESHOLD_BITS)
    assert sum(weights) == total
    drawn = [0] * len(weights)
    for i, (qi, ai) in enumerate(zip(q, alias, strict=True)):
        drawn[i] += qi
        drawn[ai] += cap - qi
    assert drawn == list(weights)


def test_exact_distribution_is_close_to_normal():
    codes, p = (np.asarray(x) for x in hw.code_pmf())
    z = codes / hw.CODE_SIGMA
    assert np.all(codes % 2 == 1) and np.array_equal(codes, -codes[::-1]) and np.allclose(p, p[::-1])
    assert abs(p.sum() - 1) < 1e-12 and abs(p @ z) < 1e-12
    assert abs(p @ z ** 2 - 1) < 1e-6
    assert np.max(np.abs(np.cumsum(p) - norm.cdf((codes + 1) / hw.CODE_SIGMA))) < 1e-4
    for t, tolerance in [(3, 0.01), (4, 0.01), (4.5, 0.02), (5, 0.10)]:
        assert abs(p[np.abs(z) > t].sum() / (2 * norm.sf(t)) - 1) < tolerance, t
    assert hw.MAX_CODE / hw.CODE_SIGMA > 5.4


def test_refuses_bad_block_indices():
    with pytest.raises(ValueError, match=r"noise block index must be 0..255"):
        hw.GaussianNoise(256)
    with pytest.raises(ValueError, match=r"noise block index must be 0..255"):
        hw.NoiseBank(4, first=254)
    with pytest.raises(ValueError, match="at least one block"):
        hw.NoiseBank(0)

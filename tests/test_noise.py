"""AliasNoise and NoiseBank in the Amaranth simulator against the golden model; the noise tables."""

import hashlib
import math
import random
import zlib

import numpy as np
import pytest
from scipy import stats
from scipy.stats import norm

from spinemu.hdl import noise as hw
from spinemu.hdl import noise_table as nt
from spinemu.hdl.seeding import seed_state
from spinemu.sim import golden
from spinemu.sim.streams import receive, run

TABLES = {"gaussian": nt.gaussian(), "logistic": nt.logistic(), "thermal": nt.thermal()}


def _directed_words(table):
    """Uniform words that reach every table entry (bin and sign) through both alias branches."""
    rng = random.Random(1)
    words = []
    for j, qj in enumerate(table.q):
        thresholds = [qj - 1, qj] if qj else [0, (1 << nt.THRESHOLD_BITS) - 1]
        for v in thresholds:
            offset = rng.randrange(1 << nt.OFFSET_BITS)
            words.append((j & 127) | v << 7 | offset << 25 | (j >> 7) << 28 | rng.randrange(8) << 29)
    return words


async def _first_codes(ctx, dut, words, rng):
    """The first code after loading each word as the low half of the state."""
    got = []
    for word in words:
        ctx.set(dut.seed, rng.getrandbits(32) << 32 | word)
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        got.append((await ctx.tick().sample(dut.o.payload).until(dut.o.valid))[0])
    return got


@pytest.mark.parametrize("name", TABLES)
def test_every_table_entry_branch_and_sign(name):
    # The first code after a load comes from the low 32 bits of the loaded state.
    table = TABLES[name]
    words = _directed_words(table)
    dut = hw.AliasNoise(9, table)
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        got.extend(await _first_codes(ctx, dut, words, random.Random(2)))

    run(dut, bench, cycles=10 * len(words))
    expect = golden.words_to_codes(np.array(words, dtype=np.uint64), table)
    np.testing.assert_array_equal(np.array(got), expect)
    # The directed words really reach every signed bin that can be drawn, and the extreme codes.
    signed_bins = set(((np.abs(expect) - 1) // 2 >> nt.OFFSET_BITS) | (expect < 0) << 7)
    assert signed_bins == {b for b, w in enumerate(table.weights) if w}
    assert expect.max() >= table.max_code - 14 and expect.min() <= table.min_code + 14


def test_table_writes_replace_the_table():
    # A block built with the Gaussian, rewritten entry by entry with the thermal table, then
    # loaded, draws the thermal table's codes.
    table = nt.thermal()
    dut = hw.AliasNoise(3)
    words = _directed_words(table)
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for j, entry in enumerate(table.entries):
            ctx.set(dut.table_write, {"en": 1, "addr": j, "data": entry})
            await ctx.tick()
        ctx.set(dut.table_write.en, 0)
        got.extend(await _first_codes(ctx, dut, words, random.Random(3)))

    run(dut, bench, cycles=10 * len(words) + 300)
    np.testing.assert_array_equal(got, golden.words_to_codes(np.array(words, np.uint64), table))


@pytest.mark.parametrize("index,seed,ready_p,name", [(0, 1, 0.5, "gaussian"),
                                                     (200, 2 ** 64 - 1, 0.9, "thermal")])
def test_stream_under_backpressure_matches_golden(index, seed, ready_p, name):
    table = TABLES[name]
    dut = hw.AliasNoise(index, table)
    count, got = 2000, []

    async def bench(ctx):
        rng = random.Random(seed)
        ctx.set(dut.seed, seed_state(seed, index))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        got.extend(await receive(ctx, dut.o, count, rng, 1 - ready_p))

    run(dut, bench, cycles=100 * count)
    np.testing.assert_array_equal(
        got, golden.noise_codes(seed, 1, count, first=index, table=table)[:, 0])


def test_reset_state_is_job_seed_zero_and_load_restarts():
    dut = hw.AliasNoise(4)
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
    dut = hw.NoiseBank(3, first=10, table=nt.logistic())
    got = []

    async def bench(ctx):
        ctx.set(dut.states.as_value(), sum(seed_state(5, 10 + j) << (64 * j) for j in range(3)))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        got.extend([p[j] for j in range(3)] for p in
                   await receive(ctx, dut.o, 500, random.Random(0), stall=0.3))

    run(dut, bench, cycles=100 * 500)
    np.testing.assert_array_equal(got, golden.noise_codes(5, 3, 500, first=10, table=nt.logistic()))


@pytest.mark.parametrize("jobs, samples", [(1, 5), (3, 1000), (300, 77)])
def test_job_noise_codes_equal_the_generic_lfsr_model(jobs, samples):
    # job_noise_codes steps the noise LFSR as 32-bit words and converts words in blocks: check it
    # against the generic LFSR model and the word-to-code map, over many seeds and block indices.
    from spinemu.hdl.polynomials import MAX_BLOCKS, NOISE_DEGREE, NOISE_TAPS
    rng = np.random.default_rng(jobs)
    seeds = [0, 2 ** 64 - 1] + [int(s) for s in rng.integers(0, 2 ** 63, jobs)]
    first = int(rng.integers(0, MAX_BLOCKS - 8))
    table = nt.thermal() if jobs % 2 else nt.gaussian()
    got = golden.job_noise_codes(seeds, 8, samples, first=first, table=table)
    for j in range(8):
        states = [seed_state(s, first + j) for s in seeds]
        words = golden.lfsr_outputs(states, samples, width=NOISE_DEGREE,
                                    taps=NOISE_TAPS[first + j], step=hw.WORD_BITS)
        np.testing.assert_array_equal(got[:, :, j], golden.words_to_codes(words, table))


def test_gaussian_codes_are_those_of_the_original_block():
    # Digests of the codes and the code distribution of the Gaussian block before noise tables
    # (commit 446d2a3): a noise table changes no Gaussian result.
    codes = golden.job_noise_codes([1, 2 ** 64 - 1, 12345], 5, 20000, first=3)
    assert hashlib.sha256(codes.astype("<i2").tobytes()).hexdigest() == (
        "61378cd7fb58daafcb0528f478020df33971a0c604391c284f317329b404fec7")
    codes, p = nt.gaussian().pmf
    assert hashlib.sha256(np.asarray(p[p > 0]).tobytes()).hexdigest() == (
        "c92252b7b0c4a043bb761dfda3fa7348fa863eeb60b17446e9e688dc404f6a1d")
    assert nt.gaussian().max_code == 1407 and nt.gaussian().symmetric


@pytest.mark.parametrize("name", TABLES)
def test_alias_table_draws_exactly_the_weights(name):
    # Bin b is drawn with probability weights[b] / 2^26: the weights the table was built from.
    table = TABLES[name]
    cap = 1 << nt.THRESHOLD_BITS
    drawn = [0] * nt.ENTRIES
    for j, (qj, aj) in enumerate(zip(table.q, table.alias, strict=True)):
        drawn[j] += qj
        drawn[aj] += cap - qj
    assert drawn == list(table.weights) and sum(drawn) == 1 << nt.MASS_BITS
    assert nt.from_weights(name, table.weights) == table
    assert nt.NoiseTable.from_bytes(table.to_bytes(), name) == table
    # the design's bit-serial CRC, least significant bit of each byte first, is zlib's
    bits = [(byte >> k) & 1 for byte in table.to_bytes() for k in range(8)]
    assert table.hash == zlib.crc32(table.to_bytes()) == nt.HASH_PARAMETERS.compute(bits)


_CDFS = {"gaussian": norm.cdf, "logistic": stats.logistic(scale=math.sqrt(3) / math.pi).cdf,
         "thermal": stats.gumbel_r(loc=-np.euler_gamma * math.sqrt(6) / math.pi,
                                   scale=math.sqrt(6) / math.pi).cdf}


@pytest.mark.parametrize("name", TABLES)
def test_exact_distribution_follows_its_shape(name):
    # Mean 0 and variance 1, up to the h^2/6 = 6.5e-4 that spreading each bin's mass evenly adds
    # (the Gaussian cancels it); the CDF at the bins' edges within 2^-26 per bin of the shape's
    # (the Gaussian's within 1e-4: its normal is narrowed), and linear within a bin.
    table, cdf = TABLES[name], _CDFS[name]
    codes, p = table.pmf
    assert np.all(codes % 2 == 1) and abs(p.sum() - 1) < 1e-12
    mean, var, skew, _ = table.moments()
    assert abs(mean) < 1e-4 and abs(var - 1) < 7e-4
    assert abs(skew - stats.gumbel_r.stats(moments="s")) < 0.01 if name == "thermal" else skew == 0
    edges, at_edges = table.cell_cdf()
    error = np.abs(at_edges - cdf(edges))
    inner = error[1 << nt.OFFSET_BITS:-1:1 << nt.OFFSET_BITS]  # the ends also hold the tails
    assert inner.max() < (1.1e-4 if name == "gaussian" else 1e-6)
    # within a bin of width h, linear interpolation is off by at most h^2/8 max|f'| <= 3e-4
    assert error.max() < 3e-4 and max(error[0], error[-1]) <= nt.TAIL_LIMIT


def test_gaussian_tails():
    codes, p = nt.gaussian().pmf
    z = codes / nt.CODE_SIGMA
    assert np.array_equal(codes, -codes[::-1]) and np.allclose(p, p[::-1])
    assert abs(p @ z) < 1e-12 and abs(p @ z ** 2 - 1) < 1e-6
    for t, tolerance in [(3, 0.01), (4, 0.01), (4.5, 0.02), (5, 0.10)]:
        assert abs(p[np.abs(z) > t].sum() / (2 * norm.sf(t)) - 1) < tolerance, t
    assert nt.gaussian().max_code / nt.CODE_SIGMA > 5.4


def test_refuses_tables_that_do_not_fit_the_format():
    with pytest.raises(nt.TableError, match="beyond"):
        nt.from_cdf("wide", norm(scale=3).cdf)          # 0.8% of its mass beyond |z| = 8
    with pytest.raises(nt.TableError, match="non-decreasing"):
        nt.from_cdf("falling", lambda z: 1 - norm.cdf(z))
    with pytest.raises(nt.TableError, match="summing"):
        nt.from_weights("short", [1 << 18] * 255)
    with pytest.raises(nt.TableError, match="threshold"):
        nt.NoiseTable("big", (1 << 18,) * 256, tuple(range(256)))
    with pytest.raises(nt.TableError, match="1024"):
        nt.NoiseTable.from_bytes(bytes(1000), source="t.bin")
    with pytest.raises(nt.TableError, match="26 bits"):
        nt.NoiseTable.from_bytes(b"\xff" * 1024, source="t.bin")
    with pytest.raises(TypeError, match="NoiseTable"):
        hw.AliasNoise(0, "thermal")


def test_refuses_bad_block_indices():
    with pytest.raises(ValueError, match=r"noise block index must be 0..255"):
        hw.AliasNoise(256)
    with pytest.raises(ValueError, match=r"noise block index must be 0..255"):
        hw.NoiseBank(4, first=254)
    with pytest.raises(ValueError, match="at least one block"):
        hw.NoiseBank(0)

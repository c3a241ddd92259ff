"""SpinNeuron and NoisyNeuron against the golden model; formats; the switching curve."""

import random

import numpy as np
import pytest
from scipy.stats import norm

from spinemu.hdl.formats import CODE_WIDTH, NeuronFormat
from spinemu.hdl.neuron import NoisyNeuron, SpinNeuron
from spinemu.hdl.seeding import seed_state
from spinemu.sim import golden
from spinemu.sim.streams import receive, run, send

MAX_CODE = (1 << (CODE_WIDTH - 1)) - 1     # the largest code any noise table can draw

FMT = NeuronFormat()


def _random_inputs(rng, count, fmt=FMT):
    """Random (a, theta, sigma) codes, a quarter of them at the extremes of their formats."""
    def pick(f, lo=None):
        lo = f.min_code if lo is None else lo
        return rng.choice([lo, f.max_code]) if rng.random() < 0.25 else rng.randint(lo, f.max_code)
    return [(pick(fmt.a), pick(fmt.theta), pick(fmt.sigma, 1)) for _ in range(count)]


def test_spin_neuron_joins_streams_bit_exactly():
    rng = random.Random(3)
    inputs = _random_inputs(rng, 400)
    codes = [rng.choice([MAX_CODE, -MAX_CODE]) if rng.random() < 0.2 else
             rng.randrange(-MAX_CODE, MAX_CODE + 1, 2) for _ in inputs]
    dut = SpinNeuron(FMT)
    got = []

    async def send_inputs(ctx):
        await send(ctx, dut.i, [{"a": a, "theta": t, "sigma": s} for a, t, s in inputs],
                   random.Random(4), idle=0.4)

    async def send_noise(ctx):
        await send(ctx, dut.noise, codes, random.Random(5), idle=0.3)

    async def take(ctx):
        got.extend((p.spin, p.value) for p in
                   await receive(ctx, dut.o, len(inputs), random.Random(6), stall=0.4))

    run(dut, send_inputs, send_noise, take, cycles=20_000)
    a, theta, sigma = np.array(inputs).T
    spin, value = golden.neuron(a, theta, sigma, codes, FMT)
    np.testing.assert_array_equal(np.array(got), np.stack([spin, value], axis=1))
    assert 0 < spin.sum() < len(spin)


@pytest.mark.parametrize("fmt", [FMT, NeuronFormat(a_width=20, theta_frac=4, sigma_width=12,
                                                   sigma_frac=2)])
def test_noisy_neuron_matches_golden(fmt):
    rng = random.Random(8)
    inputs = _random_inputs(rng, 600, fmt)
    dut = NoisyNeuron(17, fmt)
    got = []

    async def feed(ctx):
        ctx.set(dut.seed, seed_state(99, 17))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        await send(ctx, dut.i, [{"a": a, "theta": t, "sigma": s} for a, t, s in inputs],
                   random.Random(9), idle=0.3)

    async def take(ctx):
        got.extend((p.spin, p.value) for p in
                   await receive(ctx, dut.o, len(inputs), random.Random(10), stall=0.3))

    run(dut, feed, take, cycles=20_000)
    a, theta, sigma = np.array(inputs).T
    codes = golden.noise_codes(99, 1, len(inputs), first=17)[:, 0]
    spin, value = golden.neuron(a, theta, sigma, codes, fmt)
    np.testing.assert_array_equal(np.array(got), np.stack([spin, value], axis=1))


@pytest.mark.parametrize("theta,sigma", [(0.0, 100.0), (37.25, 12.5), (-5.5, 2.75)])
def test_measured_switching_curve_matches_phi(theta, sigma):
    # 10^6 codes per input level: sampling sd <= 5e-4, a tenth of the 0.005 tolerance.
    samples = 1_000_000
    codes = golden.noise_codes(2024, 1, samples)[:, 0]
    t, s = FMT.theta_code(theta), FMT.sigma_code(sigma)
    a = np.unique(np.round(np.linspace(theta - 4 * sigma, theta + 4 * sigma, 41)).astype(int))
    measured = np.array([golden.neuron(x, t, s, codes, FMT)[0].mean() for x in a])
    expected = norm.cdf((a - theta) / sigma)
    assert np.max(np.abs(measured - expected)) <= 0.005
    # ... and the exact curve of the emulated neuron is within the noise block's accuracy.
    exact = golden.switch_probability(a, t, s, FMT)
    assert np.max(np.abs(exact - expected)) <= 0.002
    assert np.max(np.abs(measured - exact)) <= 5 * np.sqrt(0.25 / samples)


def test_formats_refuse_out_of_range_values():
    with pytest.raises(ValueError, match=r"sigma = 0.0 is outside the UQ8.8 format"):
        FMT.sigma_code(0.0)
    with pytest.raises(ValueError, match=r"sigma = 256.0 is outside the UQ8.8 format"):
        FMT.sigma_code(256.0)
    with pytest.raises(ValueError, match=r"theta = 40000 is outside the Q16.8 format"):
        FMT.theta_code(40000)
    assert FMT.sigma_code(1 / 256) == 1 and FMT.theta_code(-1.5) == -384
    with pytest.raises(ValueError, match="theta_frac must be"):
        NeuronFormat(theta_frac=17)


@pytest.mark.parametrize("big", [False, True], ids=["float-division", "integer-division"])
def test_fast_spins_with_shared_inputs_equal_the_exact_rule_at_ties(big):
    # One a per row shared by 8 codes: golden.spins compares codes with floor(D / sigma); ties
    # sigma * code == D must give 0.
    rng = np.random.default_rng(5)
    fmt = NeuronFormat(a_width=20 if big else 16)
    n = 100_000
    sigma = rng.integers(1, fmt.sigma.max_code if big else 4000, (n, 1))
    codes = rng.integers(-MAX_CODE, MAX_CODE + 1, (n, 8))
    a = rng.integers(-2 ** (fmt.a_width - 2), 2 ** (fmt.a_width - 2), (n, 1))
    # theta chosen so that the deficit is sigma * code + {-1, 0, +1} for the first code of a row
    frac, shift = fmt.value.frac, fmt.value.frac - fmt.theta_frac
    deficit = sigma * codes[:, :1] + rng.integers(-1, 2, (n, 1)) * (1 << shift)
    theta = (deficit + (a << frac)) >> shift
    expect, _ = golden.neuron(a, theta, sigma, codes, fmt)
    np.testing.assert_array_equal(golden.spins(a, theta, sigma, codes, fmt), expect)
    assert 0 < expect[:, 0].sum() < n


@pytest.mark.parametrize("a_width", [20, 40], ids=["int32", "int64"])
def test_fast_spins_per_code_equal_the_exact_rule_at_ties(a_width):
    # An a per code: golden.spins compares a - h with floor((l - sigma * code) / 2^F).
    rng = np.random.default_rng(6)
    fmt = NeuronFormat(a_width=a_width)
    n = 200_000
    sigma = rng.integers(0, fmt.sigma.max_code + 1, n)
    codes = rng.integers(-MAX_CODE, MAX_CODE + 1, n)
    a = rng.integers(-2 ** (a_width - 2), 2 ** (a_width - 2), n)
    frac, shift = fmt.value.frac, fmt.value.frac - fmt.theta_frac
    deficit = sigma * codes + rng.integers(-1, 2, n) * (1 << shift)
    theta = (deficit + (a << frac)) >> shift
    expect, _ = golden.neuron(a, theta, sigma, codes, fmt)
    np.testing.assert_array_equal(golden.spins(a, theta, sigma, codes, fmt), expect)
    assert 0 < expect.sum() < n

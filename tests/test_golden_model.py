"""The golden model's fast paths against plain reference implementations of the same definitions:
the word recurrence and the code table against the generic LFSR model and ``words_to_codes``, and
the job-level model against a job-by-job, sample-by-sample loop over ``golden.neuron`` with the
documented noise schedule (``docs/engine.md``): neuron ``j`` takes stream ``j mod V``'s next code."""

import numpy as np
import pytest

from noise_schedule import schedule
from spinemu.hdl import noise as hw
from spinemu.hdl import noise_table as nt
from spinemu.hdl.formats import NeuronFormat
from spinemu.hdl.memory_map import NOISE_STREAMS
from spinemu.hdl.model_image import random_model
from spinemu.hdl.polynomials import MAX_BLOCKS, NOISE_DEGREE, NOISE_TAPS
from spinemu.hdl.seeding import seed_state
from spinemu.sim import golden
from spinemu.sim.engine_model import run_jobs, run_network

TABLES = {"gaussian": nt.gaussian(), "thermal": nt.thermal(), "logistic": nt.logistic()}


def _reference_codes(seeds, index, cycles, table):
    states = [seed_state(s, index) for s in seeds]
    words = golden.lfsr_outputs(states, cycles, width=NOISE_DEGREE, taps=NOISE_TAPS[index],
                                step=hw.WORD_BITS)
    return golden.words_to_codes(words, table)                    # (seeds, cycles)


@pytest.mark.parametrize("period,periods", [(1, 1), (5, 3), (64, 1), (33, 2), (7, 300),
                                            (128, 40)])
@pytest.mark.parametrize("name", TABLES)
def test_period_codes_are_the_lfsr_words_mapped(period, periods, name):
    # Lengths below, at and above the 64 words from the tables, and long enough for the word
    # recurrence at its longest lags (the blocks of 32 M words).
    rng = np.random.default_rng(period * periods)
    seeds = [0, 2 ** 64 - 1] + [int(s) for s in rng.integers(0, 2 ** 63, 5)]
    index = int(rng.integers(0, MAX_BLOCKS))
    got = golden.period_codes(seeds, index, period, periods, table=TABLES[name])
    expect = _reference_codes(seeds, index, period * periods, TABLES[name])
    np.testing.assert_array_equal(got, expect.reshape(-1, periods, period).transpose(2, 1, 0))


@pytest.mark.parametrize("name", TABLES)
def test_code_table_decides_every_word_as_words_to_codes(name):
    # Random words, and words whose threshold's top bits equal an entry's (the table leaves
    # those undecided) with the low bits just below, at and above the entry's threshold.
    table = TABLES[name]
    rng = np.random.default_rng(7)
    words = [rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32)]
    for j in range(nt.ENTRIES):
        q = table.q[j]
        for v in {max(q - 1, 0), q, min(q + 1, (1 << nt.THRESHOLD_BITS) - 1), q | 0x7FF,
                  q & ~0x7FF}:
            for rest in (0, 5, 7):
                words.append(np.array([(j & 127) | v << 7 | rest << 25 | (j >> 7) << 28
                                       | rest << 29], dtype=np.uint32))
    words = np.concatenate(words)
    got = golden._permuted_codes(golden._permute(words), table, np.empty(len(words), np.int16))
    np.testing.assert_array_equal(got, golden.words_to_codes(words, table))
    assert np.array_equal(golden._permute(golden._permute(words), inverse=True), words)


def _reference_counts(sizes, weights, bias, theta, sigma, fmt, inputs, seeds, samples, table):
    """Spin counts by the definition: one job, one sample, one layer at a time, exact integers,
    neuron ``j`` taking the next code of stream ``j mod V``."""
    counts = np.zeros((len(inputs), sizes[-1]), dtype=np.int64)
    for k, (x0, seed) in enumerate(zip(inputs, seeds, strict=True)):
        codes = iter(schedule(seed, NOISE_STREAMS, sizes[1:], samples, table))
        for _ in range(samples):
            x = [int(v) for v in x0]
            for l, n in enumerate(sizes[1:]):
                a = [sum(int(w) * v for w, v in zip(weights[l][j], x, strict=True)) + int(bias[l][j])
                     for j in range(n)]
                spin, _ = golden.neuron(np.array(a, dtype=object).astype(np.int64), theta[l],
                                        sigma[l], next(codes), fmt)
                x = [int(v) for v in spin]
            counts[k] += x
    return counts


@pytest.mark.parametrize("shape,samples,jobs", [
    ((5, 3), 3, 1),
    ((7, 9, 4), 5, 3),
    ((16, 16, 16, 8), 2, 7),          # one code per stream and layer
    ((9, 13, 17, 5), 4, 5),           # a stream past the end of some layers
    ((3, 40), 6, 4),                  # one layer, more neurons than streams
    ((6, 33, 1), 9, 2),
    ((20, 48, 17, 31), 3, 2),         # several codes per stream and layer
])
@pytest.mark.parametrize("name", ["gaussian", "thermal"])
def test_run_jobs_is_the_definition(shape, samples, jobs, name):
    model = random_model(shape, seed=sum(shape))
    rng = np.random.default_rng(samples * jobs)
    inputs = rng.integers(0, 1 << model.input_bits, size=(jobs, shape[0]))
    seeds = [int(s) for s in rng.integers(0, 2 ** 63, jobs)]
    table = TABLES[name]
    got = run_network(model.sizes, model.weights, model.bias, model.theta, model.sigma, model.fmt,
                      inputs, seeds, samples, table)
    expect = _reference_counts(model.sizes, model.weights, model.bias, model.theta, model.sigma,
                               model.fmt, inputs, seeds, samples, table)
    np.testing.assert_array_equal(got, expect)


def _edge_network(rng, sizes, weight_bound, fmt):
    """Parameters at the edges: zero and full-scale sigma, thresholds far out and at zero, large
    weights (a float64 or integer product) and biases."""
    weights, bias, theta, sigma = [], [], [], []
    for n_in, n in zip(sizes[:-1], sizes[1:], strict=True):
        weights.append(rng.integers(-weight_bound, weight_bound + 1, size=(n, n_in)))
        bias.append(rng.integers(-weight_bound, weight_bound + 1, size=n))
        scale = weight_bound * n_in
        theta.append(rng.choice([0, 1, -1, scale, -scale], size=n) << fmt.theta_frac)
        sigma.append(rng.choice([0, 1, fmt.sigma.max_code, 1 << fmt.sigma_frac,
                                 scale << fmt.sigma_frac], size=n).clip(0, fmt.sigma.max_code))
    return weights, bias, theta, sigma


@pytest.mark.parametrize("weight_bound,input_bound", [(3, 1), (127, 31), (2 ** 20, 2 ** 10),
                                                      (2 ** 40, 2 ** 20)])
def test_run_network_at_the_edges(weight_bound, input_bound):
    # float32, float64 and integer products; int32 and int64 spin comparisons; sigma = 0.
    fmt = NeuronFormat(a_width=max(16, (weight_bound * input_bound * 40).bit_length() + 2),
                       theta_frac=4, sigma_width=16, sigma_frac=6)
    rng = np.random.default_rng(weight_bound)
    sizes = (6, 10, 7, 3)
    network = _edge_network(rng, sizes, weight_bound, fmt)
    inputs = rng.integers(0, input_bound + 1, size=(4, sizes[0]))
    seeds = [1, 2, 3, 2 ** 64 - 1]
    got = run_network(sizes, *network, fmt, inputs, seeds, 5, nt.gaussian())
    expect = _reference_counts(sizes, *network, fmt, inputs, seeds, 5, nt.gaussian())
    np.testing.assert_array_equal(got, expect)


def test_ties_between_the_noisy_value_and_the_threshold():
    # sigma = 1.0 and theta = m + d/256 (d in -1, 0, 1; theta.frac = 8 = F - sigma.frac): the value
    # equals the threshold whenever a = m and the code is d = +-1 (1 in 150 codes). A tie is no spin.
    fmt = NeuronFormat()
    rng = np.random.default_rng(5)
    sizes = (5, 8, 19, 4)
    weights = [rng.integers(0, 4, size=(8, 5)), rng.integers(0, 2, size=(19, 8)),
               rng.integers(0, 2, size=(4, 19))]
    bias = [rng.integers(-3, 4, size=n) for n in sizes[1:]]
    theta = [(rng.integers(0, 5, size=n) << 8) + rng.choice([-1, 0, 1], size=n) for n in sizes[1:]]
    sigma = [np.full(n, 1 << fmt.sigma_frac) for n in sizes[1:]]
    inputs = rng.integers(0, 3, size=(6, 5))
    seeds = list(range(6))
    got = run_network(sizes, weights, bias, theta, sigma, fmt, inputs, seeds, 300, nt.gaussian())
    expect = _reference_counts(sizes, weights, bias, theta, sigma, fmt, inputs, seeds, 300,
                               nt.gaussian())
    np.testing.assert_array_equal(got, expect)


def test_batches_of_unequal_size_in_threads():
    # More jobs than a batch, a count that splits into unequal batches, and the arrays each
    # thread keeps between batches: every job comes out as alone.
    model = random_model((12, 20, 6), seed=4)
    rng = np.random.default_rng(3)
    inputs = rng.integers(0, 1 << model.input_bits, size=(1027, 12))
    seeds = [int(s) for s in rng.integers(0, 2 ** 63, 1027)]
    together = run_jobs(model, inputs, seeds, 3)
    for k in (0, 513, 1026):
        np.testing.assert_array_equal(together[k], run_jobs(model, inputs[k:k + 1],
                                                            seeds[k:k + 1], 3)[0])
    assert run_jobs(model, inputs[:0], [], 3).shape == (0, 6)

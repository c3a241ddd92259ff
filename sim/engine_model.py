"""The job-level golden model of the layer engine: (model image, jobs) -> spin counts, bit-exact.

Vectorised over a batch of jobs and over samples. The noise schedule is the engine's: lane ``p``
takes one code per group it evaluates, in the order sample, layer, group (``docs/engine.md``), from
its noise block seeded with ``seed_state(seed, p)``, every block with the model's noise table.
Lanes beyond a layer's last neuron still take their code.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from spinemu.hdl.memory_map import groups

from . import golden

__all__ = ["run_jobs", "run_network"]


def _exact_weights(w, x_bound):
    """``w.T`` in a type in which ``x @ w.T`` is exact for integer ``|x| <= x_bound``: float32 while
    every partial sum stays below 2^24 (integers are exact there, and BLAS is fast), float64 below
    2^53, Python integers beyond."""
    w = np.asarray(w)
    bound = x_bound * int(np.abs(w).sum(axis=1).max(initial=0))
    dtype = np.float32 if bound < 2 ** 24 else np.float64 if bound < 2 ** 53 else object
    return w.T.astype(dtype)


def _dot(x, wt):
    """Integer ``x @ w.T`` with ``wt`` from :func:`_exact_weights`: int64, or Python integers."""
    product = x.astype(wt.dtype) @ wt
    return product if wt.dtype == object else product.astype(np.int64)


def run_jobs(model, inputs, seeds, samples, lanes):
    """Spin counts of the last layer for each job: int64 array of shape ``(jobs, N_L)``.

    ``inputs`` has shape ``(jobs, N_0)`` (see :func:`~spinemu.hdl.memory_map.job_inputs`);
    ``seeds`` one seed per job.
    """
    inputs = np.asarray(inputs, dtype=np.int64)
    if inputs.size and (inputs.min() < 0 or inputs.max() >= 1 << model.input_bits):
        raise ValueError(f"inputs must be {model.input_bits}-bit unsigned values")
    return run_network(model.sizes, model.weights, model.bias, model.theta, model.sigma,
                       model.fmt, inputs, seeds, samples, lanes, model.noise)


def run_network(sizes, weights, bias, theta, sigma, fmt, inputs, seeds, samples, lanes, table):
    """:func:`run_jobs` on the parameters themselves (as a design holds them, unvalidated), with
    noise table ``table``."""
    inputs = np.asarray(inputs, dtype=np.int64)
    jobs = len(inputs)
    if inputs.shape != (jobs, sizes[0]) or len(seeds) != jobs:
        raise ValueError(f"inputs must have shape (jobs, {sizes[0]}) with one seed per job")
    if not 1 <= samples < 1 << 16:
        raise ValueError(f"samples must be 1..65535, not {samples}")
    x_bounds = [int(np.abs(inputs).max(initial=0))] + [1] * (len(sizes) - 2)   # later: spins
    weights = [_exact_weights(w, x) for w, x in zip(weights, x_bounds, strict=True)]
    network = (sizes, weights, bias, theta, sigma, fmt, table)
    # Batches of jobs: wide numpy operations whose temporaries stay in the cache; in threads, as
    # numpy releases the GIL in its loops, each with one BLAS thread (more only contend).
    # Equal batches of at most _BATCH jobs, as many as a multiple of the threads.
    workers = os.cpu_count() or 1
    batches = workers * max(1, -(-jobs // (workers * _BATCH)))
    size = max(1, -(-jobs // batches))
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(workers) as pool:
        counts = pool.map(lambda at: _run_batch(network, inputs[at:at + size],
                                                seeds[at:at + size], samples, lanes),
                          range(0, jobs, size))
        return np.concatenate([np.zeros((0, sizes[-1]), dtype=np.int64), *counts])


_BATCH = 256


def _run_batch(network, inputs, seeds, samples, lanes):
    sizes, weights, bias, theta, sigma, fmt, table = network
    jobs = len(inputs)
    layers = len(sizes) - 1
    per_sample = [groups(n, lanes) for n in sizes[1:]]
    offsets = np.cumsum([0] + per_sample) * lanes
    codes = golden.job_noise_codes(seeds, lanes, samples * sum(per_sample), table=table)
    # A sample's codes are its groups' in order, each group's lanes in order: neuron j of layer l
    # takes code offsets[l] + j of the sample.
    codes = codes.reshape(jobs, samples, offsets[-1])
    a = _dot(inputs, weights[0]) + bias[0]                              # layer 1, once
    x = None
    for l in range(layers):
        if l:
            a = _dot(x.reshape(-1, sizes[l]), weights[l]).reshape(jobs, samples, -1) + bias[l]
        noise = codes[:, :, offsets[l]:offsets[l] + sizes[l + 1]]          # (jobs, S, N_l)
        x = golden.spins(a if l else a[:, None, :], theta[l], sigma[l], noise, fmt)
    return x.sum(axis=1, dtype=np.int64)


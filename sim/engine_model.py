"""The job-level golden model of the layer engine: (model image, jobs) -> spin counts, bit-exact.

Vectorised over a batch of jobs and over samples. The noise schedule is the engine's
(``docs/engine.md``): for sample after sample and layer after layer, neuron ``j`` takes the next
code of noise stream ``j mod V`` (:data:`~spinemu.hdl.memory_map.NOISE_STREAMS`), stream ``v``
seeded with ``seed_state(seed, v)``, every stream with the model's noise table. So the counts
depend on the network, the inputs and the seeds alone, not on an engine's lanes.

For speed the model holds a layer's neurons in stream order and its values by feature
(:class:`_Network`), so that each layer's codes, for all jobs at once, are one slab.
"""

import math
import os
import queue
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from spinemu.hdl.memory_map import NOISE_STREAMS
from spinemu.hdl.seeding import seed_array

from . import golden

__all__ = ["run_jobs", "run_network", "stream_order"]


def _exact_dtype(w, x_bound):
    """A type in which ``x @ w.T`` is exact for integer ``|x| <= x_bound``: float32 while every
    partial sum stays below 2^24 (integers are exact there, and BLAS is fast), float64 below 2^53,
    Python integers beyond."""
    bound = x_bound * int(np.abs(w).sum(axis=1).max(initial=0))
    return np.float32 if bound < 2 ** 24 else np.float64 if bound < 2 ** 53 else object


def run_jobs(model, inputs, seeds, samples):
    """Spin counts of the last layer for each job: int64 array of shape ``(jobs, N_L)``.

    ``inputs`` has shape ``(jobs, N_0)`` (see :func:`~spinemu.hdl.memory_map.job_inputs`);
    ``seeds`` one seed per job.
    """
    inputs = np.asarray(inputs, dtype=np.int64)
    if inputs.size and (inputs.min() < 0 or inputs.max() >= 1 << model.input_bits):
        raise ValueError(f"inputs must be {model.input_bits}-bit unsigned values")
    return run_network(model.sizes, model.weights, model.bias, model.theta, model.sigma,
                       model.fmt, inputs, seeds, samples, model.noise)


def run_network(sizes, weights, bias, theta, sigma, fmt, inputs, seeds, samples, table):
    """:func:`run_jobs` on the parameters themselves (as a design holds them, unvalidated), with
    noise table ``table``."""
    inputs = np.asarray(inputs, dtype=np.int64)
    jobs = len(inputs)
    if inputs.shape != (jobs, sizes[0]) or len(seeds) != jobs:
        raise ValueError(f"inputs must have shape (jobs, {sizes[0]}) with one seed per job")
    if not 1 <= samples < 1 << 16:
        raise ValueError(f"samples must be 1..65535, not {samples}")
    x_bound = int(np.abs(inputs).max(initial=0))
    network = _Network(sizes, weights, bias, theta, sigma, fmt, table, x_bound)
    # Batches of jobs, in threads, as numpy releases the GIL in its loops, each with one BLAS thread
    # (more only contend): equal batches of at most _BATCH jobs, as many as a multiple of the
    # threads. Within a batch, _COLUMNS samples x jobs at a time go through the layers, so that
    # their values stay in the cache.
    workers = os.cpu_count() or 1
    batches = workers * max(1, -(-jobs // (workers * _BATCH)))
    size = max(1, -(-jobs // batches))
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(workers) as pool:
        counts = pool.map(lambda at: network.run(inputs[at:at + size], seeds[at:at + size],
                                                 samples),
                          range(0, jobs, size))
        return np.concatenate([np.zeros((0, sizes[-1]), dtype=np.int64), *counts])


_BATCH = 256
_COLUMNS = 1024
_REPEATS = 8        # layer 1's limits repeated over up to this many samples: long inner loops
_KEPT_BYTES = 64 << 20      # the most a batch's space holds to be kept for later calls


def stream_order(n):
    """Layer neurons ``0 .. n-1`` in stream order: stream 0's (``0, V, 2V, ..``), then stream 1's,
    and so on, a stream's in the order it gives them codes."""
    return np.concatenate([np.arange(v, n, NOISE_STREAMS) for v in range(NOISE_STREAMS)])


class _Network:
    """The network rearranged for the model (all for speed: the counts are the design's).

    * Neurons in stream order (:func:`stream_order`): layer ``l``'s row ``r`` is neuron
      ``rows_l[r]``, and the next layer's weight columns follow. Then stream ``v``'s codes for
      layer ``l`` are the rows of its neurons, in order.
    * Values by feature: a layer's spins are ``(N_l, samples, jobs)`` (a matrix product per layer
      for all of them), and so are its codes, one slab of ``codes (sum N_l, samples, jobs)``.
    """

    def __init__(self, sizes, weights, bias, theta, sigma, fmt, table, x_bound):
        self.sizes, self.fmt, self.table = sizes, fmt, table
        self.offsets = np.cumsum([0, *sizes[1:]])
        # taken[l, v]: the codes stream v gives layer l a sample, which go to rows row[l, v] ..
        # of the codes and are codes first[l, v] .. of the stream's sample
        taken = np.array([[len(range(v, n, NOISE_STREAMS)) for v in range(NOISE_STREAMS)]
                          for n in sizes[1:]], dtype=np.int64).reshape(-1, NOISE_STREAMS)
        self.taken, self.period = taken, taken.sum(axis=0)
        self.row = self.offsets[:-1, None] + np.cumsum(taken, axis=1) - taken
        self.first = np.cumsum(taken, axis=0) - taken
        self.layers = []
        order = np.arange(sizes[0])                       # the inputs keep their order
        for l, n in enumerate(sizes[1:]):
            rows = stream_order(n)
            w = np.asarray(weights[l], dtype=np.int64)[rows][:, order]
            b, t, s = (np.broadcast_to(np.asarray(v, dtype=np.int64), (n,))[rows]
                       for v in (bias[l], theta[l], sigma[l]))
            dtype = _exact_dtype(w, x_bound if l == 0 else 1)    # later layers take spins
            self.layers.append(_Layer(w.astype(dtype), b, t, s, rows, fmt))
            order = rows

    def codes(self, seeds, samples, space):
        """Every layer's codes for a batch, by stream: ``(sum N_l, samples, jobs)``."""
        jobs, seeds = len(seeds), seed_array(seeds)      # checked once, not once per stream
        codes = space.get("codes", (self.offsets[-1], samples, jobs), np.int16)
        words = space.get("words", (int(self.period.max()) * samples, jobs), np.uint32)
        for v in np.flatnonzero(self.period):
            stream = golden.stream_words(seeds, int(v), int(self.period[v]), samples,
                                         words=words[:self.period[v] * samples])
            for l in np.flatnonzero(self.taken[:, v]):
                t, c, r = self.first[l, v], self.taken[l, v], self.row[l, v]
                golden.stream_codes(stream[t:t + c], self.table, codes[r:r + c])
        return codes

    def run(self, inputs, seeds, samples):
        """The counts ``(jobs, N_L)`` of a batch."""
        jobs, offsets, space = len(inputs), self.offsets, _Space.take()
        codes = self.codes(seeds, samples, space)
        first, last = self.layers[0], self.layers[-1]
        limit = first.code_limit(inputs)
        counts = np.zeros((len(last.rows), jobs), dtype=np.int64)
        step = 1 << (max(1, _COLUMNS // jobs).bit_length() - 1)        # samples at a time
        for s in range(0, samples, step):
            x = limit
            for l, layer in enumerate(self.layers):
                after = self.layers[l + 1].w.dtype if l + 1 < len(self.layers) else np.uint8
                x = layer.spins(x, codes[offsets[l]:offsets[l + 1], s:s + step], after, space, l)
            counts += x.sum(axis=1, dtype=np.int64)
        out = np.empty((jobs, self.sizes[-1]), dtype=np.int64)
        out[:, last.rows] = counts.T
        space.give_back()
        return out


class _Space:
    """A batch's arrays, kept for its next samples and, up to :data:`_KEPT_BYTES`, for later calls'
    batches: fresh memory costs page faults (10-20% of the model's time on 540 jobs)."""

    _free = queue.SimpleQueue()     # spaces a finished batch gave back, for the next ones

    def __init__(self):
        self.arrays = {}

    @classmethod
    def take(cls):
        """A space given back earlier, or a new one."""
        try:
            return cls._free.get_nowait()
        except queue.Empty:
            return cls()

    def give_back(self):
        """Keep this space for another batch, unless it holds more than :data:`_KEPT_BYTES`."""
        if sum(a.nbytes for a in self.arrays.values()) <= _KEPT_BYTES:
            _Space._free.put(self)

    def get(self, name, shape, dtype):
        size = math.prod(shape)
        a = self.arrays.get(name)
        if a is None or a.dtype != dtype or a.size < size:
            a = self.arrays[name] = np.empty(size, dtype=dtype)
        return a[:size].reshape(shape)


class _Layer:
    """One layer of a :class:`_Network`: weights ``w`` (rows in stream order, in an exact type)
    and the rows' parameters."""

    def __init__(self, w, bias, theta, sigma, rows, fmt):
        self.w, self.bias, self.sigma, self.rows = w, bias, sigma, rows
        self.frac = frac = fmt.value.frac
        self.threshold = threshold = theta << (frac - fmt.theta_frac)
        # With a = w x (no bias) the spin is a 2^F + bias 2^F + sigma code > threshold, that is
        # a > floor((level - sigma code) / 2^F) with level = threshold - bias 2^F (a is an integer):
        # no division, in int32 when the values fit (a from float32 is below 2^24), else int64
        # (which the design's formats always fit).
        self.level = threshold - (bias << frac)
        fits = (w.dtype == np.float32 and np.abs(self.level).max(initial=0)
                + np.abs(sigma).max(initial=0) * golden._CODE_BOUND < 2 ** 31)
        self.int = np.int32 if fits else np.int64
        self.sigma_column, self.level_column = (v.astype(self.int).reshape(-1, 1, 1)
                                                for v in (sigma, self.level))

    def code_limit(self, inputs):
        """Layer 1's pre-activations are shared by all samples: a spin is ``code > limit``, with
        ``limit`` of shape ``(N_1, jobs)``."""
        a = np.asarray(_dot(inputs, self.w.T) + self.bias, dtype=np.int64)
        return golden._code_limit(self.threshold - (a << self.frac), self.sigma).T

    def spins(self, x, noise, dtype, space, l):
        """The spins ``(N_l, samples, jobs)`` in ``dtype`` for layer 1's :meth:`code_limit` or the
        spins ``x`` of the layer before; ``noise`` is ``(N_l, samples, jobs)``."""
        n, samples, jobs = noise.shape
        into = dtype if dtype in (np.float32, np.float64) else np.uint8
        out = space.get(f"spins{l}", noise.shape, into)
        if l == 0:
            reps = math.gcd(samples, _REPEATS)       # the limits repeated: long inner loops
            limit = np.tile(x.reshape(n, 1, jobs), reps)
            np.greater(noise.reshape(n, -1, reps * jobs), limit, out=out.reshape(n, -1, reps * jobs))
        else:
            a = space.get(f"a{l}", (n, samples * jobs), self.w.dtype)
            np.matmul(self.w, x.reshape(len(x), -1), out=a)
            a = a.reshape(noise.shape)
            right = space.get("right", noise.shape, self.int)
            np.multiply(noise, self.sigma_column, out=right)
            np.subtract(self.level_column, right, out=right)
            right >>= self.frac
            # a float a (an integer below 2^24 or 2^53) against the integer bound, compared in
            # float64: exact, as rounding a bound beyond a's range keeps it beyond
            np.greater(a.astype(np.int64) if a.dtype == object else a, right, out=out)
        return out if into == dtype else out.astype(dtype)


def _dot(x, wt):
    """Integer ``x @ w.T`` with ``wt`` in an exact type (:func:`_exact_dtype`): int64, or Python
    integers."""
    product = x.astype(wt.dtype) @ wt
    return product if wt.dtype == object else product.astype(np.int64)

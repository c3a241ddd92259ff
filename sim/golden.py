"""The bit-exact golden model of the noise blocks and the spin neuron, vectorised with numpy.

An LFSR is sequential, so to vectorise it in time the model cuts a run of ``cycles`` into segments,
computes each segment's starting state with a jump-ahead (the LFSR transition is linear over GF(2), so
``T^L`` is a 64x64 bit matrix), and steps all segments at once with word operations.
"""

import functools

import numpy as np

from spinemu.hdl import noise as hw
from spinemu.hdl.lfsr import check_lfsr, lfsr_step
from spinemu.hdl.polynomials import NOISE_DEGREE, NOISE_TAPS
from spinemu.hdl.seeding import seed_state

__all__ = ["lfsr_outputs", "noise_codes", "job_noise_codes", "words_to_codes", "neuron", "spins",
           "switch_probability"]

_WIDE = 8192    # elements per numpy operation worth aiming for: fewer, longer operations


class _Linear:
    """A linear map on GF(2)^n as the images of the basis vectors (Python ints)."""

    def __init__(self, columns):
        self.columns = tuple(columns)

    @classmethod
    def lfsr(cls, width, taps, step):
        return cls(lfsr_step(1 << i, width, taps, step) for i in range(width))

    def __call__(self, x):
        out = 0
        for i, col in enumerate(self.columns):
            if x >> i & 1:
                out ^= col
        return out

    def __matmul__(self, other):
        return _Linear(self(c) for c in other.columns)

    def power(self, e):
        result, base = _Linear(1 << i for i in range(len(self.columns))), self
        while e:
            if e & 1:
                result = base @ result
            base = base @ base
            e >>= 1
        return result

    def apply(self, states):
        """Apply to a uint64 array of states."""
        out = np.zeros_like(states)
        for i, col in enumerate(self.columns):
            out ^= ((states >> np.uint64(i)) & np.uint64(1)) * np.uint64(col)
        return out


@functools.lru_cache(maxsize=None)
def _jump(width, taps, step, cycles):
    return _Linear.lfsr(width, taps, step).power(cycles)


def lfsr_outputs(state, cycles, *, width, taps, step):
    """The ``bits`` output of :class:`~spinemu.hdl.lfsr.LFSR` for ``cycles`` cycles from ``state``.

    ``state`` is one state (returns a uint64 array of length ``cycles``) or a sequence of states
    (returns shape ``(len(state), cycles)``); ``width`` <= 64.
    """
    taps = check_lfsr(width, tuple(taps), step)
    cycles = int(cycles)
    states = np.atleast_1d(np.asarray(state, dtype=object))
    if width > 64 or any(not 0 < int(s) < (1 << width) for s in states):
        raise ValueError(f"states must be 1..2^{width}-1 and width <= 64")
    # Cut each run into segments of `length` cycles so that all runs' segments together fill wide
    # numpy operations; a power of two keeps the jump tables few and cached.
    wanted = max(1, -(-_WIDE // len(states)))
    length = 1 << max(5, (max(1, cycles // wanted)).bit_length() - 1)
    segments = max(1, -(-cycles // length))
    # Starting states of all segments by doubling: s[g + 2^k] = T^(L 2^k) s[g].
    starts = states.astype(np.uint64)[:, None]
    hop = _jump(width, taps, step, length)
    while starts.shape[1] < segments:
        starts = np.concatenate([starts, hop.apply(starts)], axis=1)
        hop = hop @ hop
    s = starts[:, :segments]
    out = np.empty((length,) + s.shape, dtype=np.uint64)
    mask = np.uint64((1 << step) - 1)
    shifts = [np.uint64(e) for e in taps]
    k, top = np.uint64(step), np.uint64(width - step)
    for t in range(length):
        out[t] = s & mask
        new = s >> shifts[0]
        for e in shifts[1:]:
            new ^= s >> e
        s = (s >> k) | ((new & mask) << top)
    out = out.transpose(1, 2, 0).reshape(len(states), -1)[:, :cycles]
    return out[0] if np.ndim(state) == 0 else out


@functools.cache
def _table_arrays():
    _, q, alias = hw.alias_table()
    return np.array(q, dtype=np.uint32), np.array(alias, dtype=np.int32)


def words_to_codes(words):
    """Map 32-bit uniform words to noise codes exactly as :class:`~spinemu.hdl.noise.GaussianNoise`."""
    q, alias = _table_arrays()
    words = np.asarray(words).astype(np.uint32)  # the fields use the low 32 bits only
    i = (words & np.uint32((1 << hw.BIN_BITS) - 1)).astype(np.int32)
    v = (words >> np.uint32(hw.BIN_BITS)) & np.uint32((1 << hw.THRESHOLD_BITS) - 1)
    rest = (words >> np.uint32(hw.BIN_BITS + hw.THRESHOLD_BITS)).astype(np.int32)
    offset = rest & ((1 << hw.OFFSET_BITS) - 1)
    sign = (rest >> hw.OFFSET_BITS) & 1
    chosen = np.where(v < q[i], i, alias[i])
    magnitude = 2 * ((chosen << hw.OFFSET_BITS) + offset) + 1
    return (magnitude * (1 - 2 * sign)).astype(np.int16)


def noise_codes(seed, blocks, samples, *, first=0):
    """Codes of noise blocks ``first .. first+blocks-1`` after loading job seed ``seed``.

    Returns an int16 array of shape ``(samples, blocks)``: column ``j`` is what
    ``GaussianNoise(first + j)`` emits after ``load`` with ``seed_state(seed, first + j)``.
    """
    return job_noise_codes([seed], blocks, samples, first=first)[0]


def job_noise_codes(seeds, blocks, samples, *, first=0):
    """:func:`noise_codes` for many job seeds at once: shape ``(len(seeds), samples, blocks)``."""
    out = np.empty((len(seeds), samples, blocks), dtype=np.int16)
    for j in range(blocks):
        index = first + j
        if not 0 <= index < hw.MAX_BLOCKS:
            raise ValueError(f"noise block index must be 0..{hw.MAX_BLOCKS - 1}, not {index}")
        states = [seed_state(int(seed), index) for seed in seeds]
        words = lfsr_outputs(states, samples, width=NOISE_DEGREE, taps=NOISE_TAPS[index],
                             step=hw.WORD_BITS)
        out[:, :, j] = words_to_codes(words)
    return out


def neuron(a, theta, sigma, codes, fmt):
    """The spin neuron: ``(spin, value)`` arrays for pre-activations ``a`` and noise ``codes``.

    ``theta`` and ``sigma`` are codes in ``fmt.theta`` and ``fmt.sigma``; all arguments broadcast.
    ``value = a * 2^F + sigma * code`` is the noisy analog value with ``F = fmt.value.frac``
    fractional bits, and ``spin = value > theta * 2^(F - theta.frac)``: exact integer arithmetic,
    as in :class:`~spinemu.hdl.neuron.SpinNeuron`.
    """
    a, theta, sigma, codes = (np.asarray(x, dtype=np.int64) for x in (a, theta, sigma, codes))
    value = (a << fmt.value.frac) + sigma * codes
    spin = value > (theta << (fmt.value.frac - fmt.theta.frac))
    return spin.astype(np.uint8), value


def spins(a, theta, sigma, codes, fmt):
    """Only the spins of :func:`neuron`, faster: with ``sigma > 0``, ``sigma * code > D`` exactly
    when ``code > floor(D / sigma)``, so each (neuron, pre-activation) needs one division and every
    noise code one int16 comparison. ``a`` must broadcast against ``codes`` without the last
    (sample) axis being added: ``a``, ``theta``, ``sigma`` have the shape of ``codes`` or fewer axes.
    """
    a, theta, sigma = (np.asarray(x, dtype=np.int64) for x in (a, theta, sigma))
    frac = fmt.value.frac
    deficit = (theta << (frac - fmt.theta_frac)) - (a << frac)     # spin iff sigma*code > deficit
    positive = sigma > 0
    # Float division is exact enough here: |deficit| < 2^53 and the quotient's distance to the next
    # integer (>= 1/sigma) is far above float64's relative precision for |deficit * sigma| < 2^53.
    if np.abs(deficit).max(initial=0) * max(int(sigma.max(initial=1)), 1) < 2 ** 52:
        limit = np.floor(deficit / np.where(positive, sigma, 1))
    else:
        limit = np.floor_divide(deficit, np.where(positive, sigma, 1))
    # With sigma == 0 the spin is deficit < 0 for every code: a limit below or above all codes.
    limit = np.where(positive, limit, np.where(deficit < 0, -(1 << 15), 1 << 15))
    limit = np.clip(limit, -(1 << 15), (1 << 15) - 1).astype(np.int16)
    return (np.asarray(codes) > limit).astype(np.uint8)


def switch_probability(a, theta, sigma, fmt):
    """The exact P(spin = 1 | a) of the emulated neuron, from the exact code distribution."""
    codes, p = (np.asarray(x) for x in hw.code_pmf())
    a = np.asarray(a, dtype=np.int64)
    spins, _ = neuron(a[..., None], theta, sigma, codes, fmt)
    return spins @ p

"""The bit-exact golden model of the noise blocks and the spin neuron, vectorised with numpy.

An LFSR is sequential, so to vectorise it in time the model cuts a run of ``cycles`` into segments,
computes each segment's starting state with a jump-ahead (the LFSR transition is linear over GF(2), so
``T^L`` is a 64x64 bit matrix, applied with a table look-up per byte), and steps all segments at once
with word operations. A noise block's 64-bit LFSR, which emits 32 bits a cycle, needs no shifts at
all: its first 64 words come from the state's bytes by table, and each later word is the XOR of
four earlier ones (:func:`_words`). The words are stepped with their fields rearranged so that one
shift and one table look-up give a word's code (``docs/noise.md`` has the word's fields).
"""

import functools

import numpy as np

from spinemu.hdl import noise as hw
from spinemu.hdl import noise_table as nt
from spinemu.hdl.formats import CODE_WIDTH
from spinemu.hdl.lfsr import check_lfsr, lfsr_step
from spinemu.hdl.noise_unit import STREAM_TAPS
from spinemu.hdl.polynomials import MAX_BLOCKS, NOISE_DEGREE, NOISE_TAPS
from spinemu.hdl.seeding import seed_array, seed_states

__all__ = ["lfsr_outputs", "noise_codes", "job_noise_codes", "period_codes", "stream_words",
           "stream_codes", "words_to_codes",
           "neuron", "spins", "switch_probability"]

_WIDE = 1 << 15  # elements per numpy operation worth aiming for: fewer, longer operations (and
                 # less time holding the GIL per element, when threads share the work)


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

    @functools.cached_property
    def _byte_tables(self):
        """The images of every value of each byte of the input: a (bytes, 256) uint64 table."""
        columns = np.zeros(-(-len(self.columns) // 8) * 8, dtype=np.uint64)
        columns[:len(self.columns)] = self.columns
        tables = np.zeros((len(columns) // 8, 256), dtype=np.uint64)
        for bit in range(8):    # values with top bit `bit`: those below it, plus its column
            tables[:, 1 << bit:2 << bit] = tables[:, :1 << bit] ^ columns[bit::8, None]
        return tables

    def apply(self, states):
        """Apply to a uint64 array of states: one table look-up per byte."""
        out = np.zeros_like(states)
        for b, table in enumerate(self._byte_tables):
            out ^= table.take((states >> np.uint64(8 * b)) & np.uint64(0xFF))
        return out


@functools.cache
def _jump(width, taps, step, cycles):
    """T^cycles of the LFSR's transition T; powers of two by squaring the cached half."""
    if cycles > 1 and cycles & (cycles - 1) == 0:
        half = _jump(width, taps, step, cycles // 2)
        return half @ half
    return _Linear.lfsr(width, taps, step).power(cycles)


def _segments(count, cycles, shortest=32):
    """How ``count`` runs of ``cycles`` cycles are cut into segments, stepped at once: ``(length,
    segments)`` per run, so that all segments together fill wide numpy operations; the length is a
    power of two of at least ``shortest``, which keeps the jump tables few and cached."""
    wanted = max(1, -(-_WIDE // count))
    length = max(shortest, 1 << max(0, (max(1, cycles // wanted)).bit_length() - 1))
    return length, max(1, -(-cycles // length))


def _starts(states, length, segments, *, width, taps, step):
    """The segments' starting states, shape ``(len(states) * segments,)``, each run's in order."""
    # By doubling: s[g + 2^k] = T^(L 2^k) s[g].
    starts = np.asarray(states, dtype=np.uint64)[:, None]
    while starts.shape[1] < segments:
        hop = _jump(width, taps, step, length * starts.shape[1])
        starts = np.concatenate([starts, hop.apply(starts)], axis=1)
    return starts[:, :segments].reshape(-1)


def _runs(steps, count):
    """``steps`` of shape ``(length, count * segments)`` (a value per cycle of each segment) as a
    view ``(count, segments, length)``: each run's segments one after the other."""
    return steps.reshape(len(steps), count, -1).transpose(1, 2, 0)


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
    length, segments = _segments(len(states), cycles)
    s = _starts(list(states), length, segments, width=width, taps=taps, step=step)
    out = np.empty((length, len(s)), dtype=np.uint64)
    mask = np.uint64((1 << step) - 1)
    shifts = [np.uint64(e) for e in taps]
    k, top = np.uint64(step), np.uint64(width - step)
    for t in range(length):
        out[t] = s & mask
        new = s >> shifts[0]
        for e in shifts[1:]:
            new ^= s >> e
        s = (s >> k) | ((new & mask) << top)
    out = _runs(out, len(states)).reshape(len(states), -1)[:, :cycles]
    return out[0] if np.ndim(state) == 0 else out


# A noise block's word, low bits first: bin i (7 bits), threshold v (18), offset (3), sign (1), 3
# unused bits. The model steps words with the fields rearranged (a fixed permutation of the bits
# commutes with XOR): the unused bits, v's low _LOW bits, then i, v's top _TOP bits, the offset and
# the sign, so that a shift gives a table index, and the table decides the alias draw of every word
# but those whose top bits of v equal those of the entry's threshold (1 in 2^_TOP).
_TOP = 7
_LOW = nt.THRESHOLD_BITS - _TOP
_OFFSET_AT = nt.BIN_BITS + nt.THRESHOLD_BITS     # a word: bin, threshold, offset, sign
_SIGN_AT = _OFFSET_AT + nt.OFFSET_BITS
_SIGNED_BIN_BITS = nt.BIN_BITS + 1
_UNUSED = hw.WORD_BITS - _SIGN_AT - 1
_FIELDS = (  # (position in the word, width, position in the rearranged word)
    (_SIGN_AT + 1, _UNUSED, 0),
    (nt.BIN_BITS, _LOW, _UNUSED),
    (0, nt.BIN_BITS, _UNUSED + _LOW),
    (nt.BIN_BITS + _LOW, _TOP + nt.OFFSET_BITS + 1, _UNUSED + _LOW + nt.BIN_BITS),
)
_INDEX_AT = _UNUSED + _LOW      # the rearranged word's index: i, v's top bits, offset, sign
assert _INDEX_AT + nt.BIN_BITS + _TOP + nt.OFFSET_BITS + 1 == hw.WORD_BITS
_HEAD = NOISE_DEGREE            # the words from a state by table; the rest by the recurrence
_MAX_LAG_LOG = 5                # the recurrence's longest lag: 64 * 2^5 words


def _permute(words, inverse=False):
    """Words (uint32 or uint64) with their fields rearranged as the model steps them, or back."""
    words = np.asarray(words)
    kind = words.dtype.type
    out = np.zeros_like(words)
    for at, width, to in _FIELDS:
        if inverse:
            at, to = to, at
        out |= ((words >> kind(at)) & kind((1 << width) - 1)) << kind(to)
    return out


@functools.lru_cache(maxsize=64)
def _head_tables(taps):
    """The first 64 rearranged words from a state are the XOR over its bytes ``b`` of ``tables[b,
    byte]``: shape ``(8, 256, 64)``, uint32."""
    basis = [1 << bit for bit in range(NOISE_DEGREE)]
    words = lfsr_outputs(basis, _HEAD, width=NOISE_DEGREE, taps=taps, step=hw.WORD_BITS)
    columns = _permute(words.astype(np.uint32))                       # (bit, word)
    tables = np.zeros((NOISE_DEGREE // 8, 256, _HEAD), dtype=np.uint32)
    for bit in range(8):    # values with top bit `bit`: those below it, plus its column
        tables[:, 1 << bit:2 << bit] = tables[:, :1 << bit] ^ columns[bit::8, None]
    return tables


def _words(starts, length, taps, out=None):
    """The rearranged words of a noise block's LFSR for ``length`` cycles from each of ``starts``
    (states), by cycle: shape ``(length, len(starts))``, uint32, into ``out`` if given.

    The LFSR emits the bits of a sequence ``b[n + 64] = XOR_e b[n + e]`` over its taps ``e``, 32 a
    cycle, so the bits also follow the multiple ``p(x)^(32 M) = p(x^(32 M))`` of its polynomial
    ``p(x) = x^64 + sum_e x^e`` (over GF(2), ``M`` a power of two), and the words ``w[t + 64 M] =
    XOR_e w[t + e M]``. Once the first 64 words are known (from the state's bytes,
    :func:`_head_tables`), each next ``32 M`` words are three XORs of words already computed, for
    all runs at once, and ``M`` doubles as the run grows.
    """
    assert NOISE_DEGREE == 2 * hw.WORD_BITS and max(taps) <= hw.WORD_BITS and len(taps) > 1
    starts = np.asarray(starts, dtype=np.uint64)
    w = np.empty((length, len(starts)), dtype=np.uint32) if out is None else out
    tables = _head_tables(tuple(taps))
    state_bytes = starts.astype("<u8").view(np.uint8).reshape(-1, len(tables))
    head = np.bitwise_xor.reduce(tables[np.arange(len(tables)), state_bytes], axis=1)
    w[:_HEAD] = head.T[:length]
    t = _HEAD
    first, second, *rest = taps
    while t < length:
        m = 1 << min((t // _HEAD).bit_length() - 1, _MAX_LAG_LOG)   # 64 m <= t: words known
        n = min((_HEAD - max(taps)) * m, length - t)                 # they reach t - 1 at most
        at = t - _HEAD * m
        block = w[t:t + n]
        np.bitwise_xor(w[at + first * m:][:n], w[at + second * m:][:n], out=block)
        for e in rest:
            block ^= w[at + e * m:][:n]
        t += n
    return w


@functools.cache
def _code_tables(table):
    """Per table entry ``j``: the key bound ``q[j] 2^7 + (j & 127)`` (a word's low 25 bits,
    ``v 2^7 + i``, are below it exactly when ``v < q[j]``) and ``alias[j]``; and the code of each
    (signed bin, offset) at index ``bin | offset << 8``."""
    entries = np.arange(nt.ENTRIES, dtype=np.uint32)
    key = (np.array(table.q, dtype=np.uint32) << np.uint32(nt.BIN_BITS)) | (entries & np.uint32(127))
    index = np.arange(1 << (_SIGNED_BIN_BITS + nt.OFFSET_BITS))
    bin_ = index & ((1 << nt.BIN_BITS) - 1)
    offset = index >> _SIGNED_BIN_BITS
    magnitude = 2 * ((bin_ << nt.OFFSET_BITS) + offset) + 1
    codes = np.where(index >> nt.BIN_BITS & 1, -magnitude, magnitude)
    return key, np.array(table.alias, dtype=np.uint32), codes.astype(np.int16)


@functools.cache
def _index_codes(table):
    """The code of each index ``i | v_top << 7 | offset << 14 | sign << 17`` of a rearranged word
    (:data:`_FIELDS`), or 0 (no code is even) where ``v_top`` equals the top bits of ``q[j]`` and
    the low bits decide."""
    _, alias, codes = _code_tables(table)
    index = np.arange(1 << (hw.WORD_BITS - _INDEX_AT))
    j = index & (nt.ENTRIES // 2 - 1) | (index >> (nt.BIN_BITS + _TOP + nt.OFFSET_BITS)) << nt.BIN_BITS
    top = index >> nt.BIN_BITS & ((1 << _TOP) - 1)
    q = np.array(table.q)[j]
    chosen = np.where(top < q >> _LOW, j, alias[j])
    decided = (top != q >> _LOW) | (q & ((1 << _LOW) - 1) == 0)
    offset = index >> (nt.BIN_BITS + _TOP) & ((1 << nt.OFFSET_BITS) - 1)
    return np.where(decided, codes[chosen | offset << _SIGNED_BIN_BITS], 0).astype(np.int16)


_CODE_BOUND = (1 << (CODE_WIDTH - 1)) - 1   # the largest |code| of the format
_BLOCK = 1 << 16    # words converted at a time: the temporaries stay in the cache


def words_to_codes(words, table=None):
    """Map 32-bit uniform words to noise codes exactly as :class:`~spinemu.hdl.noise.AliasNoise`
    with ``table`` (the Gaussian by default)."""
    table = nt.gaussian() if table is None else table
    words = np.asarray(words)
    flat = words.reshape(-1)
    out = np.empty(flat.shape, dtype=np.int16)
    for at in range(0, flat.size, _BLOCK):
        out[at:at + _BLOCK] = _block_codes(flat[at:at + _BLOCK], table)
    return out.reshape(words.shape)


def _block_codes(words, table):
    key, alias, codes = _code_tables(table)
    w = words.astype(np.uint32, copy=False)  # the fields use the low 32 bits only
    j = (w & np.uint32((1 << nt.BIN_BITS) - 1)) | ((w >> np.uint32(_SIGN_AT - nt.BIN_BITS))
                                                   & np.uint32(1 << nt.BIN_BITS))
    below = (w & np.uint32((1 << _OFFSET_AT) - 1)) < key.take(j)
    chosen = np.where(below, j, alias.take(j))
    # the offset, moved down next to the signed bin
    chosen |= (w >> np.uint32(_OFFSET_AT - _SIGNED_BIN_BITS)) & np.uint32(
        ((1 << nt.OFFSET_BITS) - 1) << _SIGNED_BIN_BITS)
    return codes.take(chosen)


_INDEX_BLOCK = 1 << 16     # rearranged words converted at a time


def _permuted_codes(words, table, out):
    """:func:`words_to_codes` of rearranged words (any strides) into ``out`` (int16, C-contiguous,
    the same shape): a shift and a table look-up per word, in blocks along the first axis; the few
    words the table leaves undecided go through :func:`_block_codes` at the end."""
    codes = _index_codes(table)
    rows = max(1, _INDEX_BLOCK // max(1, words[0].size))
    index = np.empty((min(rows, len(words)),) + words.shape[1:], dtype=np.intp)
    for at in range(0, len(words), rows):
        block = words[at:at + rows]
        np.right_shift(block, _INDEX_AT, out=index[:len(block)])
        codes.take(index[:len(block)], out=out[at:at + rows], mode="wrap")   # all in range
    undecided = np.unravel_index(np.flatnonzero(out == 0), out.shape)
    out[undecided] = _block_codes(_permute(words[undecided], inverse=True), table)
    return out


def _check_block(index):
    if not 0 <= index < MAX_BLOCKS:
        raise ValueError(f"noise block index must be 0..{MAX_BLOCKS - 1}, not {index}")


def noise_codes(seed, blocks, samples, *, first=0, table=None):
    """Codes of noise blocks ``first .. first+blocks-1`` after loading job seed ``seed``.

    Returns an int16 array of shape ``(samples, blocks)``: column ``j`` is what
    ``AliasNoise(first + j, table)`` emits after ``load`` with ``seed_state(seed, first + j)``.
    """
    return job_noise_codes([seed], blocks, samples, first=first, table=table)[0]


def job_noise_codes(seeds, blocks, samples, *, first=0, table=None):
    """:func:`noise_codes` for many job seeds at once: shape ``(len(seeds), samples, blocks)``."""
    table = nt.gaussian() if table is None else table
    # segments long next to their first 64 words, which cost the most (see _words)
    length, segments = _segments(len(seeds), samples, shortest=4 * _HEAD)
    out = np.empty((len(seeds), segments, length, blocks), dtype=np.int16)
    seeds = seed_array(seeds)           # checked once, not once per block
    for j in range(blocks):
        index = first + j
        _check_block(index)
        states = seed_states(seeds, index)
        starts = _starts(states, length, segments, width=NOISE_DEGREE, taps=NOISE_TAPS[index],
                         step=hw.WORD_BITS)
        words = _words(starts, length, NOISE_TAPS[index])
        # codes before the transpose to runs: a quarter of the words' bytes to move
        codes = _permuted_codes(words, table, np.empty(words.shape, dtype=np.int16))
        out[:, :, :, j] = _runs(codes, len(seeds))
    return out.reshape(len(seeds), -1, blocks)[:, :samples]


def period_codes(seeds, index, period, periods, *, table=None, out=None, words=None):
    """The codes of noise block ``index`` for ``period * periods`` cycles after loading each job
    seed, cycle ``n * period + t`` at ``[t, n, job]``: shape ``(period, periods, len(seeds))``,
    into ``out`` if given (int16, C-contiguous). ``words``: a uint32 array
    ``(period * periods, len(seeds))`` to step the LFSR in, or None."""
    _check_block(index)
    words = _period_words(seeds, index, NOISE_TAPS[index], period, periods, words)
    return _permuted_codes(words, nt.gaussian() if table is None else table,
                           np.empty(words.shape, dtype=np.int16) if out is None else out)


def stream_words(seeds, stream, period, periods, *, words=None):
    """The permuted LFSR words of noise-unit stream ``stream`` (polynomial :data:`STREAM_TAPS`,
    loaded with ``seed_state(seed, stream)``) laid out as :func:`period_codes`' codes: shape
    ``(period, periods, len(seeds))``, a view of ``words`` if given. :func:`stream_codes` turns any
    part of them into codes."""
    return _period_words(seeds, stream, STREAM_TAPS, period, periods, words)


def stream_codes(words, table, out):
    """The codes of :func:`stream_words` ``words`` (any slice of them) with noise table
    ``table``, into ``out`` (int16, C-contiguous, of the words' shape)."""
    return _permuted_codes(words, table, out)


def _period_words(seeds, index, taps, period, periods, words):
    words = _words(seed_states(seeds, index), period * periods, taps, words)
    return words.reshape(periods, period, len(seeds)).transpose(1, 0, 2)


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
    """Only the spins of :func:`neuron`, faster. ``a``, ``theta`` and ``sigma`` broadcast against
    ``codes`` (noise codes of the signed 12-bit format) with no axis added to ``codes``.

    With ``t = theta 2^(F - theta.frac)`` the spin is ``sigma code > t - a 2^F``. When ``a`` has
    fewer elements than ``codes`` (shared by many samples), that is ``code > floor((t - a 2^F) /
    sigma)`` for ``sigma > 0``: one division per ``a`` and one int16 comparison per code.
    Otherwise, with ``t = h 2^F + l`` and ``0 <= l < 2^F``, it is ``a - h > floor((l - sigma code) /
    2^F)``: no division, and int32 arithmetic when the values fit.
    """
    a, theta, sigma = (np.asarray(x, dtype=np.int64) for x in (a, theta, sigma))
    codes = np.asarray(codes)
    frac = fmt.value.frac
    threshold = theta << (frac - fmt.theta_frac)
    if a.size < codes.size:
        return (codes > _code_limit(threshold - (a << frac), sigma)).astype(np.uint8)
    left = a - (threshold >> frac)
    fits = ((1 << frac) + int(sigma.max(initial=0)) * _CODE_BOUND < 2 ** 31
            and np.abs(left).max(initial=0) < 2 ** 31)
    dtype = np.int32 if fits else np.int64
    right = (threshold & ((1 << frac) - 1)).astype(dtype) - sigma.astype(dtype) * codes
    right >>= frac
    return (left.astype(dtype) > right).astype(np.uint8)


def _code_limit(deficit, sigma):
    """``floor(deficit / sigma)`` clipped to int16 (``sigma == 0``: below or above every code as
    ``deficit < 0`` or not), so that ``code > limit`` is ``sigma code > deficit``."""
    positive = sigma > 0
    # Float division is exact enough here: |deficit| < 2^53 and the quotient's distance to the next
    # integer (>= 1/sigma) is far above float64's relative precision for |deficit * sigma| < 2^53.
    if int(np.abs(deficit).max(initial=0)) * max(int(sigma.max(initial=1)), 1) < 2 ** 52:
        limit = np.floor(deficit / np.where(positive, sigma, 1))
    else:
        limit = np.floor_divide(deficit, np.where(positive, sigma, 1))
    limit = np.where(positive, limit, np.where(deficit < 0, -(1 << 15), 1 << 15))
    return np.clip(limit, -(1 << 15), (1 << 15) - 1).astype(np.int16)


def switch_probability(a, theta, sigma, fmt, table=None):
    """The exact P(spin = 1 | a) of the emulated neuron, from the exact code distribution of
    ``table`` (the Gaussian by default)."""
    codes, p = (nt.gaussian() if table is None else table).pmf
    a = np.asarray(a, dtype=np.int64)
    spins, _ = neuron(a[..., None], theta, sigma, codes, fmt)
    return spins @ p

"""Noise tables: the distribution a noise block draws, as an alias table in exact integers.

A noise block (:class:`~spinemu.hdl.noise.AliasNoise`) draws a signed bin by Walker's alias method
and a sub-cell within it; the table says which bins it draws how often. The table is data: a build
parameter of the design and a loadable memory region, so a block can emulate any standardized
threshold distribution ``F`` on its code grid (``docs/noise.md``, "Noise tables").

* The grid: 256 *signed bins*; bin ``b`` has sign ``b >> 7`` and magnitude bin ``k = b & 127``, the
  interval ``[k/16, (k+1)/16)`` of ``z`` (or its negative), split into 8 sub-cells whose odd codes
  ``+-(2 (8k + o) + 1)`` are ``z = code / 256``. The last magnitude bin also takes the tail beyond
  ``|z| = 8``; a distribution with more than :data:`TAIL_LIMIT` of its mass out there is refused.
* The masses: bin ``b`` is drawn with probability exactly ``weights[b] / 2^26`` (:data:`MASS_BITS`),
  the distribution's bin mass rounded by largest remainder so the masses sum to exactly 1.
* The table: entry ``j`` (the word's bin field ``i`` and sign bit, ``j = i | sign << 7``) holds
  ``(q[j], alias[j])``; the bin drawn is ``j if v < q[j] else alias[j]`` for the word's 18-bit
  threshold ``v``. A symmetric distribution is built as a table of magnitudes mirrored by the sign
  bit, so the Gaussian table draws exactly the codes of the original Gaussian block.
* The bytes: entry ``j`` is the little-endian word ``q[j] | alias[j] << 18``, 256 of them (1 KiB),
  and the table's hash is their CRC-32 (:data:`HASH_PARAMETERS`, ISO-HDLC: as :func:`zlib.crc32`).

:func:`gaussian` is the default (the design's original codes); :func:`logistic`, :func:`thermal` and
:func:`from_cdf` build others. Plain Python: no gateware is imported here.
"""

import functools
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from amaranth.lib import crc

__all__ = ["BIN_BITS", "THRESHOLD_BITS", "OFFSET_BITS", "ENTRY_BITS", "BINS_PER_SIGMA",
           "CODE_SIGMA", "ENTRIES", "MASS_BITS", "HASH_PARAMETERS", "TAIL_LIMIT", "Z_LIMIT",
           "TableError", "NoiseTable", "gaussian", "logistic", "thermal", "from_cdf", "from_weights"]

BIN_BITS = 7            # 128 magnitude bins
THRESHOLD_BITS = 18     # alias threshold resolution
OFFSET_BITS = 3         # 8 sub-cells per bin
BINS_PER_SIGMA = 16     # bin width 1/16 of the nominal standard deviation
CODE_SIGMA = 2 * (1 << OFFSET_BITS) * BINS_PER_SIGMA  # 256: the nominal sigma in codes
ENTRIES = 1 << (BIN_BITS + 1)                 # 256 signed bins and table entries
ENTRY_BITS = THRESHOLD_BITS + BIN_BITS + 1    # 26: q, then the alias (a signed bin)
MASS_BITS = BIN_BITS + 1 + THRESHOLD_BITS     # masses in units of 2^-26
Z_LIMIT = (1 << BIN_BITS) / BINS_PER_SIGMA    # 8.0: the grid ends at |z| = 8
TAIL_LIMIT = 1e-4       # the most mass beyond |z| = 8 that may be folded into the last bins
#: The table hash: CRC-32/ISO-HDLC over the entry bytes. The design computes it a bit at a time (a
#: bit-serial CRC is a third of the logic of a byte-wide one), least significant bit first.
HASH_PARAMETERS = crc.catalog.CRC32_ISO_HDLC(data_width=1)
_CAP = 1 << THRESHOLD_BITS
_MAGNITUDES = 1 << BIN_BITS


class TableError(ValueError):
    """A noise table that does not fit the noise block's format; the message says why."""


@dataclass(frozen=True)
class NoiseTable:
    """An alias table over the 256 signed bins (see the module docstring).

    ``name`` is for people (``"gaussian"``, ``"logistic"``, ``"thermal"``, ...); the table's
    identity is its :attr:`hash`. ``q`` and ``alias`` are tuples of 256 integers.
    """

    name: str
    q: tuple = field(repr=False)
    alias: tuple = field(repr=False)

    def __post_init__(self):
        if len(self.q) != ENTRIES or len(self.alias) != ENTRIES:
            raise TableError(f"noise table '{self.name}': {len(self.q)} thresholds and "
                             f"{len(self.alias)} aliases, expected {ENTRIES} of each")
        if any(not 0 <= int(v) < _CAP for v in self.q):
            raise TableError(f"noise table '{self.name}': a threshold outside 0..{_CAP - 1} "
                             f"({THRESHOLD_BITS} bits)")
        if any(not 0 <= int(a) < ENTRIES for a in self.alias):
            raise TableError(f"noise table '{self.name}': an alias outside 0..{ENTRIES - 1}")

    @property
    def weights(self):
        """The mass of each signed bin in units of ``2^-26`` (they sum to ``2^26``)."""
        return _weights_of(self.q, self.alias)

    @property
    def entries(self):
        """The memory words, ``q | alias << 18``, entry 0 first."""
        return tuple(int(q) | int(a) << THRESHOLD_BITS for q, a in zip(self.q, self.alias, strict=True))

    def to_bytes(self):
        """The 256 entries as little-endian 32-bit words (1 KiB)."""
        return np.asarray(self.entries, dtype="<u4").tobytes()

    @classmethod
    def from_bytes(cls, data, name="loaded", *, source="noise table"):
        """A table from :meth:`to_bytes`'s form; :class:`TableError` naming ``source`` if malformed."""
        data = bytes(data)
        if len(data) != 4 * ENTRIES:
            raise TableError(f"{source}: {len(data)} bytes, a noise table has {4 * ENTRIES}")
        words = np.frombuffer(data, dtype="<u4").astype(np.int64)
        if np.any(words >> ENTRY_BITS):
            raise TableError(f"{source}: an entry uses more than {ENTRY_BITS} bits")
        return cls.from_entries(name, words)

    @classmethod
    def from_entries(cls, name, entries):
        """A table from its 256 memory words ``q | alias << 18`` (:attr:`entries`)."""
        entries = [int(e) for e in entries]
        return cls(name, tuple(e & (_CAP - 1) for e in entries),
                   tuple(e >> THRESHOLD_BITS for e in entries))

    @functools.cached_property
    def hash(self):
        """CRC-32 of :meth:`to_bytes` (:data:`HASH_PARAMETERS`, computed by :func:`zlib.crc32`,
        which is the same CRC): what IDENTIFY reports of a loaded table."""
        return zlib.crc32(self.to_bytes())

    @property
    def symmetric(self):
        """Whether the distribution is symmetric about zero."""
        w = self.weights
        return w[:_MAGNITUDES] == w[_MAGNITUDES:]

    @functools.cached_property
    def pmf(self):
        """The exact distribution of the code: ``(codes, probabilities)``, codes ascending, every
        code of the grid (probability 0 included)."""
        w = np.asarray(self.weights, dtype=np.float64)
        cells = 1 << OFFSET_BITS
        m = np.arange(_MAGNITUDES * cells)
        magnitude = 2 * m + 1
        p = np.repeat(w, cells) / (cells << MASS_BITS)        # signed bins are sign-major
        pos, neg = p[:len(m)], p[len(m):]
        codes = np.concatenate([-magnitude[::-1], magnitude])
        return codes, np.concatenate([neg[::-1], pos])

    @property
    def max_code(self):
        """The largest code drawn."""
        codes, p = self.pmf
        return int(codes[p > 0].max())

    @property
    def min_code(self):
        """The smallest code drawn."""
        codes, p = self.pmf
        return int(codes[p > 0].min())

    def moments(self):
        """Exact ``(mean, variance, skewness, excess kurtosis)`` of ``z = code / 256``."""
        codes, p = self.pmf
        z = codes / CODE_SIGMA
        mean = float(p @ z)
        d = z - mean
        var = float(p @ d ** 2)
        return mean, var, float(p @ d ** 3) / var ** 1.5, float(p @ d ** 4) / var ** 2 - 3

    def cell_cdf(self):
        """``(edges, cdf)``: the CDF of ``z`` with each code's mass spread uniformly over its cell
        ``[(c - 1)/256, (c + 1)/256]``, at the 2049 cell edges from -8 to 8 (piecewise linear in
        between): the continuous distribution the table stands for, for training."""
        _, p = self.pmf
        edges = np.arange(-_MAGNITUDES * 16, _MAGNITUDES * 16 + 1, 2) / CODE_SIGMA
        return edges, np.concatenate([[0.0], np.cumsum(p)])

    def describe(self):
        """One line: the name, hash, moments and tail limits."""
        mean, var, skew, kurt = self.moments()
        return (f"{self.name} (hash {self.hash:08x}): mean {mean:+.2e}, variance {var:.6f}, skewness "
                f"{skew:+.3f}, excess kurtosis {kurt:+.3f}, z in [{self.min_code / CODE_SIGMA:.3f}, "
                f"{self.max_code / CODE_SIGMA:.3f}]")


def _weights_of(q, alias):
    weights = [0] * len(q)
    for j, (qj, aj) in enumerate(zip(q, alias, strict=True)):
        weights[j] += qj
        weights[aj] += _CAP - qj
    return tuple(weights)


def _vose(weights):
    """Thresholds and aliases that draw column ``i`` of ``len(weights)`` with ``weights[i]`` (in
    units of ``2^-THRESHOLD_BITS`` of a column): Vose's construction in integers. A column that
    needs no alias has ``q = 0, alias = i``."""
    remaining = list(weights)
    q, alias = [0] * len(weights), list(range(len(weights)))
    small = [i for i, w in enumerate(remaining) if w < _CAP]
    large = [i for i, w in enumerate(remaining) if w >= _CAP]
    while small and large:
        s, big = small.pop(), large.pop()
        q[s], alias[s] = remaining[s], big
        remaining[big] -= _CAP - remaining[s]
        (small if remaining[big] < _CAP else large).append(big)
    assert all(remaining[i] == _CAP for i in small + large)  # exact arithmetic leaves full columns
    return q, alias


def from_weights(name, weights):
    """The table that draws signed bin ``b`` with probability ``weights[b] / 2^26``.

    ``weights`` are 256 non-negative integers summing to ``2^26`` (signed bins sign-major: the 128
    positive magnitude bins, then the 128 negative ones). Symmetric weights are built as a table of
    magnitudes mirrored by the sign bit.
    """
    weights = [int(w) for w in weights]
    if len(weights) != ENTRIES or min(weights) < 0 or sum(weights) != 1 << MASS_BITS:
        raise TableError(f"noise table '{name}': weights must be {ENTRIES} non-negative integers "
                         f"summing to 2^{MASS_BITS}")
    if weights[:_MAGNITUDES] == weights[_MAGNITUDES:]:
        q, alias = _vose(weights[:_MAGNITUDES])
        return NoiseTable(name, tuple(q) * 2,
                          tuple(alias) + tuple(a | _MAGNITUDES for a in alias))
    q, alias = _vose(weights)
    return NoiseTable(name, tuple(q), tuple(alias))


def _round_masses(masses, total):
    """Masses (summing to 1) in integer units of ``1/total``, summing exactly to ``total``: floors,
    then one unit more for the largest remainders (ties to the lower index)."""
    exact = [m * total for m in masses]
    units = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (units[i] - exact[i], i))
    for i in by_remainder[:total - sum(units)]:
        units[i] += 1
    return units


def _check_cdf(name, values, beyond):
    if not np.all(np.isfinite(values)) or np.any(np.diff(values) < -1e-15):
        raise TableError(f"noise table '{name}': the CDF is not a non-decreasing finite function")
    if values[0] < -1e-12 or values[-1] > 1 + 1e-12:
        raise TableError(f"noise table '{name}': the CDF leaves [0, 1]")
    if beyond > TAIL_LIMIT:
        raise TableError(f"noise table '{name}': {beyond:.2e} of the mass lies beyond |z| = "
                         f"{Z_LIMIT:g}, the end of the code grid (at most {TAIL_LIMIT:g} may be "
                         "folded into the last bins); standardize the distribution first")


def from_cdf(name, cdf, *, symmetric=False):
    """The table of a distribution of ``z`` given by its CDF (a vectorised callable).

    Bin masses are CDF differences at the bin edges ``k/16``; the last bins take the tails beyond
    ``|z| = 8`` (at most :data:`TAIL_LIMIT` of the mass, else :class:`TableError`). ``symmetric``
    builds the magnitudes' table and mirrors it, as :func:`gaussian` does, from ``P(|z| in bin)``.
    """
    k = np.arange(_MAGNITUDES + 1) / BINS_PER_SIGMA
    up = np.asarray(cdf(k), dtype=float)            # F at 0, 1/16, ..., 8
    down = np.asarray(cdf(-k), dtype=float)         # F at 0, -1/16, ..., -8
    values = np.concatenate([down[::-1], up[1:]])
    _check_cdf(name, values, down[-1] + 1 - up[-1])
    positive = np.diff(up)
    negative = -np.diff(down)
    positive[-1] += 1 - up[-1]
    negative[-1] += down[-1]
    if symmetric:
        magnitude = _round_masses(list((positive + negative) / (positive + negative).sum()),
                                  1 << (MASS_BITS - 1))
        return from_weights(name, magnitude * 2)
    masses = np.concatenate([positive, negative])
    return from_weights(name, _round_masses(list(masses / masses.sum()), 1 << MASS_BITS))


# ---------------------------------------------------------------------------------------------
# The shipped shapes


def _normal_magnitudes(scale):
    """Masses of the 128 magnitude bins of N(0, scale^2) in units of 2^-25; the last takes the tail."""
    edges = [math.erfc(i / BINS_PER_SIGMA / (scale * math.sqrt(2))) for i in range(_MAGNITUDES)]
    return _round_masses([a - b for a, b in zip(edges, [*edges[1:], 0.0], strict=True)],
                         1 << (MASS_BITS - 1))


def _variance(magnitudes):
    """Variance of z = code / 256 when magnitude bin b has mass magnitudes[b] / 2^25."""
    cells = 1 << OFFSET_BITS
    second = sum(w * sum((2 * (b * cells + o) + 1) ** 2 for o in range(cells))
                 for b, w in enumerate(magnitudes))
    return second / cells / (1 << (MASS_BITS - 1)) / CODE_SIGMA ** 2


@functools.cache
def gaussian():
    """The standard normal: bin masses of N(0, s^2) with s (slightly below 1) chosen so that the
    codes have variance 1. Spreading each bin's mass uniformly adds about h^2/12 to the variance
    (Sheppard); shrinking the normal by as much cancels it, leaving the CDF within 1e-4 of Phi."""
    lo, hi = 0.99, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _variance(_normal_magnitudes(mid)) < 1 else (lo, mid)
    return from_weights("gaussian", _normal_magnitudes(lo) * 2)


@functools.cache
def logistic():
    """The logistic distribution with variance 1: ``F(z) = 1 / (1 + exp(-z pi / sqrt 3))``."""
    rate = math.pi / math.sqrt(3)
    return from_cdf("logistic", lambda z: 0.5 * (1 + np.tanh(z * rate / 2)), symmetric=True)


@functools.cache
def thermal():
    """Thermal activation in its linear-barrier limit, standardized: the Gumbel distribution of the
    largest value with mean 0 and variance 1, ``F(z) = exp(-exp(-(z / b + gamma)))`` with
    ``b = sqrt 6 / pi`` and Euler's ``gamma``. A device whose switching probability is
    ``1 - exp(-exp((I - I0) / beta))`` has thresholds ``T`` with ``(mean(T) - T) / sd(T)`` so
    distributed: skewed, with the long tail on the side of high noise."""
    b = math.sqrt(6) / math.pi
    return from_cdf("thermal", lambda z: np.exp(-np.exp(-(z / b + np.euler_gamma))))

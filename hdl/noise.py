"""Gaussian noise from LFSRs: the alias method over a fine histogram of the normal distribution.

Method (``docs/noise.md`` has the derivation, accuracy and cost):

* Each cycle a 64-bit LFSR with its own primitive polynomial (:data:`NOISE_TAPS`) emits a 32-bit
  uniform word ``u``. Fields: ``u[0:7]`` bin ``i``, ``u[7:25]`` threshold ``v``, ``u[25:28]`` offset,
  ``u[28]`` sign; ``u[29:32]`` are unused.
* The magnitude ``|z|`` is drawn from a histogram of the half-normal with 128 bins of width
  ``sigma/16`` (of N(0, s^2) with s = 0.99967..., which makes the codes' variance exactly 1 to 1e-7,
  see :func:`_unit_variance_weights`) by Walker's alias method: one table read (``q[i]``,
  ``alias[i]``), one comparison: ``bin = i if v < q[i] else alias[i]``. The table is built in exact
  integer arithmetic, so bin ``b`` is drawn with probability exactly ``weight[b] / 2^25``, the
  half-normal's bin mass rounded to units of ``2^-25`` (largest-remainder rounding, so the masses
  sum to exactly 1).
* Within the bin the offset picks one of 8 equally likely sub-cells: ``m = 8 * bin + offset``, and
  the code is ``+-(2m + 1)``, an odd integer. The noise value is ``z = code / 256`` (nominal standard
  deviation 256 codes); codes are symmetric about 0, so the mean is exactly 0.

Tail limit: bins whose mass rounds to zero are never drawn; the largest code drawn is
:data:`MAX_CODE` (about 5.4 sigma). Cost: 64 flip-flops and ~64 LUT4 of LFSR, a 128 x 25-bit ROM (one
or two block RAMs) and about 30 LUTs of compare/mux/negate logic, one sample per cycle.
"""

import functools
import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import CODE_FRAC, CODE_WIDTH
from .lfsr import LFSR
from .polynomials import MAX_BLOCKS, NOISE_DEGREE, NOISE_MAX_TAP, NOISE_TAPS
from .seeding import seed_state

__all__ = [
    "BIN_BITS", "THRESHOLD_BITS", "OFFSET_BITS", "WORD_BITS", "BINS_PER_SIGMA", "CODE_SIGMA",
    "MAX_CODE", "alias_table", "code_pmf", "GaussianNoise", "NoiseBank",
]

BIN_BITS = 7            # 128 histogram bins of |z|
THRESHOLD_BITS = 18     # alias threshold resolution: probabilities in units of 2^-(7+18)
OFFSET_BITS = 3         # 8 sub-cells per bin
WORD_BITS = NOISE_MAX_TAP  # uniform bits per cycle: 32 (every tap <= 64 - 32)
BINS_PER_SIGMA = 16     # bin width sigma/16
CODE_SIGMA = 2 * (1 << OFFSET_BITS) * BINS_PER_SIGMA  # 256: the nominal sigma in codes

_SHIFT_V = BIN_BITS
_SHIFT_OFFSET = _SHIFT_V + THRESHOLD_BITS
_SHIFT_SIGN = _SHIFT_OFFSET + OFFSET_BITS
# The codes fill the format of hdl/formats.py: z = code / 2^CODE_FRAC, sign + 2m+1 for m < 2^10.
assert _SHIFT_SIGN < WORD_BITS and CODE_SIGMA == 1 << CODE_FRAC
assert CODE_WIDTH == BIN_BITS + OFFSET_BITS + 2


def _bin_weights(scale):
    """Mass of each bin of |z| for z ~ N(0, scale^2), in units of 2^-(BIN_BITS+THRESHOLD_BITS),
    rounded so that the masses sum exactly to 1 (largest remainder)."""
    bins, total = 1 << BIN_BITS, 1 << (BIN_BITS + THRESHOLD_BITS)
    h = 1 / BINS_PER_SIGMA
    # P(|z| in [a, b)) = erfc(a/(s sqrt2)) - erfc(b/(s sqrt2)); the last bin takes the whole tail.
    edges = [math.erfc(i * h / (scale * math.sqrt(2))) for i in range(bins)] + [0.0]
    exact = [(edges[i] - edges[i + 1]) * total for i in range(bins)]
    weights = [math.floor(x) for x in exact]
    by_remainder = sorted(range(bins), key=lambda i: (weights[i] - exact[i], i))
    for i in by_remainder[:total - sum(weights)]:
        weights[i] += 1
    return weights


def _variance(weights):
    """Variance of z = code / CODE_SIGMA when bin b has mass weights[b] / 2^25."""
    cells = 1 << OFFSET_BITS
    second = sum(w * sum((2 * (b * cells + o) + 1) ** 2 for o in range(cells))
                 for b, w in enumerate(weights))
    return second / cells / (1 << (BIN_BITS + THRESHOLD_BITS)) / CODE_SIGMA ** 2


@functools.cache
def _unit_variance_weights():
    """Bin masses of N(0, s^2) with s (slightly below 1) chosen so that the codes have variance 1.

    Spreading each bin's mass uniformly adds about h^2/12 to the variance (Sheppard); shrinking the
    underlying normal by the same amount cancels it, leaving the CDF within 1e-4 of Phi.
    """
    lo, hi = 0.99, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _variance(_bin_weights(mid)) < 1 else (lo, mid)
    return _bin_weights(lo)


@functools.cache
def alias_table():
    """The alias table: ``(weights, q, alias)``, tuples of 128 integers.

    Bin ``i`` keeps itself when ``v < q[i]`` and otherwise becomes ``alias[i]`` (Vose's construction
    in integers). A bin that needs no alias has ``q = 0, alias = i``.
    """
    weights = _unit_variance_weights()
    cap = 1 << THRESHOLD_BITS
    remaining = list(weights)
    q, alias = [0] * len(weights), list(range(len(weights)))
    small = [i for i, w in enumerate(remaining) if w < cap]
    large = [i for i, w in enumerate(remaining) if w >= cap]
    while small and large:
        s, big = small.pop(), large.pop()
        q[s], alias[s] = remaining[s], big
        remaining[big] -= cap - remaining[s]
        (small if remaining[big] < cap else large).append(big)
    assert all(remaining[i] == cap for i in small + large)  # exact arithmetic leaves full columns
    return tuple(weights), tuple(q), tuple(alias)


@functools.cache
def code_pmf():
    """The exact distribution of the noise code: ``(codes, probabilities)``, codes ascending.

    Derived from the alias table: P(code = +-(2(8b + o) + 1)) = weight[b] / 2^25 / 8 / 2.
    """
    weights = alias_table()[0]
    scale = 1 / (1 << (BIN_BITS + THRESHOLD_BITS + OFFSET_BITS + 1))
    mags = [(2 * ((b << OFFSET_BITS) + o) + 1, w * scale)
            for b, w in enumerate(weights) if w for o in range(1 << OFFSET_BITS)]
    pmf = [(-c, p) for c, p in reversed(mags)] + mags
    return tuple(c for c, _ in pmf), tuple(p for _, p in pmf)


MAX_CODE = code_pmf()[0][-1]


def _check_block(index):
    if not isinstance(index, int) or not 0 <= index < MAX_BLOCKS:
        raise ValueError(f"noise block index must be 0..{MAX_BLOCKS - 1} (one primitive polynomial "
                         f"each, see spinemu.hdl.polynomials.NOISE_TAPS), not {index!r}")


class GaussianNoise(wiring.Component):
    """One Gaussian noise source: a stream of signed 12-bit codes, ``z = code / 256``.

    Parameters
    ----------
    index : int
        Which noise block this is: selects the LFSR polynomial ``NOISE_TAPS[index]`` and the reset
        state ``seed_state(0, index)``. Distinct indices give independent sequences.

    Ports
    -----
    o : Out(stream.Signature(signed(12)))
        One code per transfer; back-pressure holds the generator.
    load, seed : In(1), In(64)
        Restart from LFSR state ``seed`` (normally ``seed_state(job_seed, index)``); clears the
        two-stage pipeline, so the first code after a load comes from ``seed`` itself.
    """

    o: Out(stream.Signature(signed(CODE_WIDTH)))
    load: In(1)
    seed: In(NOISE_DEGREE)

    def __init__(self, index):
        _check_block(index)
        self.index = index
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        weights, q, alias = alias_table()
        entry = data.StructLayout({"q": THRESHOLD_BITS, "alias": BIN_BITS})
        m.submodules.lfsr = lfsr = LFSR(NOISE_DEGREE, taps=NOISE_TAPS[self.index], step=WORD_BITS,
                                        init=seed_state(0, self.index))
        m.submodules.table = table = memory.Memory(
            shape=entry, depth=1 << BIN_BITS,
            init=[{"q": qi, "alias": ai} for qi, ai in zip(q, alias, strict=True)])
        rd = table.read_port()

        # Stage 1: the ROM entry of bin i and the other fields of u. Stage 2: the output register.
        u = lfsr.bits
        i1 = Signal(BIN_BITS)
        v1 = Signal(THRESHOLD_BITS)
        offset1 = Signal(OFFSET_BITS)
        sign1 = Signal(1)
        valid1 = Signal(1)
        advance2 = ~self.o.valid | self.o.ready
        advance1 = ~valid1 | advance2

        m.d.comb += [
            lfsr.load.eq(self.load),
            lfsr.seed.eq(self.seed),
            lfsr.en.eq(advance1),
            rd.addr.eq(u[:BIN_BITS]),
            rd.en.eq(advance1),
        ]
        with m.If(self.load):
            m.d.sync += [valid1.eq(0), self.o.valid.eq(0)]
        with m.Else():
            with m.If(advance1):
                m.d.sync += [
                    i1.eq(u[:BIN_BITS]),
                    v1.eq(u[_SHIFT_V:_SHIFT_OFFSET]),
                    offset1.eq(u[_SHIFT_OFFSET:_SHIFT_SIGN]),
                    sign1.eq(u[_SHIFT_SIGN]),
                    valid1.eq(1),
                ]
            with m.If(advance2):
                chosen = Mux(v1 < rd.data.q, i1, rd.data.alias)
                # code = +-(2m + 1) with m = 8 * bin + offset. Since -(2m + 1) == ~(2m), the sign
                # is applied by XOR alone: no adder after the comparison.
                m_bits = Cat(offset1, chosen)
                code = Cat(Const(1, 1), m_bits ^ sign1.replicate(len(m_bits)), sign1)
                m.d.sync += [
                    self.o.payload.eq(code),
                    self.o.valid.eq(valid1),
                ]
        return m


class NoiseBank(wiring.Component):
    """``blocks`` noise sources advancing together: one stream of a vector of codes.

    Block ``j`` is ``GaussianNoise(first + j)``. ``load`` restarts them all from the states
    ``seed_state(seed, first + j)`` given on ``states`` (the bank does not compute the seeding
    function; the caller does).
    """

    def __init__(self, blocks, *, first=0):
        if not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"a noise bank needs at least one block, not {blocks!r}")
        _check_block(first)
        _check_block(first + blocks - 1)
        self.blocks, self.first = blocks, first
        super().__init__({
            "o": Out(stream.Signature(data.ArrayLayout(signed(CODE_WIDTH), blocks))),
            "load": In(1),
            "states": In(data.ArrayLayout(NOISE_DEGREE, blocks)),
        })

    def elaborate(self, platform):
        m = Module()
        sources = [GaussianNoise(self.first + j) for j in range(self.blocks)]
        # Every block sees the same load and ready, so all are valid together.
        for j, src in enumerate(sources):
            m.submodules[f"noise{j}"] = src
            m.d.comb += [
                src.load.eq(self.load),
                src.seed.eq(self.states[j]),
                src.o.ready.eq(self.o.ready),
                self.o.payload[j].eq(src.o.payload),
            ]
        m.d.comb += self.o.valid.eq(sources[0].o.valid)
        return m

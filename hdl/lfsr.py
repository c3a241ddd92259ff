"""A maximal-length Fibonacci LFSR that advances several positions per clock cycle.

The LFSR produces the bit sequence ``b[t]`` with ``b[t + n] = XOR(b[t + e] for e in taps)``, whose
characteristic polynomial ``x^n + sum(x^e for e in taps)`` must be primitive (see
:mod:`spinemu.hdl.polynomials`), so every non-zero state lies on one cycle of period ``2^n - 1``.

The state register holds ``n`` consecutive sequence bits, oldest in bit 0:
``state = sum(b[t + i] << i)``. Each enabled cycle emits the ``step`` oldest bits (``bits`` =
``state[:step]``, straight from flip-flops) and shifts ``step`` new bits in at the top. Every new bit
is an XOR of ``len(taps)`` current state bits, with no chaining between new bits, because every tap is
at most ``n - step``; that is why the polynomial tables prefer low taps.

:func:`lfsr_step` is the same transition on Python integers; the golden model vectorises it.
"""

import functools

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .polynomials import MAXIMAL_TAPS, is_primitive

__all__ = ["LFSR", "check_lfsr", "lfsr_step", "lfsr_next"]


@functools.cache
def check_lfsr(width, taps, step):
    """Validate an LFSR configuration; return ``taps`` as a tuple. Raises :class:`ValueError`.

    ``taps`` must be hashable (a tuple) or None; results are cached, as the primitivity test is not
    free and the golden model asks once per lane and batch."""
    if taps is None:
        if width not in MAXIMAL_TAPS:
            raise ValueError(
                f"no maximal-length polynomial is tabulated for LFSR width {width}; tabulated "
                f"widths are {min(MAXIMAL_TAPS)}..{max(MAXIMAL_TAPS)} (or pass primitive taps)")
        taps = MAXIMAL_TAPS[width]
    taps = tuple(sorted(set(taps), reverse=True))
    if not is_primitive(width, taps):
        raise ValueError(
            f"x^{width} + " + " + ".join(f"x^{e}" for e in taps)
            + " is not a primitive polynomial: an LFSR with these taps is not maximal-length")
    if not 1 <= step <= width - taps[0]:
        raise ValueError(
            f"an LFSR of width {width} with highest tap {taps[0]} can advance 1..{width - taps[0]} "
            f"bits per cycle, not {step}")
    return taps


def lfsr_step(state, width, taps, step):
    """The state after one cycle of :class:`LFSR` (Python integers)."""
    mask = (1 << step) - 1
    new = 0
    for e in taps:
        new ^= state >> e
    return (state >> step) | ((new & mask) << (width - step))


def lfsr_next(state, taps, step):
    """The state after one cycle of :class:`LFSR`, as an Amaranth value of the value ``state``;
    ``taps`` from :func:`check_lfsr`."""
    new = Cat(*[_xor([state[e + i] for e in taps]) for i in range(step)])
    return Cat(state[step:], new)


class LFSR(wiring.Component):
    """Fibonacci LFSR of ``width`` bits advancing ``step`` sequence positions per enabled cycle.

    Parameters
    ----------
    width : int
        Register width ``n``, the degree of the polynomial.
    taps : tuple of int, optional
        Lower exponents of a primitive polynomial (containing 0); default from
        :data:`~spinemu.hdl.polynomials.MAXIMAL_TAPS`.
    step : int
        Bits emitted per cycle, 1 .. ``width - max(taps)``.
    init : int
        Reset state; must be non-zero (the all-zero state locks the LFSR).

    Ports
    -----
    en : In(1)
        Advance one step.
    load, seed : In(1), In(width)
        Load ``seed`` as the state (takes priority over ``en``). A zero seed locks the LFSR: the
        seeding function (:func:`spinemu.hdl.seeding.seed_state`) never produces one.
    bits : Out(step)
        The ``step`` oldest sequence bits of the current state.
    state : Out(width)
        The whole state.
    """

    def __init__(self, width, *, taps=None, step=1, init=1):
        self.taps = check_lfsr(width, None if taps is None else tuple(taps), step)
        if not 0 < init < (1 << width):
            raise ValueError(f"LFSR init state must be 1..2^{width}-1 (zero locks it), not {init}")
        self.width, self.step, self.init = width, step, init
        super().__init__({
            "en": In(1),
            "load": In(1),
            "seed": In(width),
            "bits": Out(step),
            "state": Out(width, init=init),
        })

    def elaborate(self, platform):
        m = Module()
        with m.If(self.load):
            m.d.sync += self.state.eq(self.seed)
        with m.Elif(self.en):
            m.d.sync += self.state.eq(lfsr_next(self.state, self.taps, self.step))
        m.d.comb += self.bits.eq(self.state[:self.step])
        return m


def _xor(values):
    result = values[0]
    for v in values[1:]:
        result = result ^ v
    return result

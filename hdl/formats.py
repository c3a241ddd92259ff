"""Fixed-point number formats: the one definition used by gateware, golden model, host and tests.

A :class:`Fixed` format stores the real number ``code / 2**frac`` in a ``width``-bit two's-complement
(``signed``) or unsigned integer ``code``. Conversions never clip silently: a value outside the format
raises :class:`ValueError` naming the quantity and the representable range.
"""

from dataclasses import dataclass

from amaranth.hdl import signed, unsigned

__all__ = ["Fixed"]


@dataclass(frozen=True)
class Fixed:
    """A fixed-point format: ``value = code / 2**frac`` with ``code`` a ``width``-bit integer."""

    width: int
    frac: int
    signed: bool

    def __post_init__(self):
        if self.width < 1 or self.frac < 0:
            raise ValueError(f"fixed-point format needs width >= 1 and frac >= 0, not {self}")

    @property
    def shape(self):
        """The Amaranth shape of the code."""
        return signed(self.width) if self.signed else unsigned(self.width)

    @property
    def min_code(self):
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self):
        return (1 << (self.width - 1 if self.signed else self.width)) - 1

    @property
    def lsb(self):
        """The value of one code step."""
        return 2.0 ** -self.frac

    def describe(self):
        """``Q`` notation, e.g. ``UQ8.8`` or ``Q24.8`` (integer bits include the sign)."""
        return f"{'' if self.signed else 'U'}Q{self.width - self.frac}.{self.frac}"

    def to_code(self, value, *, what="value", min_code=None):
        """The code nearest to ``value``; :class:`ValueError` if it does not fit.

        ``min_code`` tightens the lower bound (e.g. 1 for a quantity that must be positive).
        """
        lo = self.min_code if min_code is None else max(min_code, self.min_code)
        code = round(float(value) * (1 << self.frac))
        if not lo <= code <= self.max_code:
            raise ValueError(
                f"{what} = {value!r} is outside the {self.describe()} format: representable "
                f"{self.from_code(lo)!r} .. {self.from_code(self.max_code)!r}")
        return code

    def check_code(self, code, *, what="code", min_code=None):
        """``code`` itself if it is a valid code of this format, else :class:`ValueError`."""
        lo = self.min_code if min_code is None else max(min_code, self.min_code)
        if int(code) != code or not lo <= code <= self.max_code:
            raise ValueError(f"{what} code {code!r} is outside the {self.describe()} format "
                             f"(codes {lo} .. {self.max_code})")
        return int(code)

    def from_code(self, code):
        """The real value of ``code``."""
        return code / (1 << self.frac)

"""Number formats: the one definition used by gateware, golden model, host and tests (plain Python).

A :class:`Fixed` format stores the real number ``code / 2**frac`` in a ``width``-bit
two's-complement (``signed``) or unsigned integer ``code``. Conversions never clip silently: a value
outside the format raises :class:`ValueError` naming the quantity and the representable range.
:class:`NeuronFormat` gives the formats of a spin neuron's quantities; a noise code is
``z = code / 2**CODE_FRAC``, a signed :data:`CODE_WIDTH`-bit integer (``hdl/noise.py`` draws it,
``docs/noise.md``).
"""

from dataclasses import dataclass

from amaranth.hdl import signed, unsigned

__all__ = ["Fixed", "NeuronFormat", "CODE_WIDTH", "CODE_FRAC"]

CODE_WIDTH = 12         # a noise code +-(2m + 1), m < 2^10: signed 12 bits
CODE_FRAC = 8           # z = code / 2^8


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

    def from_code(self, code):
        """The real value of ``code``."""
        return code / (1 << self.frac)


@dataclass(frozen=True)
class NeuronFormat:
    """Number formats of a spin neuron.

    ``a`` is a signed ``a_width``-bit integer; ``theta`` (threshold, in units of ``a``) is signed
    with ``theta_frac`` fractional bits and the integer range of ``a``; ``sigma`` (noise standard
    deviation, in units of ``a``) is unsigned ``sigma_width`` bits with ``sigma_frac`` fractional bits
    and must be at least one LSB. The defaults give ``a``: Q16.0, ``theta``: Q16.8, ``sigma``: UQ8.8.
    """

    a_width: int = 16
    theta_frac: int = 8
    sigma_width: int = 16
    sigma_frac: int = 8

    def __post_init__(self):
        if self.a_width < 2 or self.sigma_width < 1 or self.sigma_frac < 0:
            raise ValueError(f"invalid neuron format {self}")
        if not 0 <= self.theta_frac <= self.value.frac:
            raise ValueError(f"theta_frac must be 0..{self.value.frac}, not {self.theta_frac}")

    @property
    def a(self):
        return Fixed(self.a_width, 0, True)

    @property
    def theta(self):
        return Fixed(self.a_width + self.theta_frac, self.theta_frac, True)

    @property
    def sigma(self):
        return Fixed(self.sigma_width, self.sigma_frac, False)

    @property
    def value(self):
        frac = self.sigma_frac + CODE_FRAC
        # a * 2^F and sigma * code (unsigned x signed), plus one bit for their sum
        width = max(self.a_width + frac, self.sigma_width + CODE_WIDTH) + 1
        return Fixed(width, frac, True)

    def theta_code(self, theta):
        """Code of a threshold in units of ``a``; ValueError outside the format."""
        return self.theta.to_code(theta, what="theta")

    def sigma_code(self, sigma):
        """Code of a noise standard deviation in units of ``a``; ValueError if < 1 LSB or too big."""
        return self.sigma.to_code(sigma, what="sigma", min_code=1)

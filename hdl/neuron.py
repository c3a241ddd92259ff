"""The stochastic spin neuron: integer pre-activation plus calibrated Gaussian noise, thresholded.

``spin = 1 if a + sigma * z > theta else 0`` with ``z = code / 256`` from a
:class:`~spinemu.hdl.noise.GaussianNoise` block, so ``P(spin = 1 | a) = Phi((a - theta) / sigma)`` up to
the noise block's accuracy. The comparison is exact integer arithmetic (no rounding anywhere):

    value = a * 2^F + sigma_code * noise_code          (F = sigma.frac + 8 fractional bits)
    spin  = value > theta_code * 2^(F - theta.frac)

``value`` is the noisy analog value ``a + n`` in the :attr:`NeuronFormat.value` format.
"""

from dataclasses import dataclass

from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import Fixed
from .noise import CODE_FRAC, CODE_WIDTH, GaussianNoise
from .polynomials import NOISE_DEGREE

__all__ = ["NeuronFormat", "SpinNeuron", "NoisyNeuron"]


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


class SpinNeuron(wiring.Component):
    """One spin neuron evaluation per transfer: joins an input and a noise stream.

    Ports
    -----
    i : In(stream.Signature(StructLayout({"a", "theta", "sigma"})))
        Pre-activation and this neuron's calibration codes.
    noise : In(stream.Signature(signed(12)))
        Noise codes, one consumed per evaluation.
    o : Out(stream.Signature(StructLayout({"spin": 1, "value": ...})))
        The spin and the noisy analog value (:attr:`NeuronFormat.value`).
    """

    def __init__(self, fmt=NeuronFormat()):
        self.fmt = fmt
        self.input_layout = data.StructLayout({
            "a": fmt.a.shape, "theta": fmt.theta.shape, "sigma": fmt.sigma.shape})
        self.output_layout = data.StructLayout({"spin": 1, "value": fmt.value.shape})
        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "noise": In(stream.Signature(signed(CODE_WIDTH))),
            "o": Out(stream.Signature(self.output_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, x = self.fmt, self.i.payload
        frac = fmt.value.frac
        value = (x.a << frac) + x.sigma * self.noise.payload
        spin = value > (x.theta << (frac - fmt.theta_frac))

        both = self.i.valid & self.noise.valid
        take = both & (~self.o.valid | self.o.ready)
        m.d.comb += [self.i.ready.eq(take), self.noise.ready.eq(take)]
        with m.If(take):
            m.d.sync += [
                self.o.payload.spin.eq(spin),
                self.o.payload.value.eq(value),
                self.o.valid.eq(1),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class NoisyNeuron(wiring.Component):
    """A complete emulated spin neuron: :class:`SpinNeuron` fed by its own ``GaussianNoise(index)``.

    Ports ``i`` and ``o`` are those of :class:`SpinNeuron`; ``load``/``seed`` restart the noise
    block (see :class:`~spinemu.hdl.noise.GaussianNoise`).
    """

    def __init__(self, index, fmt=NeuronFormat()):
        self.index, self.fmt = index, fmt
        self._noise = GaussianNoise(index)
        self._neuron = SpinNeuron(fmt)
        self.input_layout = self._neuron.input_layout
        self.output_layout = self._neuron.output_layout
        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(self.output_layout)),
            "load": In(1),
            "seed": In(NOISE_DEGREE),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.noise = self._noise
        m.submodules.neuron = self._neuron
        wiring.connect(m, self._noise.o, self._neuron.noise)
        wiring.connect(m, wiring.flipped(self.i), self._neuron.i)
        wiring.connect(m, self._neuron.o, wiring.flipped(self.o))
        m.d.comb += [self._noise.load.eq(self.load), self._noise.seed.eq(self.seed)]
        return m

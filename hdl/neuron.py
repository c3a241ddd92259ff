"""The stochastic spin neuron: integer pre-activation plus calibrated noise, thresholded.

``spin = 1 if a + sigma * z > theta else 0`` with ``z = code / 256`` from an
:class:`~spinemu.hdl.noise.AliasNoise` block whose table has distribution ``F``, so
``P(spin = 1 | a) = 1 - F((theta - a) / sigma)`` (``Phi((a - theta) / sigma)`` for the Gaussian)
up to the noise block's accuracy. The comparison is exact integer arithmetic (no rounding anywhere):

    value = a * 2^F + sigma_code * noise_code          (F = sigma.frac + 8 fractional bits)
    spin  = value > theta_code * 2^(F - theta.frac)

``value`` is the noisy analog value ``a + n`` in the
:attr:`~spinemu.hdl.formats.NeuronFormat.value` format.
"""

from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import CODE_WIDTH, NeuronFormat
from .noise import TABLE_READ, TABLE_WRITE, AliasNoise
from .noise_table import ENTRY_BITS
from .polynomials import NOISE_DEGREE

__all__ = ["SpinNeuron", "NoisyNeuron"]


class SpinNeuron(wiring.Component):
    """One spin neuron evaluation per transfer: joins an input and a noise stream.

    Ports
    -----
    i : In(stream.Signature(StructLayout({"a", "theta", "sigma"})))
        Pre-activation and this neuron's calibration codes.
    noise : In(stream.Signature(signed(12)))
        Noise codes, one consumed per evaluation.
    o : Out(stream.Signature(StructLayout({"spin": 1, "value": ...})))
        The spin and the noisy analog value (:attr:`~spinemu.hdl.formats.NeuronFormat.value`).
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
    """A complete emulated spin neuron: :class:`SpinNeuron` fed by its own
    ``AliasNoise(index, table)`` (the Gaussian table by default).

    Ports ``i`` and ``o`` are those of :class:`SpinNeuron`; ``load``/``seed`` restart the noise
    block, ``table_write`` writes its table and ``table_read``/``table_data`` read it (see
    :class:`~spinemu.hdl.noise.AliasNoise`).
    """

    def __init__(self, index, fmt=NeuronFormat(), table=None):
        self.index, self.fmt = index, fmt
        self._noise = AliasNoise(index, table)
        self._neuron = SpinNeuron(fmt)
        self.input_layout = self._neuron.input_layout
        self.output_layout = self._neuron.output_layout
        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(self.output_layout)),
            "load": In(1),
            "seed": In(NOISE_DEGREE),
            "table_write": In(TABLE_WRITE),
            "table_read": In(TABLE_READ),
            "table_data": Out(ENTRY_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.noise = self._noise
        m.submodules.neuron = self._neuron
        wiring.connect(m, self._noise.o, self._neuron.noise)
        wiring.connect(m, wiring.flipped(self.i), self._neuron.i)
        wiring.connect(m, self._neuron.o, wiring.flipped(self.o))
        m.d.comb += [self._noise.load.eq(self.load), self._noise.seed.eq(self.seed),
                     self._noise.table_write.eq(self.table_write),
                     self._noise.table_read.eq(self.table_read),
                     self.table_data.eq(self._noise.table_data)]
        return m

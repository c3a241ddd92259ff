"""The seeding function in gateware: ``seed_state(seed, j)`` for noise blocks ``j = 0 .. count-1``.

It evaluates :func:`spinemu.hdl.seeding.seed_state` exactly: the Weyl sequence
``seed + (j + 1) * 0x9E3779B97F4A7C15`` needs one 64-bit adder, and fmix64's two constant
multiplications run as sequential shift-and-add (64 cycles each), so the whole unit is one adder,
three 64-bit registers and a little control: about 131 cycles per block, once per job.
"""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .seeding import SEED_BITS

__all__ = ["Seeder"]

_WEYL = 0x9E3779B97F4A7C15
_C1 = 0xFF51AFD7ED558CCD
_C2 = 0xC4CEB9FE1A85EC53


class Seeder(wiring.Component):
    """Takes a job seed on ``i``; emits ``count`` states ``(block, state)`` on ``o``, in order."""

    def __init__(self, count):
        if count < 1:
            raise ValueError(f"a seeder serves at least one block, not {count}")
        self.count = count
        self.out_layout = data.StructLayout({"block": unsigned(max(1, (count - 1).bit_length())),
                                             "state": SEED_BITS})
        super().__init__({
            "i": In(stream.Signature(SEED_BITS)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        mask = (1 << 64) - 1
        weyl = Signal(64)          # seed + (block + 1) * WEYL
        x = Signal(64)             # the finished state
        shifted = Signal(64)       # multiplicand << k
        product = Signal(64)
        k = Signal(range(64))
        block = Signal(range(self.count))
        second = Signal()          # in the second multiplication

        def fold(v):               # v ^ (v >> 33)
            return v ^ (v >> 33)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [weyl.eq((self.i.payload + _WEYL) & mask), block.eq(0)]
                    m.next = "START"
            with m.State("START"):
                m.d.sync += [shifted.eq(fold(weyl)), product.eq(0), k.eq(0), second.eq(0)]
                m.next = "MULTIPLY"
            with m.State("MULTIPLY"):
                bit = Mux(second, Const(_C2, 64).bit_select(k, 1), Const(_C1, 64).bit_select(k, 1))
                with m.If(bit):
                    m.d.sync += product.eq(product + shifted)
                m.d.sync += [shifted.eq(shifted << 1), k.eq(k + 1)]
                with m.If(k == 63):
                    m.next = "FOLD"
            with m.State("FOLD"):
                with m.If(~second):
                    m.d.sync += [shifted.eq(fold(product)), product.eq(0), k.eq(0), second.eq(1)]
                    m.next = "MULTIPLY"
                with m.Else():
                    m.d.sync += x.eq(fold(product))
                    m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += [
                    self.o.valid.eq(1),
                    self.o.payload.block.eq(block),
                    # fmix64 maps exactly one input to 0, which would lock an LFSR.
                    self.o.payload.state.eq(Mux(x == 0, _WEYL, x)),
                ]
                with m.If(self.o.ready):
                    m.d.sync += [weyl.eq(weyl + _WEYL), block.eq(block + 1)]
                    with m.If(block == self.count - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "START"
        return m

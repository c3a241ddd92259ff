"""The seeding function in gateware: ``seed_state(seed, j)`` for noise blocks ``j = 0 .. count-1``.

It evaluates :func:`spinemu.hdl.seeding.seed_state` exactly. Three 64-bit registers: the seed
as taken, the multiplicand and the product of fmix64's two constant multiplications, which run as
sequential shift-and-add (one adder, 64 cycles each). Block ``j``'s Weyl value
``seed + (j + 1) * 0x9E3779B97F4A7C15`` is the seed plus a constant chosen by ``j`` (one adder, no
register of its own). The finished state is read from the product register itself (its fold),
which holds while the state is offered, so there is no result register: 132 cycles per block (a
start cycle, 64 + 1 + 64 + 1 for the multiplications and their folds, a cycle to offer the state),
once per job.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .seeding import SEED_BITS

__all__ = ["Seeder"]

_WEYL = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
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
        seed = Signal(64)          # the job's seed, as taken
        shifted = Signal(64)       # multiplicand << k
        product = Signal(64)
        k = Signal(range(64))
        block = Signal(range(self.count))
        second = Signal()          # in the second multiplication

        def fold(v):               # v ^ (v >> 33): a bijection, 0 only for 0
            return v ^ (v >> 33)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [seed.eq(self.i.payload), block.eq(0)]
                    m.next = "START"
            with m.State("START"):
                step = Signal(64)
                # Block j's Weyl value: the seed plus (j + 1) * WEYL, a constant of j's (a table by
                # block, no second register or adder).
                offsets = Array(Const((j + 1) * _WEYL & _MASK, 64) for j in range(self.count))
                m.d.comb += step.eq(seed + offsets[block])
                m.d.sync += [shifted.eq(fold(step)), product.eq(0), k.eq(0), second.eq(0)]
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
                    m.next = "EMIT"
            with m.State("EMIT"):
                # The state is fold(product), which is 0 only for a product of 0; fmix64 maps
                # exactly one input to 0, which would lock an LFSR: that one gets WEYL instead.
                m.d.comb += [
                    self.o.valid.eq(1),
                    self.o.payload.block.eq(block),
                    self.o.payload.state.eq(fold(product) | Mux(product == 0, _WEYL, 0)),
                ]
                with m.If(self.o.ready):
                    m.d.sync += block.eq(block + 1)
                    with m.If(block == self.count - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "START"
        return m

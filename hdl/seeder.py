"""The seeding function in gateware: ``seed_state(seed, j)`` for noise blocks ``j = 0 .. count-1``.

It evaluates :func:`spinemu.hdl.seeding.seed_state` exactly. Three 64-bit registers: the Weyl
value, the multiplicand and the product of fmix64's two constant multiplications, which run as
sequential shift-and-add, ``digit_bits`` bits of the constant a cycle (as many adders, ``64 /
digit_bits`` cycles each). The Weyl register takes the seed, and each block adds the constant
``0x9E3779B97F4A7C15`` to it, so block ``j`` starts from ``seed + (j + 1) * 0x9E3779B97F4A7C15``
(one constant adder, no table of constants by block). Each of fmix64's three folds goes from the
product register into the multiplicand register, which then holds the finished state while it is
offered: one fold and no result register, the least logic for the small boards. A job takes
:func:`~spinemu.hdl.seeding.seeding_cycles`: the seed, a cycle for block 0's Weyl value, then
:func:`~spinemu.hdl.seeding.block_cycles` per block (a fold and ``64 / digit_bits`` cycles for
each multiplication, the last fold, a cycle to offer the state and step the Weyl value; 132 with
one bit a cycle).
"""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .seeding import DIGIT_BITS, SEED_BITS

__all__ = ["Seeder"]

_WEYL = 0x9E3779B97F4A7C15
_C1 = 0xFF51AFD7ED558CCD
_C2 = 0xC4CEB9FE1A85EC53


class Seeder(wiring.Component):
    """Takes a job seed on ``i``; emits ``count`` states ``(block, state)`` on ``o``, in order,
    multiplying ``digit_bits`` (1, 2, 4 or 8) bits a cycle."""

    def __init__(self, count, digit_bits=1):
        if count < 1:
            raise ValueError(f"a seeder serves at least one block, not {count}")
        if digit_bits not in DIGIT_BITS:
            raise ValueError(f"a seeder multiplies 1, 2, 4 or 8 bits a cycle, not {digit_bits}")
        self.count, self.digit_bits = count, digit_bits
        self.out_layout = data.StructLayout({"block": unsigned(max(1, (count - 1).bit_length())),
                                             "state": SEED_BITS})
        super().__init__({
            "i": In(stream.Signature(SEED_BITS)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        weyl = Signal(64)          # the job's seed, then block j's Weyl value
        shifted = Signal(64)       # the fold of the product (multiplicand << k while multiplying)
        product = Signal(64)       # the Weyl value, then the products
        b = self.digit_bits
        k = Signal(range(64 // b))      # the digit of the constant
        block = Signal(range(self.count))
        folds = Signal(range(4))   # the folds done of this block's three

        def fold(v):               # v ^ (v >> 33): a bijection, 0 only for 0
            return v ^ (v >> 33)

        # START and EMIT each build this sum: with one shared signal instead the iCEBreaker
        # placed at 17.9 MHz, short of its 18 MHz clock (its margin is that thin).
        def next_block():          # the next block's Weyl value, to be folded
            step = Signal(64)
            m.d.comb += step.eq(weyl + _WEYL)
            m.d.sync += [weyl.eq(step), product.eq(step), folds.eq(0)]
            m.next = "FOLD"

        # Every fold goes from the product register into the multiplicand register, so the
        # multiplicand has one source besides its shift, and the state is read from it.
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [weyl.eq(self.i.payload), block.eq(0)]
                    m.next = "START"
            with m.State("START"):
                next_block()
            with m.State("FOLD"):
                m.d.sync += [shifted.eq(fold(product)), product.eq(0), k.eq(0),
                             folds.eq(folds + 1)]
                m.next = "MULTIPLY"
                with m.If(folds == 2):
                    m.next = "EMIT"
            with m.State("MULTIPLY"):
                digit = Mux(folds == 2, Const(_C2, 64).word_select(k, b),
                            Const(_C1, 64).word_select(k, b))
                terms = [Mux(digit[i], shifted << i, 0) for i in range(b)]
                m.d.sync += [product.eq(sum(terms, product)[:64]), shifted.eq(shifted << b),
                             k.eq(k + 1)]
                with m.If(k == 64 // b - 1):
                    m.next = "FOLD"
            with m.State("EMIT"):
                # The state is the last fold, which is 0 only for a product of 0; fmix64 maps
                # exactly one input to 0, which would lock an LFSR: that one gets WEYL instead.
                m.d.comb += [
                    self.o.valid.eq(1),
                    self.o.payload.block.eq(block),
                    self.o.payload.state.eq(shifted | Mux(shifted == 0, _WEYL, 0)),
                ]
                with m.If(self.o.ready):
                    m.d.sync += block.eq(block + 1)
                    with m.If(block == self.count - 1):
                        m.next = "IDLE"
                    with m.Else():
                        next_block()
        return m

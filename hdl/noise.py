"""Noise from LFSRs: the alias method over a fine histogram of a noise table's distribution.

Method (``docs/noise.md`` has the derivation, accuracy and cost; :mod:`spinemu.hdl.noise_table`
builds the tables):

* Each cycle a 64-bit LFSR with its own primitive polynomial (:data:`NOISE_TAPS`) emits a 32-bit
  uniform word ``u``. Fields: ``u[0:7]`` bin ``i``, ``u[7:25]`` threshold ``v``, ``u[25:28]`` offset,
  ``u[28]`` sign; ``u[29:32]`` are unused.
* The signed bin is drawn by Walker's alias method: one read of table entry ``j = i | sign << 7``
  (``q[j]``, ``alias[j]``), one comparison: ``bin = j if v < q[j] else alias[j]``. Bin ``b`` has
  sign ``b[7]`` and magnitude bin ``b[0:7]``, and is drawn with probability exactly
  ``weights[b] / 2^26``.
* Within the bin the offset picks one of 8 equally likely sub-cells: ``m = 8 * (b & 127) + offset``,
  and the code is ``+-(2m + 1)``, an odd integer. The noise value is ``z = code / 256`` (nominal
  standard deviation 256 codes).

The table is a memory: ``table`` (a :class:`~spinemu.hdl.noise_table.NoiseTable`, the Gaussian by
default) is its initial content and ``table_write`` rewrites an entry. Cost: 64 flip-flops and ~64
LUT4 of LFSR, a 256 x 26-bit RAM (two block RAMs) and about 30 LUTs of compare/mux/negate logic, one
sample per cycle.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import CODE_FRAC, CODE_WIDTH
from .lfsr import LFSR
from .noise_table import (
    BIN_BITS,
    CODE_SIGMA,
    ENTRIES,
    ENTRY_BITS,
    OFFSET_BITS,
    THRESHOLD_BITS,
    NoiseTable,
    gaussian,
)
from .polynomials import MAX_BLOCKS, NOISE_DEGREE, NOISE_MAX_TAP, NOISE_TAPS
from .seeding import seed_state

__all__ = ["WORD_BITS", "TABLE_WRITE", "TABLE_READ", "AliasCoder", "AliasNoise", "NoiseBank"]

WORD_BITS = NOISE_MAX_TAP  # uniform bits per cycle: 32 (every tap <= 64 - 32)
# One entry written into a noise block's table (the memory word of NoiseTable.entries).
TABLE_WRITE = data.StructLayout({"en": 1, "addr": range(ENTRIES), "data": ENTRY_BITS})
# A read of one entry of the table: its word is on ``table_data`` the next cycle.
TABLE_READ = data.StructLayout({"en": 1, "addr": range(ENTRIES)})

_SHIFT_V = BIN_BITS
_SHIFT_OFFSET = _SHIFT_V + THRESHOLD_BITS
_SHIFT_SIGN = _SHIFT_OFFSET + OFFSET_BITS
# The codes fill the format of hdl/formats.py: z = code / 2^CODE_FRAC, sign + 2m+1 for m < 2^10.
assert _SHIFT_SIGN < WORD_BITS and CODE_SIGMA == 1 << CODE_FRAC
assert CODE_WIDTH == BIN_BITS + OFFSET_BITS + 2


def _check_table(table):
    if not isinstance(table, NoiseTable):
        raise TypeError(f"a noise table must be a NoiseTable, not {table!r}")


def _check_block(index):
    if not isinstance(index, int) or not 0 <= index < MAX_BLOCKS:
        raise ValueError(f"noise block index must be 0..{MAX_BLOCKS - 1} (one primitive polynomial "
                         f"each, see spinemu.hdl.polynomials.NOISE_TAPS), not {index!r}")


class AliasCoder(wiring.Component):
    """Uniform words to noise codes: the alias method's two pipeline stages over a noise table.

    Parameters
    ----------
    table : NoiseTable
        The table's initial content.

    Ports
    -----
    i : In(stream.Signature(WORD_BITS))
        Uniform words, one taken per code.
    o : Out(stream.Signature(signed(12)))
        The codes, two cycles after their words; back-pressure holds both stages.
    clear : In(1)
        Empties both stages: the words in them give no code.
    table_write : In(TABLE_WRITE)
        ``en``: write entry ``addr`` with ``data`` (``q | alias << 18``); for use while no codes
        are taken, since a write does not reach a read in flight.
    table_read, table_data : In(TABLE_READ), Out(26)
        ``en``: read entry ``addr``; its word is on ``table_data`` the next cycle. The read takes
        the first stage's port, so the codes after it are undefined until the next ``clear``.
    """

    i: In(stream.Signature(WORD_BITS))
    o: Out(stream.Signature(signed(CODE_WIDTH)))
    clear: In(1)
    table_write: In(TABLE_WRITE)
    table_read: In(TABLE_READ)
    table_data: Out(ENTRY_BITS)

    def __init__(self, table):
        _check_table(table)
        self.table = table
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        entry = data.StructLayout({"q": THRESHOLD_BITS, "alias": BIN_BITS + 1})
        m.submodules.table = table = memory.Memory(
            shape=entry, depth=ENTRIES, init=[{"q": q, "alias": a} for q, a in
                                              zip(self.table.q, self.table.alias, strict=True)])
        wr = table.write_port()
        rd = table.read_port()
        m.d.comb += [wr.en.eq(self.table_write.en), wr.addr.eq(self.table_write.addr),
                     wr.data.eq(self.table_write.data)]

        # Stage 1: the table entry of (bin, sign) and the other fields of u. Stage 2: the output.
        u = self.i.payload
        j1 = Signal(BIN_BITS + 1)
        v1 = Signal(THRESHOLD_BITS)
        offset1 = Signal(OFFSET_BITS)
        valid1 = Signal(1)
        advance2 = ~self.o.valid | self.o.ready
        advance1 = ~valid1 | advance2
        j = Cat(u[:BIN_BITS], u[_SHIFT_SIGN])

        m.d.comb += [
            self.i.ready.eq(advance1 & ~self.clear),
            rd.addr.eq(Mux(self.table_read.en, self.table_read.addr, j)),
            rd.en.eq(advance1 | self.table_read.en),
            self.table_data.eq(rd.data),
        ]
        with m.If(self.clear):
            m.d.sync += [valid1.eq(0), self.o.valid.eq(0)]
        with m.Else():
            with m.If(advance1):
                m.d.sync += [
                    j1.eq(j),
                    v1.eq(u[_SHIFT_V:_SHIFT_OFFSET]),
                    offset1.eq(u[_SHIFT_OFFSET:_SHIFT_SIGN]),
                    valid1.eq(self.i.valid),
                ]
            with m.If(advance2):
                chosen = Mux(v1 < rd.data.q, j1, rd.data.alias)
                sign = chosen[BIN_BITS]
                # code = +-(2m + 1) with m = 8 * bin + offset. Since -(2m + 1) == ~(2m), the sign
                # is applied by XOR alone: no adder after the comparison.
                m_bits = Cat(offset1, chosen[:BIN_BITS])
                code = Cat(Const(1, 1), m_bits ^ sign.replicate(len(m_bits)), sign)
                m.d.sync += [
                    self.o.payload.eq(code),
                    self.o.valid.eq(valid1),
                ]
        return m


class AliasNoise(wiring.Component):
    """One noise source: a stream of signed 12-bit codes ``z = code / 256`` drawn from a table.

    Parameters
    ----------
    index : int
        Which noise block this is: selects the LFSR polynomial ``NOISE_TAPS[index]`` and the reset
        state ``seed_state(0, index)``. Distinct indices give independent sequences.
    table : NoiseTable
        The table the block starts with (the Gaussian by default).

    Ports
    -----
    o : Out(stream.Signature(signed(12)))
        One code per transfer; back-pressure holds the generator.
    load, seed : In(1), In(64)
        Restart from LFSR state ``seed`` (normally ``seed_state(job_seed, index)``); clears the
        two-stage pipeline, so the first code after a load comes from ``seed`` itself.
    table_write, table_read, table_data
        Those of :class:`AliasCoder`.
    """

    o: Out(stream.Signature(signed(CODE_WIDTH)))
    load: In(1)
    seed: In(NOISE_DEGREE)
    table_write: In(TABLE_WRITE)
    table_read: In(TABLE_READ)
    table_data: Out(ENTRY_BITS)

    def __init__(self, index, table=None):
        _check_block(index)
        table = gaussian() if table is None else table
        _check_table(table)
        self.index, self.table = index, table
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.lfsr = lfsr = LFSR(NOISE_DEGREE, taps=NOISE_TAPS[self.index], step=WORD_BITS,
                                        init=seed_state(0, self.index))
        m.submodules.coder = coder = AliasCoder(self.table)
        wiring.connect(m, coder.o, wiring.flipped(self.o))
        m.d.comb += [
            lfsr.load.eq(self.load),
            lfsr.seed.eq(self.seed),
            lfsr.en.eq(coder.i.ready),
            coder.i.payload.eq(lfsr.bits),
            coder.i.valid.eq(1),
            coder.clear.eq(self.load),
            coder.table_write.eq(self.table_write),
            coder.table_read.eq(self.table_read),
            self.table_data.eq(coder.table_data),
        ]
        return m


class NoiseBank(wiring.Component):
    """``blocks`` noise sources advancing together: one stream of a vector of codes.

    Block ``j`` is ``AliasNoise(first + j, table)``. ``load`` restarts them all from the states
    ``seed_state(seed, first + j)`` given on ``states`` (the bank does not compute the seeding
    function; the caller does); ``table_write`` writes an entry of every block's table.
    """

    def __init__(self, blocks, *, first=0, table=None):
        if not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"a noise bank needs at least one block, not {blocks!r}")
        _check_block(first)
        _check_block(first + blocks - 1)
        self.blocks, self.first = blocks, first
        self.table = gaussian() if table is None else table
        _check_table(self.table)
        super().__init__({
            "o": Out(stream.Signature(data.ArrayLayout(signed(CODE_WIDTH), blocks))),
            "load": In(1),
            "states": In(data.ArrayLayout(NOISE_DEGREE, blocks)),
            "table_write": In(TABLE_WRITE),
        })

    def elaborate(self, platform):
        m = Module()
        sources = [AliasNoise(self.first + j, self.table) for j in range(self.blocks)]
        # Every block sees the same load and ready, so all are valid together.
        for j, src in enumerate(sources):
            m.submodules[f"noise{j}"] = src
            m.d.comb += [
                src.load.eq(self.load),
                src.table_write.eq(self.table_write),
                src.seed.eq(self.states[j]),
                src.o.ready.eq(self.o.ready),
                self.o.payload[j].eq(src.o.payload),
            ]
        m.d.comb += self.o.valid.eq(sources[0].o.valid)
        return m

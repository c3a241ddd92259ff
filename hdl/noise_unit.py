"""Noise for a whole layer engine: V streams drawn by U generators, P codes at a time.

The codes come in the engine's *schedule*: after the streams are loaded and the unit released, for
sample after sample and layer ``l = 1 .. L`` after layer, neuron ``j = 0 .. N_l - 1`` takes the next
code of stream ``j mod V``, and the unit delivers them ``P`` at a time, vector ``m`` of a layer
holding the codes of its neurons ``m P .. m P + P - 1`` (``ceil(N_l / P)`` vectors; the places past
the layer's last neuron hold codes that no stream gave up). The codes a neuron gets therefore depend
on the number of streams ``V`` and the layer sizes alone, not on how many neurons the engine
computes at once (``P``) or how many generators draw them (``U``).

Every stream is the 64-bit LFSR of :data:`STREAM_TAPS` (one polynomial: a generator steps several
streams and has one step function) from its own loaded state, read 32 bits a code and turned into a
code by an :class:`~spinemu.hdl.noise.AliasCoder`. Generator ``u`` serves streams ``u, u + U, ...``:
it holds their ``V / U`` states in a small memory, and per code reads one, steps it and writes it
back, in stream order; a code past the layer's end is not written back, and a layer's first code
reads stream 0 again. ``docs/noise.md`` has the schedule and why one polynomial suffices.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import CODE_WIDTH
from .lfsr import check_lfsr, lfsr_next
from .noise import TABLE_READ, TABLE_WRITE, WORD_BITS, AliasCoder
from .noise_table import ENTRY_BITS, gaussian
from .polynomials import NOISE_DEGREE, NOISE_TAPS

__all__ = ["STREAM_TAPS", "RDWR_APART", "NoiseUnit"]

#: The polynomial of every stream of a noise unit.
STREAM_TAPS = NOISE_TAPS[0]
#: The attribute of a memory of one read and one write port that never reads the address being
#: written: synthesis may leave such a collision undefined (``firmware/synth.py``), which spares the
#: bypass logic it would otherwise put beside a block RAM (71 LUT4 and 134 flip-flops for the
#: iCEBreaker's unit).
RDWR_APART = "spinemu_rdwr_apart"


def _power_of_two(value):
    return isinstance(value, int) and value >= 1 and not value & (value - 1)


class NoiseUnit(wiring.Component):
    """``streams`` (V) noise streams drawn by ``generators`` (U), delivered ``width`` (P) at a time
    in the schedule of a network of up to ``max_layers`` layers of up to ``2^size_bits - 1``
    neurons.

    V, U and P are powers of two with ``U <= P <= V``. See the module docstring for the order of
    the codes.

    Ports
    -----
    o : Out(stream.Signature(ArrayLayout(signed(12), P)))
        Vectors of P codes in the schedule; one a cycle while U = P, else one every P / U cycles.
    layers, sizes : In(range(max_layers + 1)), In(ArrayLayout(size_bits, max_layers))
        The network: L >= 1 and ``sizes[l - 1] = N_l >= 1`` for its layers; read while ``hold`` is
        high and held from its release.
    hold : In(1)
        While high the unit draws nothing: its pipelines are empty and every generator is back at
        its first stream. Load the streams then; on release, vector 0 follows from the loaded states.
    load : In(StructLayout({"en", "stream", "state"}))
        ``en``: stream ``stream``'s LFSR state becomes ``state`` (``seed_state(seed, stream)`` for a
        job); only while ``hold`` is high.
    table_write : In(TABLE_WRITE)
        Writes an entry of every generator's noise table.
    table_read, table_data : In(TABLE_READ), Out(26)
        Reads an entry of generator 0's table (:class:`~spinemu.hdl.noise.AliasCoder`).
    """

    def __init__(self, streams, generators, width, table=None, *, max_layers=1, size_bits=16):
        if not all(_power_of_two(v) for v in (streams, generators, width)) or not (
                generators <= width <= streams):
            raise ValueError(f"a noise unit needs powers of two generators <= width <= streams, "
                             f"not {generators}, {width}, {streams}")
        self.streams, self.generators, self.width = streams, generators, width
        self.max_layers = max_layers
        self.table = gaussian() if table is None else table
        self._taps = check_lfsr(NOISE_DEGREE, STREAM_TAPS, WORD_BITS)
        super().__init__({
            "o": Out(stream.Signature(data.ArrayLayout(signed(CODE_WIDTH), width))),
            "layers": In(range(max_layers + 1)),
            "sizes": In(data.ArrayLayout(size_bits, max_layers)),
            "hold": In(1),
            "load": In(data.StructLayout({"en": 1, "stream": range(streams),
                                          "state": NOISE_DEGREE})),
            "table_write": In(TABLE_WRITE),
            "table_read": In(TABLE_READ),
            "table_data": Out(ENTRY_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        U, P = self.generators, self.width
        coders = []
        for u in range(U):
            m.submodules[f"coder{u}"] = coder = AliasCoder(self.table)
            m.d.comb += [coder.clear.eq(self.hold), coder.table_write.eq(self.table_write)]
            coders.append(coder)
        # The generators run in lockstep (the same clear and ready), so one walker of the
        # schedule serves them all: it follows the rounds of U codes as they are fetched.
        held = Signal()                                   # rd.data holds states not yet drawn
        draw = coders[0].i.valid & coders[0].i.ready
        ptr = Signal(range(self.streams // U))            # the states to read next
        at = Signal.like(ptr)                             # the states on rd.data
        # The state memories' reads are not transparent: the round that would read the states
        # being written back waits a cycle. A generator of one stream holds its state in a
        # register instead, which it reads as it writes, so that rounds follow every cycle.
        apart = (ptr != at) if self.streams > U else 1
        fetch = ~self.hold & (~held | (draw & apart))
        real = self._walker(m, fetch, ptr)
        with m.If(self.hold):
            m.d.sync += held.eq(0)
        with m.Elif(fetch):
            m.d.sync += [held.eq(1), at.eq(ptr)]
        with m.Elif(draw):
            m.d.sync += held.eq(0)
        for u, coder in enumerate(coders):
            self._generator(m, u, coder, ptr, at, fetch, held, draw, real[u])
        m.d.comb += [coders[0].table_read.eq(self.table_read),
                     self.table_data.eq(coders[0].table_data)]

        # The coders run in lockstep (the same clear and ready), so all are valid together.
        codes = Cat(coder.o.payload for coder in coders)
        if U == P:
            m.d.comb += [self.o.valid.eq(coders[0].o.valid), self.o.payload.eq(codes)]
            take = self.o.ready
        else:
            # P / U rounds of U codes fill the vector; the coders wait while it is full.
            slot = Signal(range(P // U))
            vector = Signal(P * CODE_WIDTH)
            m.d.comb += self.o.payload.eq(vector)
            take = coders[0].o.valid & ~(self.o.valid & ~self.o.ready)
            with m.If(self.hold):
                m.d.sync += [slot.eq(0), self.o.valid.eq(0)]
            with m.Else():
                with m.If(self.o.ready):
                    m.d.sync += self.o.valid.eq(0)
                with m.If(take):
                    width = U * CODE_WIDTH
                    m.d.sync += [vector.word_select(slot, width).eq(codes), slot.eq(slot + 1)]
                    with m.If(slot == P // U - 1):
                        m.d.sync += self.o.valid.eq(1)
        for coder in coders:
            m.d.comb += coder.o.ready.eq(take)
        return m

    def _walker(self, m, fetch, ptr):
        """The schedule at the fetch of each round of U codes: it steps the state index every
        generator reads (``ptr``) and returns, registered with the fetch, which generators' codes
        belong to a neuron (the others' states are not written back)."""
        U, P, depth = self.generators, self.width, self.streams // self.generators
        size_bits = len(self.sizes[0])
        rem = Signal(signed(size_bits + 1))      # N_l minus the round's first neuron
        round_ = Signal(range(P // U))           # the round within its vector
        layer = Signal(range(self.max_layers))
        after = Signal(range(self.max_layers))   # the layer after ``layer``, wrapping to the first
        real = Signal(U)
        sizes = Array(self.sizes)
        vector_end = round_ == P // U - 1
        layer_end = vector_end & (rem <= U)

        def wrap(l):
            return Mux(l + 1 == self.layers, 0, l + 1)

        with m.If(self.hold):
            m.d.sync += [ptr.eq(0), rem.eq(self.sizes[0]), round_.eq(0), layer.eq(0),
                         after.eq(wrap(0))]
        with m.Elif(fetch):
            m.d.sync += [real.eq(Cat(rem > u for u in range(U))),
                         round_.eq(Mux(vector_end, 0, round_ + 1))]
            with m.If(layer_end):
                m.d.sync += [ptr.eq(0), rem.eq(sizes[after]), layer.eq(after),
                             after.eq(wrap(after))]
            with m.Else():
                m.d.sync += [ptr.eq(Mux(ptr == depth - 1, 0, ptr + 1)), rem.eq(rem - U)]
        return real

    def _generator(self, m, u, coder, ptr, at, fetch, held, draw, real):
        """Generator ``u``: the states of streams ``u, u + U, ...`` and their read-step-write."""
        depth = self.streams // self.generators
        lb = (self.generators - 1).bit_length()
        mine = self.load.stream[:lb] == u if lb else 1
        m.d.comb += coder.i.valid.eq(held & ~self.hold)
        if depth == 1:
            state = Signal(NOISE_DEGREE, name=f"state{u}")
            m.d.comb += coder.i.payload.eq(state[:WORD_BITS])
            with m.If(self.hold & self.load.en & mine):
                m.d.sync += state.eq(self.load.state)
            with m.Elif(~self.hold & draw & real):
                m.d.sync += state.eq(lfsr_next(state, self._taps, WORD_BITS))
            return
        # a round reads no state being written back (see ``fetch``)
        states = memory.Memory(shape=NOISE_DEGREE, depth=depth, init=[], attrs={RDWR_APART: 1})
        m.submodules[f"states{u}"] = states
        wr = states.write_port()
        rd = states.read_port()
        m.d.comb += [
            coder.i.payload.eq(rd.data[:WORD_BITS]),
            rd.addr.eq(ptr), rd.en.eq(fetch),
            wr.addr.eq(Mux(self.hold, self.load.stream[lb:], at)),
            wr.data.eq(Mux(self.hold, self.load.state,
                           lfsr_next(rd.data, self._taps, WORD_BITS))),
            wr.en.eq(Mux(self.hold, self.load.en & mine, draw & real)),
        ]

"""The receive window: the bytes of the requests not yet handled, between the line and the frame
decoder (``docs/protocol.md``, flow control).

A UART cannot wait, so the window's input is always ready. Its bytes go into a FIFO of ``depth``
bytes (a power of two) in block RAM and out to the decoder as it takes them, a byte every other
cycle at most (the memory's registered read port reads the next byte in the cycle after one is
taken): far faster than a UART fills it. A host that keeps at most ``depth`` bytes of requests
unanswered never fills it; when it is full anyway:

* the byte that finds it full is dropped, and so is every later byte up to the next delimiter that
  finds room (which is kept, so the frames after it decode). The bytes of the cut frame already in
  the window stay there, and the kept delimiter ends them (a frame error, most likely);
* a frame is lost when one of its bytes (other than its delimiter) is dropped: ``overflow`` is high
  for one cycle, the cycle after that byte, and ``overflows`` counts lost frames (16 bits,
  saturating). A frame whose bytes all fit but whose delimiter was dropped is not lost: the
  delimiter that is kept next ends it, and the bytes dropped in between are those of lost frames.

The one frame :data:`~spinemu.hdl.protocol.ABORT_FRAME` is matched on the input itself, ahead of the
FIFO, so even with the window full: exactly its bytes between two delimiters (the start counting as
after a delimiter) make ``abort`` high for one cycle, the cycle after its delimiter. Its bytes also
enter the window like any other, for the protocol engine to drop with the rest.

``flush`` empties the FIFO and ends the dropping (a byte offered in the same cycle is dropped).
Only the FIFO's registers are reset by it: the counter and the matcher follow the line.
"""

from amaranth.hdl import Array, Const, Module, ResetInserter, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .framing import DELIMITER
from .protocol import ABORT_FRAME, STATUS_RESPONSE, WINDOW

__all__ = ["ReceiveWindow"]


class ReceiveWindow(wiring.Component):
    """A FIFO of ``depth`` bytes with the window's overflow rule and the ABORT matcher (see the
    module docstring).

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes from the line; always ready.
    o : ``Out(stream.Signature(8))``
        Bytes to the frame decoder, in order.
    flush : ``In(1)``
        Empty the window and stop dropping.
    overflow : ``Out(1)``
        High for one cycle per lost frame.
    overflows : ``Out(16)``
        Lost frames since reset (saturating).
    abort : ``Out(1)``
        High for one cycle after the delimiter of an ABORT_FRAME on ``i``.
    """

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    flush: In(1)
    overflow: Out(1)
    overflows: Out(STATUS_RESPONSE["overflows"].shape)
    abort: Out(1)

    def __init__(self, depth=WINDOW):
        if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            raise ValueError(f"a receive window holds a power of two bytes (at least 2), not "
                             f"{depth!r}")
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        queue = Module()    # the FIFO's registers, which flush resets
        m.submodules.queue = ResetInserter(self.flush)(queue)

        # ---- the FIFO: pointers one bit wider than the addresses tell full from empty; the byte
        # offered stays in the memory until it is taken, so the FIFO holds `depth` bytes -------
        m.submodules.memory = buffer = memory.Memory(shape=8, depth=self.depth, init=[])
        wr, rd = buffer.write_port(), buffer.read_port()
        bits = (self.depth - 1).bit_length()
        produce, consume = Signal(bits + 1), Signal(bits + 1)
        same = produce[:bits] == consume[:bits]
        empty = same & (produce[bits] == consume[bits])
        full = same & (produce[bits] != consume[bits])
        take = self.o.valid & self.o.ready
        m.d.comb += [rd.addr.eq(consume[:bits]), self.o.payload.eq(rd.data),
                     wr.addr.eq(produce[:bits])]
        with queue.If(take):
            queue.d.sync += consume.eq(consume + 1)
        with queue.If(wr.en):
            queue.d.sync += produce.eq(produce + 1)
        # The read port gives the byte at `consume` a cycle after both are there: none the cycle
        # after a take, nor the cycle after a write into the empty FIFO.
        queue.d.sync += self.o.valid.eq(~empty & ~take)

        # ---- the overflow rule -------------------------------------------------------------------
        byte = self.i.payload
        delimiter = byte == DELIMITER
        dropping = Signal()     # dropping up to the next delimiter that finds room (flush ends it)
        lost = Signal()         # a byte of the frame now on the line was dropped (it is counted)
        drop = full | (dropping & ~delimiter)
        m.d.comb += [self.i.ready.eq(1), wr.data.eq(byte), wr.en.eq(self.i.valid & ~drop)]
        with queue.If(self.i.valid & drop):
            queue.d.sync += dropping.eq(1)
        with queue.Elif(self.i.valid & delimiter):
            queue.d.sync += dropping.eq(0)
        m.d.sync += self.overflow.eq(0)
        with m.If(self.i.valid):
            with m.If(delimiter):
                m.d.sync += lost.eq(0)
            with m.Elif(drop & ~lost):
                m.d.sync += [self.overflow.eq(1), lost.eq(1),
                             self.overflows.eq(self.overflows + ~self.overflows.all())]

        # ---- the ABORT matcher: how many of ABORT_FRAME's bytes the line has given since the
        # last delimiter; len(pattern) + 1 once it has given any other byte --------------------
        pattern = ABORT_FRAME[:-1]
        assert DELIMITER not in pattern and ABORT_FRAME[-1] == DELIMITER
        matched = Signal(range(len(pattern) + 2))
        expected = Array(Const(b, 8) for b in pattern)[matched]     # a small ROM
        m.d.sync += self.abort.eq(0)
        with m.If(self.i.valid):
            with m.If(delimiter):
                m.d.sync += [matched.eq(0), self.abort.eq(matched == len(pattern))]
            with m.Elif((matched < len(pattern)) & (byte == expected)):
                m.d.sync += matched.eq(matched + 1)
            with m.Else():
                m.d.sync += matched.eq(len(pattern) + 1)
        return m

"""Frames over a byte stream: payload, CRC-16, COBS, 0x00 delimiter.

This module is the one definition of the link's frame format (``docs/framing.md``); the gateware,
the host and the tests all import it::

    frame on the wire = COBS(payload || CRC16(payload), big-endian) || 0x00

* The CRC is :data:`CRC_ALGORITHM`, CRC-16/GENIBUS (also called CRC-16/EPC or CRC-16/DARC):
  polynomial 0x1021, initial value 0xFFFF, not reflected, output XOR 0xFFFF, check value 0xD64E.
  Sent high byte first, so the CRC register run over payload and CRC ends at the residue 0x1D0F.
  The output XOR matters: without one, a frame with zero bytes appended after its CRC (what COBS
  makes of a delimiter damaged into 0x01) would still pass.
* COBS (Consistent Overhead Byte Stuffing, Cheshire & Baker 1999) removes every 0x00 from the
  payload and CRC, so 0x00 only ever marks the end of a frame and a receiver resynchronises at the
  next 0x00 after any error.
* A payload has 1 to ``max_payload`` bytes (:data:`MAX_PAYLOAD` unless a design says otherwise).

Python side: :func:`cobs_encode`, :func:`cobs_decode`, :func:`encode_frame`, :func:`decode_frame`
(raising a :class:`FrameDecodeError` subclass per error kind) and :class:`FrameSplitter` (cuts a
byte stream at delimiters). Gateware side: :class:`FrameDecoder` and :class:`FrameEncoder`.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import crc, data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = [
    "CRC_ALGORITHM", "CRC_PARAMETERS", "CRC_BYTES", "DELIMITER", "MAX_PAYLOAD", "FRAME_BYTE",
    "FrameError", "FrameDecodeError", "FrameCOBSError", "FrameLengthError", "FrameEmptyError",
    "FrameTooLongError", "FrameCRCError",
    "cobs_encode", "cobs_decode", "encode_frame", "decode_frame", "max_encoded_length",
    "FrameSplitter", "FrameDecoder", "FrameEncoder",
]

#: The frame check: CRC-16/GENIBUS (CRC-16/IBM-3740 with an output XOR of 0xFFFF). Beware that
#: ``crc.catalog.CRC16_CCITT`` is a different CRC (CRC-16/KERMIT: reflected, initial value 0).
CRC_ALGORITHM = crc.catalog.CRC16_GENIBUS
#: :data:`CRC_ALGORITHM` over bytes: ``.compute(bytes)`` in Python, ``.create()`` in gateware.
CRC_PARAMETERS = CRC_ALGORITHM(data_width=8)
#: Bytes of CRC after the payload, high byte first.
CRC_BYTES = 2
#: The frame delimiter, the one byte value COBS keeps out of a frame.
DELIMITER = 0x00
#: Default largest payload, in bytes.
MAX_PAYLOAD = 256

#: Payload of the gateware's frame streams: one payload byte, and whether it is the frame's last.
FRAME_BYTE = data.StructLayout({"data": 8, "last": 1})

# COBS: a code byte c is followed by c - 1 data bytes; a block with c < 0xFF is followed by an
# implied 0x00, except the frame's last block.
_COBS_MAX_RUN = 254


class FrameError(enum.Enum, shape=2):
    """Why a received frame was dropped: ``error_kind`` of :class:`FrameDecoder`, and the
    :attr:`FrameDecodeError.kind` of the Python exceptions."""
    #: A code byte points past the delimiter.
    COBS = 0
    #: The frame decodes to fewer than ``CRC_BYTES + 1`` or more than ``max_payload + CRC_BYTES``
    #: bytes.
    LENGTH = 1
    #: The CRC does not match the payload.
    CRC = 2


class FrameDecodeError(ValueError):
    """A frame that :func:`decode_frame` rejects. :attr:`kind` is the matching :class:`FrameError`,
    the one :class:`FrameDecoder` reports for the same bytes."""
    kind: FrameError


class FrameCOBSError(FrameDecodeError):
    """The frame is not valid COBS: a code byte points past its end."""
    kind = FrameError.COBS


class FrameLengthError(FrameDecodeError):
    """The decoded frame is too short or too long."""
    kind = FrameError.LENGTH


class FrameEmptyError(FrameLengthError):
    """The frame holds no payload byte: it is empty or shorter than the CRC plus one byte."""


class FrameTooLongError(FrameLengthError):
    """The payload is longer than ``max_payload``."""


class FrameCRCError(FrameDecodeError):
    """The CRC does not match the payload."""
    kind = FrameError.CRC


def _check_max_payload(max_payload):
    if not isinstance(max_payload, int) or isinstance(max_payload, bool) or max_payload < 1:
        raise ValueError(f"max_payload must be a positive integer, not {max_payload!r}")
    return max_payload


def cobs_encode(data):
    """COBS-encode ``data`` (Cheshire & Baker 1999); the result has no 0x00 and no delimiter.

    A run of 254 non-zero bytes gives a 0xFF block with no implied zero. As in the paper's
    ``StuffData``, the encoding always ends with a block whose code is below 0xFF, so a payload
    ending in a 254-byte run gets a final ``0x01`` block.
    """
    out = bytearray()
    block = bytearray()
    for byte in bytes(data):
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
            if len(block) == _COBS_MAX_RUN:
                out.append(0xFF)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(encoded):
    """Decode COBS ``encoded`` (without the delimiter).

    An implied zero is inserted before each block that follows a block with code below 0xFF, so
    the last block never adds one. Raises :class:`ValueError` if ``encoded`` is empty, contains
    0x00, or has a code byte that points past its end.
    """
    encoded = bytes(encoded)
    if not encoded:
        raise ValueError("COBS data is empty: it needs at least one code byte")
    if DELIMITER in encoded:
        raise ValueError(f"COBS data contains 0x00 at offset {encoded.index(DELIMITER)}")
    out = bytearray()
    zero_pending = False
    pos = 0
    while pos < len(encoded):
        code = encoded[pos]
        end = pos + code
        if end > len(encoded):
            raise ValueError(f"COBS code byte 0x{code:02x} at offset {pos} needs {code - 1} data "
                             f"bytes, only {len(encoded) - pos - 1} follow")
        if zero_pending:
            out.append(0)
        out += encoded[pos + 1:end]
        zero_pending = code != 0xFF
        pos = end
    return bytes(out)


def max_encoded_length(max_payload=MAX_PAYLOAD):
    """Longest COBS encoding (without delimiter) of a frame with ``max_payload`` payload bytes."""
    n = _check_max_payload(max_payload) + CRC_BYTES
    return n + 1 + n // _COBS_MAX_RUN


def encode_frame(payload, max_payload=MAX_PAYLOAD):
    """The wire bytes of one frame: ``COBS(payload || CRC) || 0x00``.

    Raises :class:`ValueError` unless ``payload`` has 1 to ``max_payload`` bytes.
    """
    payload = bytes(payload)
    if not 1 <= len(payload) <= _check_max_payload(max_payload):
        raise ValueError(f"a frame payload has 1 to {max_payload} bytes, not {len(payload)}")
    check = CRC_PARAMETERS.compute(payload).to_bytes(CRC_BYTES, "big")
    return cobs_encode(payload + check) + bytes([DELIMITER])


def decode_frame(encoded, max_payload=MAX_PAYLOAD):
    """The payload of one frame, given its bytes without the delimiter.

    Checks in this order, as :class:`FrameDecoder` does, and raises the first that fails:
    :class:`FrameEmptyError` if ``encoded`` is empty, :class:`FrameCOBSError`,
    :class:`FrameEmptyError` or :class:`FrameTooLongError` for the decoded length, then
    :class:`FrameCRCError`.
    """
    _check_max_payload(max_payload)
    if not encoded:
        raise FrameEmptyError("empty frame")
    try:
        decoded = cobs_decode(encoded)
    except ValueError as error:
        raise FrameCOBSError(str(error)) from None
    if len(decoded) < CRC_BYTES + 1:
        raise FrameEmptyError(f"frame decodes to {len(decoded)} bytes: no payload after "
                              f"taking {CRC_BYTES} bytes of CRC")
    if len(decoded) > max_payload + CRC_BYTES:
        raise FrameTooLongError(f"payload of {len(decoded) - CRC_BYTES} bytes, "
                                f"at most {max_payload} allowed")
    payload, check = decoded[:-CRC_BYTES], decoded[-CRC_BYTES:]
    expected = CRC_PARAMETERS.compute(payload)
    if int.from_bytes(check, "big") != expected:
        raise FrameCRCError(f"CRC 0x{int.from_bytes(check, 'big'):04x} received, "
                            f"0x{expected:04x} computed over {len(payload)} payload bytes")
    return payload


class FrameSplitter:
    """Cuts a byte stream into frames at 0x00 delimiters, for a host read loop.

    ``feed(chunk)`` takes bytes as they arrive, in chunks of any size, and returns the frames that
    the chunk completed, each without its delimiter, ready for :func:`decode_frame`. Empty frames
    (delimiters in a row, e.g. a leading 0x00 sent to flush the receiver) are skipped, as
    :class:`FrameDecoder` skips them. To bound memory on a line carrying garbage, at most
    ``max_encoded_length(max_payload) + 1`` bytes of a frame are kept; the cut frame still fails
    :func:`decode_frame` (as too long, or as bad COBS).
    """

    def __init__(self, max_payload=MAX_PAYLOAD):
        self._keep = max_encoded_length(max_payload) + 1
        self._partial = bytearray()

    def feed(self, chunk):
        """Take ``chunk`` and return the list of frames it completed."""
        *complete, rest = bytes(chunk).split(bytes([DELIMITER]))
        frames = []
        for piece in complete:
            frame = (self._partial + piece)[:self._keep]
            if frame:
                frames.append(bytes(frame))
            self._partial.clear()
        self._partial += rest
        del self._partial[self._keep:]
        return frames


def _saturating_increment(counter):
    return counter.eq(Mux(counter.all(), counter, counter + 1))


class FrameDecoder(wiring.Component):
    """Decodes frames from a byte stream; releases a payload only after its CRC checked out.

    Bytes from ``i`` are COBS-decoded on the fly into a buffer of ``max_payload + CRC_BYTES`` bytes
    (a :class:`~amaranth.lib.memory.Memory`) and into a CRC register. When the 0x00 delimiter
    arrives, the frame is judged, in the order of :func:`decode_frame`:

    * a code byte pointing past the delimiter: :attr:`FrameError.COBS`;
    * fewer than ``CRC_BYTES + 1`` or more than ``max_payload + CRC_BYTES`` decoded bytes:
      :attr:`FrameError.LENGTH`;
    * the CRC register not at the residue: :attr:`FrameError.CRC`;
    * otherwise the payload is sent on ``o``, one byte per cycle while ``o`` is ready, ``last`` set
      on its final byte. ``i`` is not ready until the whole payload has gone.

    A bad frame is dropped: its counter goes up (16 bits, saturating), ``error`` is high for one
    cycle and ``error_kind`` says why (it keeps that value until the next error). Decoding starts
    afresh after every delimiter, so the decoder resyncs at the next 0x00 after any error. A
    delimiter with no bytes since the previous one is not a frame and is ignored.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes from the line (e.g. :class:`~spinemu.hdl.uart.UARTRx`).
    o : ``Out(stream.Signature(FRAME_BYTE))``
        Payload bytes of good frames.
    error : ``Out(1)``
        High for one cycle per dropped frame.
    error_kind : ``Out(FrameError)``
        Why the last frame was dropped; valid when ``error`` is high.
    cobs_errors, length_errors, crc_errors : ``Out(16)``
        Dropped frames of each kind.
    """

    i: In(stream.Signature(8))
    o: Out(stream.Signature(FRAME_BYTE))
    error: Out(1)
    error_kind: Out(FrameError)
    cobs_errors: Out(16)
    length_errors: Out(16)
    crc_errors: Out(16)

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.max_payload = _check_max_payload(max_payload)
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        depth = self.max_payload + CRC_BYTES
        m.submodules.buffer = buffer = Memory(shape=8, depth=depth, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port()
        m.submodules.crc = checker = CRC_PARAMETERS.create()

        in_frame = Signal()                # bytes arrived since the last delimiter
        remaining = Signal(range(0xFF))    # data bytes left in the current COBS block
        zero_pending = Signal()            # the previous block's code was below 0xFF
        count = Signal(range(depth + 2))   # decoded bytes; depth + 1 stands for "too many"

        # A decoded byte (a data byte or an implied zero) goes to the buffer and the CRC.
        put = Signal()
        put_data = Signal(8)
        m.d.comb += [
            wr.addr.eq(count),
            wr.data.eq(put_data),
            wr.en.eq(put & (count < depth)),
            checker.data.eq(put_data),
            checker.valid.eq(put),
        ]
        with m.If(put & (count <= depth)):
            m.d.sync += count.eq(count + 1)

        m.d.sync += self.error.eq(0)

        def drop(kind, counter):
            m.d.sync += [
                self.error.eq(1),
                self.error_kind.eq(kind),
                _saturating_increment(counter),
            ]

        send_len = Signal(range(self.max_payload + 1))
        send_idx = Signal(range(self.max_payload + 1))
        last = Signal()
        # The output register is free at the next edge: empty, or its byte is taken now.
        load = ~self.o.valid | self.o.ready
        fetch = Signal()
        m.d.comb += [
            rd.addr.eq(send_idx),
            rd.en.eq(fetch),  # rd.data holds the offered byte while fetch is low
            self.o.payload.data.eq(rd.data),
            self.o.payload.last.eq(last),
        ]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("RECEIVE"):
                m.d.comb += self.i.ready.eq(1)
                byte = self.i.payload
                with m.If(self.i.valid):
                    with m.If(byte == DELIMITER):
                        m.d.sync += [
                            in_frame.eq(0),
                            remaining.eq(0),
                            zero_pending.eq(0),
                            count.eq(0),
                        ]
                        m.d.comb += checker.start.eq(1)
                        with m.If(in_frame):  # else an empty frame: nothing to judge
                            with m.If(remaining != 0):
                                drop(FrameError.COBS, self.cobs_errors)
                            with m.Elif((count < CRC_BYTES + 1) | (count > depth)):
                                drop(FrameError.LENGTH, self.length_errors)
                            with m.Elif(~checker.match_detected):
                                drop(FrameError.CRC, self.crc_errors)
                            with m.Else():
                                m.d.sync += [send_len.eq(count - CRC_BYTES), send_idx.eq(0)]
                                m.next = "SEND"
                    with m.Elif(remaining == 0):  # a code byte
                        m.d.sync += [
                            in_frame.eq(1),
                            remaining.eq(byte - 1),
                            zero_pending.eq(byte != 0xFF),
                        ]
                        m.d.comb += [put.eq(zero_pending), put_data.eq(0)]
                    with m.Else():
                        m.d.sync += remaining.eq(remaining - 1)
                        m.d.comb += [put.eq(1), put_data.eq(byte)]
            with m.State("SEND"):
                with m.If(load):
                    with m.If(send_idx != send_len):
                        m.d.comb += fetch.eq(1)
                        m.d.sync += [
                            self.o.valid.eq(1),
                            last.eq(send_idx == send_len - 1),
                            send_idx.eq(send_idx + 1),
                        ]
                    with m.Else():
                        m.next = "RECEIVE"

        return m


class _Phase(enum.Enum, shape=3):
    # Where FrameEncoder's next byte to encode comes from.
    PAYLOAD = 0
    CRC_HIGH = 1
    CRC_LOW = 2
    CLOSE = 3   # all bytes taken: close the open block
    DONE = 4    # the final block is being sent: the delimiter follows


class FrameEncoder(wiring.Component):
    """Encodes the payload bytes of each frame on ``i`` into wire bytes on ``o``.

    For a payload of 1 to ``max_payload`` bytes, the output is exactly
    :func:`encode_frame(payload) <encode_frame>`: COBS blocks of payload and CRC, then 0x00. A COBS
    code byte gives the distance to the next zero, so each block is collected in a buffer of
    ``min(254, max_payload + CRC_BYTES)`` bytes before its code byte and data go out.

    A frame longer than ``max_payload`` is aborted, never cut short silently: at its byte
    ``max_payload + 1`` the encoder sends ``0x02 0x00`` (a code byte pointing past the delimiter, a
    COBS error for any receiver), counts it in ``length_errors`` and discards the rest of the frame
    up to its ``last`` byte.

    Members
    -------
    i : ``In(stream.Signature(FRAME_BYTE))``
        Payload bytes; ``last`` marks the final byte of a frame.
    o : ``Out(stream.Signature(8))``
        Wire bytes (e.g. to :class:`~spinemu.hdl.uart.UARTTx`).
    length_errors : ``Out(16)``
        Frames aborted for being longer than ``max_payload`` (saturating).
    """

    i: In(stream.Signature(FRAME_BYTE))
    o: Out(stream.Signature(8))
    length_errors: Out(16)

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.max_payload = _check_max_payload(max_payload)
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        depth = min(_COBS_MAX_RUN, self.max_payload + CRC_BYTES)
        m.submodules.buffer = buffer = Memory(shape=8, depth=depth, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port()
        m.submodules.crc = generator = CRC_PARAMETERS.create()

        phase = Signal(_Phase)
        taken = Signal(range(self.max_payload + 1))  # payload bytes of this frame so far
        drain = Signal()                             # discard input up to `last` after an abort
        n = Signal(range(depth + 1))                 # bytes in the open block
        code = Signal(8)                             # code byte of the block to send
        idx = Signal(range(depth + 1))               # next block byte to send

        # The output register: a code byte or delimiter from `out_byte`, or a block byte from
        # the buffer's read port, which holds its data while `fetch` is low.
        out_byte = Signal(8)
        out_from_buffer = Signal()
        fetch = Signal()
        load = ~self.o.valid | self.o.ready
        m.d.comb += [
            rd.addr.eq(idx),
            rd.en.eq(fetch),
            self.o.payload.eq(Mux(out_from_buffer, rd.data, out_byte)),
        ]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def emit(byte):
            m.d.sync += [self.o.valid.eq(1), out_byte.eq(byte), out_from_buffer.eq(0)]

        # One byte a cycle into the open block: a payload byte, a CRC byte, or (CLOSE) the end
        # of the frame, which closes the block as a zero byte would.
        byte = Signal(8)
        valid = Signal()
        with m.Switch(phase):
            with m.Case(_Phase.PAYLOAD):
                m.d.comb += [byte.eq(self.i.payload.data),
                             valid.eq(self.i.valid & (taken != self.max_payload))]
            with m.Case(_Phase.CRC_HIGH):
                m.d.comb += [byte.eq(generator.crc[8:16]), valid.eq(1)]
            with m.Case(_Phase.CRC_LOW):
                m.d.comb += [byte.eq(generator.crc[0:8]), valid.eq(1)]
            with m.Case(_Phase.CLOSE):
                m.d.comb += valid.eq(1)     # byte 0: close the block
        closing = (phase == _Phase.PAYLOAD) & self.i.payload.last

        with m.FSM():
            with m.State("FILL"):
                with m.If(phase == _Phase.PAYLOAD):
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid & (taken == self.max_payload)):
                        m.d.sync += [
                            _saturating_increment(self.length_errors),
                            drain.eq(~self.i.payload.last),
                        ]
                        m.next = "ABORT"
                    with m.If(valid):
                        m.d.sync += taken.eq(taken + 1)
                        m.d.comb += [generator.data.eq(byte), generator.valid.eq(1)]
                with m.If(valid):
                    # PAYLOAD's last byte, the CRC bytes and CLOSE each move the phase on.
                    with m.If(closing | (phase != _Phase.PAYLOAD)):
                        m.d.sync += phase.as_value().eq(phase.as_value() + 1)
                    with m.If(byte == 0):
                        m.d.sync += code.eq(n + 1)
                        m.next = "CODE"
                    with m.Else():
                        m.d.comb += [wr.addr.eq(n), wr.data.eq(byte), wr.en.eq(1)]
                        m.d.sync += n.eq(n + 1)
                        if depth == _COBS_MAX_RUN:
                            with m.If(n == _COBS_MAX_RUN - 1):
                                m.d.sync += code.eq(0xFF)
                                m.next = "CODE"
            with m.State("CODE"):
                with m.If(load):
                    emit(code)
                    m.d.sync += idx.eq(0)
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(idx == n):
                    m.d.sync += n.eq(0)
                    with m.If(phase == _Phase.DONE):
                        m.next = "DELIMIT"
                    with m.Else():
                        m.next = "FILL"
                with m.Elif(load):
                    m.d.comb += fetch.eq(1)
                    m.d.sync += [self.o.valid.eq(1), out_from_buffer.eq(1), idx.eq(idx + 1)]
            with m.State("ABORT"):
                with m.If(load):
                    emit(0x02)
                    m.d.sync += n.eq(0)
                    m.next = "DELIMIT"
            with m.State("DELIMIT"):
                with m.If(load):
                    emit(DELIMITER)
                    m.d.comb += generator.start.eq(1)
                    m.d.sync += [phase.eq(_Phase.PAYLOAD), taken.eq(0)]
                    with m.If(drain):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "FILL"
            with m.State("DRAIN"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid & self.i.payload.last):
                    m.d.sync += drain.eq(0)
                    m.next = "FILL"

        return m

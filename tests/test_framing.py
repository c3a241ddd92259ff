# amaranth: UnusedElaboratable=no
"""Frame codec: the Python reference (COBS, CRC, frames, splitter) and the gateware decoder and
encoder against it, under random input gaps and output backpressure."""

import collections
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from spinemu.hdl.framing import (
    CRC_ALGORITHM,
    CRC_BYTES,
    CRC_PARAMETERS,
    FrameCOBSError,
    FrameCRCError,
    FrameDecodeError,
    FrameDecoder,
    FrameEmptyError,
    FrameEncoder,
    FrameError,
    FrameSplitter,
    FrameTooLongError,
    cobs_decode,
    cobs_encode,
    decode_frame,
    encode_frame,
    max_encoded_length,
)
from spinemu.sim.streams import receive, run, send

# --- helpers -----------------------------------------------------------------------------------

def nonzero(rng, n):
    return bytes(rng.randrange(1, 256) for _ in range(n))


def random_payload(rng, max_payload):
    """A payload of 1..max_payload bytes in one of the shapes that stress COBS."""
    n = rng.choice([1, max_payload, rng.randint(1, max_payload)])
    style = rng.choice(["uniform", "sparse zeros", "dense zeros", "all zeros", "no zeros"])
    if style == "uniform":
        return bytes(rng.randrange(256) for _ in range(n))
    if style == "all zeros":
        return bytes(n)
    if style == "no zeros":
        return nonzero(rng, n)
    p_zero = 0.02 if style == "sparse zeros" else 0.5
    return bytes(0 if rng.random() < p_zero else rng.randrange(1, 256) for _ in range(n))


def edge_payloads(rng, max_payload):
    """Payloads at the COBS block boundaries: zero-free runs of 253..255 and 508 bytes (some
    running on into the CRC), all zeros, a single byte, and the longest payload."""
    cases = [b"\x00", b"\x01", bytes(max_payload), nonzero(rng, max_payload)]
    for length in (252, 253, 254, 255, 508):
        if length <= max_payload:
            cases.append(nonzero(rng, length))
        if length + 2 <= max_payload:
            cases.append(b"\x00" + nonzero(rng, length) + b"\x00")
    return cases


def blocks(encoded):
    """Split COBS data into its blocks (code byte and data)."""
    out, pos = [], 0
    while pos < len(encoded):
        out.append(encoded[pos:pos + encoded[pos]])
        pos += encoded[pos]
    return out


def unchecked_frame(payload):
    """A well-formed frame for any payload length, even one encode_frame refuses."""
    return cobs_encode(payload + CRC_PARAMETERS.compute(payload).to_bytes(CRC_BYTES, "big")) + b"\0"


def expected_from_stream(wire, max_payload):
    """What a decoder must make of ``wire``: good payloads and the kinds of dropped frames."""
    payloads, kinds = [], []
    for piece in wire.split(b"\0")[:-1]:
        if not piece:
            continue
        try:
            payloads.append(decode_frame(piece, max_payload))
        except FrameDecodeError as error:
            kinds.append(error.kind)
    return payloads, kinds


def frame_items(payload):
    return [{"data": byte, "last": k == len(payload) - 1} for k, byte in enumerate(payload)]


def join_frames(items):
    """Group received FRAME_BYTE items into payloads at ``last``."""
    frames, current = [], bytearray()
    for item in items:
        current.append(item.data)
        if item.last:
            frames.append(bytes(current))
            current.clear()
    return frames


def simulate_decoder(wire, max_payload, seed, idle=0.3, stall=0.3):
    """Feed ``wire`` to a FrameDecoder and check payloads, error strobes and counters against
    decode_frame. ``wire`` must end with a good frame, so that every error has been reported by
    the time the last payload is out."""
    payloads, kinds = expected_from_stream(wire, max_payload)
    assert payloads and decode_frame(wire[:-1].split(b"\0")[-1], max_payload) == payloads[-1]
    dut = FrameDecoder(max_payload)
    rng = random.Random(seed)
    strobes = []

    async def source(ctx):
        await send(ctx, dut.i, wire, random.Random(rng.random()), idle)

    async def sink(ctx):
        items = await receive(ctx, dut.o, sum(map(len, payloads)), random.Random(rng.random()),
                              stall)
        assert join_frames(items) == payloads
        await ctx.tick()  # let the last strobe, if any, be seen
        counts = collections.Counter(kinds)
        assert ctx.get(dut.cobs_errors) == counts[FrameError.COBS]
        assert ctx.get(dut.length_errors) == counts[FrameError.LENGTH]
        assert ctx.get(dut.crc_errors) == counts[FrameError.CRC]

    async def monitor(ctx):
        async for _, _, strobe, kind in ctx.tick().sample(dut.error, dut.error_kind):
            if strobe:
                strobes.append(kind)

    run(dut, source, sink, background=[monitor],
        cycles=20 * (len(wire) + sum(map(len, payloads))) + 1000)
    assert strobes == kinds
    return kinds


def simulate_encoder(payloads, max_payload, seed, expected, idle=0.3, stall=0.3):
    dut = FrameEncoder(max_payload)
    rng = random.Random(seed)
    got = []

    async def source(ctx):
        items = [item for payload in payloads for item in frame_items(payload)]
        await send(ctx, dut.i, items, random.Random(rng.random()), idle)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o, len(expected), random.Random(rng.random()), stall))
        for _ in range(4):  # nothing more comes out
            assert not (await ctx.tick().sample(dut.o.valid))[2]
        assert ctx.get(dut.length_errors) == 0

    run(dut, source, sink, cycles=20 * (len(expected) + sum(map(len, payloads))) + 1000)
    assert bytes(got) == expected


# --- CRC and COBS reference --------------------------------------------------------------------

def test_crc_is_crc16_genibus():
    """The parameters and check value that docs/framing.md states."""
    assert (CRC_ALGORITHM.crc_width, CRC_ALGORITHM.polynomial, CRC_ALGORITHM.initial_crc) \
        == (16, 0x1021, 0xFFFF)
    assert (CRC_ALGORITHM.reflect_input, CRC_ALGORITHM.reflect_output) == (False, False)
    assert CRC_ALGORITHM.xor_output == 0xFFFF
    assert CRC_PARAMETERS.compute(b"123456789") == 0xD64E
    assert CRC_PARAMETERS.residue() == 0x1D0F


def test_appended_zeros_fail_the_crc():
    # A delimiter damaged into 0x01 makes COBS append a zero byte to the frame. With no output
    # XOR the CRC register would stay at a zero residue and the longer frame would pass.
    rng = random.Random(7)
    for _ in range(200):
        payload = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        frame = encode_frame(payload)
        assert frame[-1] == 0
        damaged = frame[:-1] + b"\x01"   # the delimiter, hit by one bit error
        with pytest.raises(FrameDecodeError):
            decode_frame(damaged)


@pytest.mark.parametrize("data, encoded", [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255)) + b"\x01"),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
])
def test_cobs_vectors(data, encoded):
    """Examples from Cheshire & Baker and the usual COBS test vectors (the paper's form, with a
    final 0x01 block after a closing 254-byte run)."""
    assert cobs_encode(data) == encoded
    assert cobs_decode(encoded) == data


def test_cobs_decode_accepts_short_form():
    """Encoders that leave out the final 0x01 after a 254-byte run decode the same."""
    assert cobs_decode(b"\xff" + bytes(range(1, 255))) == bytes(range(1, 255))


def test_cobs_round_trip():
    rng = random.Random(1)
    for _ in range(2000):
        data = random_payload(rng, rng.choice([8, 300, 1000]))
        encoded = cobs_encode(data)
        assert 0 not in encoded
        assert len(encoded) <= len(data) + 1 + len(data) // 254
        assert cobs_decode(encoded) == data
    for data in edge_payloads(rng, 600):
        assert cobs_decode(cobs_encode(data)) == data


@pytest.mark.parametrize("encoded, message", [
    (b"", "empty"),
    (b"\x02\x11\x00\x01", "0x00 at offset 2"),
    (b"\x05\x11\x22", "0x05 at offset 0"),
    (b"\x02\x11\x03\x22", "0x03 at offset 2"),
    (b"\xff" + bytes(range(1, 254)), "0xff at offset 0"),
])
def test_cobs_decode_rejects(encoded, message):
    with pytest.raises(ValueError, match=message):
        cobs_decode(encoded)


# --- frames ------------------------------------------------------------------------------------

def test_frame_layout():
    payload = b"\x10\x00\x20"
    check = CRC_PARAMETERS.compute(payload)
    assert encode_frame(payload) == (b"\x02\x10" + bytes([4, 0x20, check >> 8, check & 0xFF])
                                     + b"\x00")


def test_frame_round_trip():
    rng = random.Random(2)
    for max_payload in (1, 16, 300):
        cases = [random_payload(rng, max_payload) for _ in range(500)]
        for payload in cases + edge_payloads(rng, max_payload):
            wire = encode_frame(payload, max_payload)
            assert wire[-1] == 0 and 0 not in wire[:-1]
            assert len(wire) - 1 <= max_encoded_length(max_payload)
            assert decode_frame(wire[:-1], max_payload) == payload


def test_max_encoded_length_is_reached():
    rng = random.Random(3)
    for max_payload in (1, 250, 252, 300, 600):
        worst = max(len(encode_frame(nonzero(rng, max_payload), max_payload)) - 1
                    for _ in range(20))
        assert worst == max_encoded_length(max_payload)


@pytest.mark.parametrize("length", [0, 17])
def test_encode_frame_refuses_length(length):
    with pytest.raises(ValueError, match="1 to 16 bytes"):
        encode_frame(bytes(length), max_payload=16)


def test_decode_frame_errors():
    good = encode_frame(b"spin")[:-1]
    with pytest.raises(FrameEmptyError):
        decode_frame(b"")
    with pytest.raises(FrameCOBSError):
        decode_frame(b"\x09" + good[1:])
    with pytest.raises(FrameEmptyError):
        decode_frame(cobs_encode(CRC_PARAMETERS.compute(b"").to_bytes(2, "big")))
    with pytest.raises(FrameEmptyError):
        decode_frame(b"\x02\x55")
    with pytest.raises(FrameTooLongError):
        decode_frame(unchecked_frame(bytes(17))[:-1], max_payload=16)
    with pytest.raises(FrameCRCError):
        decode_frame(good[:1] + bytes([good[1] ^ 0x01]) + good[2:])
    for error, kind in [(FrameCOBSError, FrameError.COBS), (FrameEmptyError, FrameError.LENGTH),
                        (FrameTooLongError, FrameError.LENGTH), (FrameCRCError, FrameError.CRC)]:
        assert issubclass(error, ValueError) and error.kind is kind


def test_splitter_any_chunking():
    rng = random.Random(4)
    payloads = [random_payload(rng, 300) for _ in range(200)]
    wire = b"\0" + b"".join(encode_frame(p, 300) + b"\0" * rng.randrange(2) for p in payloads)
    splitter = FrameSplitter(300)
    frames, pos = [], 0
    while pos < len(wire):
        step = rng.choice([1, 2, 7, 100, 1000])
        frames += splitter.feed(wire[pos:pos + step])
        pos += step
    assert [decode_frame(frame, 300) for frame in frames] == payloads


def test_splitter_bounds_garbage():
    splitter = FrameSplitter(16)
    keep = max_encoded_length(16) + 1
    assert splitter.feed(b"\x01" * 5000) == []
    assert splitter.feed(b"\x01" * 5000 + b"\0" + encode_frame(b"ok", 16)) \
        == [b"\x01" * keep, encode_frame(b"ok", 16)[:-1]]
    with pytest.raises(FrameTooLongError):
        decode_frame(b"\x01" * keep, 16)


# --- gateware decoder --------------------------------------------------------------------------

@pytest.mark.parametrize("max_payload", [16, 300])
def test_decoder_good_frames(max_payload):
    """encode_frame output through the decoder gives every payload back, byte for byte."""
    rng = random.Random(max_payload)
    count = 150 if max_payload < 100 else 10
    payloads = edge_payloads(rng, max_payload) + [random_payload(rng, max_payload)
                                                   for _ in range(count)]
    rng.shuffle(payloads)
    wire = b"".join(encode_frame(p, max_payload) for p in payloads)
    assert simulate_decoder(wire, max_payload, seed=max_payload) == []


def corrupt(rng, frame, max_payload):
    """A damaged or ill-formed frame (with its delimiter), and a name for the damage."""
    how = rng.choice(["flip", "truncate", "extra", "no delimiter", "zero length", "too long",
                      "overflow", "bad code"])
    if how == "flip":
        k = rng.randrange(len(frame) - 1)
        return frame[:k] + bytes([frame[k] ^ (1 << rng.randrange(8))]) + frame[k + 1:]
    if how == "truncate":
        return frame[:rng.randrange(1, len(frame) - 1)] + b"\0"
    if how == "extra":
        k = rng.randrange(len(frame))
        return frame[:k] + bytes([rng.randrange(1, 256)]) + frame[k:]
    if how == "no delimiter":
        return frame[:-1]   # runs into the next frame, which is lost with it
    if how == "zero length":
        return unchecked_frame(b"")
    if how == "too long":
        return unchecked_frame(random_payload(rng, max_payload) + b"\x01")
    if how == "overflow":
        return unchecked_frame(nonzero(rng, max_payload + rng.randrange(1, 300)))
    return bytes([rng.randrange(3, 256)]) + b"\x11\0"  # code byte pointing past the delimiter


def test_decoder_bad_frames():
    """Every kind of damage is counted as decode_frame classifies it, and the decoder resyncs: each
    good frame that follows a bad one still comes out."""
    max_payload = 16
    rng = random.Random(5)
    wire = bytearray()
    for _ in range(300):
        frame = encode_frame(random_payload(rng, max_payload), max_payload)
        wire += corrupt(rng, frame, max_payload) if rng.random() < 0.5 else frame
    wire += b"\0" + encode_frame(b"last", max_payload)  # the 0x00 ends a frame left open
    kinds = simulate_decoder(bytes(wire), max_payload, seed=5)
    assert set(kinds) == set(FrameError), "every error kind exercised"


def test_decoder_specific_errors():
    """Hand-made frames, each followed by a good one."""
    good = encode_frame(b"\x42")
    crc_bad = bytearray(encode_frame(b"\x42\x43"))
    crc_bad[1] ^= 0x10
    wire = (b"\0\0" + good                  # empty frames: ignored
            + b"\x05\x11\x22\0" + good      # code byte points past the delimiter
            + b"\x02\x11\0" + good          # decodes to 1 byte: no payload
            + unchecked_frame(b"") + good   # payload of 0 bytes
            + unchecked_frame(bytes(17)) + good
            + bytes(crc_bad) + good
            + encode_frame(bytes(range(1, 17)), 16))
    kinds = simulate_decoder(wire, 16, seed=6)
    assert kinds == [FrameError.COBS, FrameError.LENGTH, FrameError.LENGTH, FrameError.LENGTH,
                     FrameError.CRC]


def test_decoder_counters_saturate():
    dut = FrameDecoder(4)

    async def bench(ctx):
        ctx.set(dut.crc_errors, 0xFFFE)
        await send(ctx, dut.i, b"\x02\x11\x03\x22\x33\0" * 3, random.Random(7), idle=0)
        await ctx.tick()
        assert ctx.get(dut.crc_errors) == 0xFFFF

    run(dut, bench, cycles=1000)


# --- gateware encoder --------------------------------------------------------------------------

@pytest.mark.parametrize("max_payload", [1, 16, 300])
def test_encoder_matches_encode_frame(max_payload):
    rng = random.Random(10 + max_payload)
    count = {1: 60, 16: 120, 300: 8}[max_payload]
    payloads = edge_payloads(rng, max_payload) + [random_payload(rng, max_payload)
                                                   for _ in range(count)]
    rng.shuffle(payloads)
    expected = b"".join(encode_frame(p, max_payload) for p in payloads)
    simulate_encoder(payloads, max_payload, 10 + max_payload, expected)


def test_encoder_aborts_overlong_frame():
    """A frame past max_payload ends in ``02 00``, a COBS error for the receiver, and the next frame
    is encoded normally."""
    max_payload = 8
    rng = random.Random(11)
    frames = [b"\x01\x02", b"\x11\x00\x22\x33\x00\x44\x55\x66\x77\x88\x99", b"\x00" * 20,
              nonzero(rng, 30), b"\x05"]
    expected = bytearray()
    for payload in frames:
        if len(payload) <= max_payload:
            expected += encode_frame(payload, max_payload)
        else:
            # the blocks closed before byte max_payload + 1; the open one is discarded
            aborted = b"".join(blocks(cobs_encode(payload[:max_payload]))[:-1]) + b"\x02"
            with pytest.raises(FrameCOBSError):
                decode_frame(aborted, max_payload)
            expected += aborted + b"\0"
    dut = FrameEncoder(max_payload)
    got = []

    async def source(ctx):
        items = [item for payload in frames for item in frame_items(payload)]
        await send(ctx, dut.i, items, random.Random(12), idle=0.3)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o, len(expected), random.Random(13), stall=0.3))
        assert ctx.get(dut.length_errors) == 3

    run(dut, source, sink, cycles=20 * (len(expected) + sum(map(len, frames))) + 1000)
    assert bytes(got) == bytes(expected)


def test_encoder_into_decoder():
    """The two blocks joined with wiring.connect: payloads in, the same payloads out."""
    max_payload = 40
    rng = random.Random(14)
    payloads = [random_payload(rng, max_payload) for _ in range(30)]
    m = Module()
    m.submodules.enc = enc = FrameEncoder(max_payload)
    m.submodules.dec = dec = FrameDecoder(max_payload)
    wiring.connect(m, enc.o, dec.i)

    async def source(ctx):
        items = [item for payload in payloads for item in frame_items(payload)]
        await send(ctx, enc.i, items, random.Random(15), idle=0.3)

    async def sink(ctx):
        items = await receive(ctx, dec.o, sum(map(len, payloads)), random.Random(16), stall=0.3)
        assert join_frames(items) == payloads
        assert ctx.get(dec.crc_errors) + ctx.get(dec.cobs_errors) + ctx.get(dec.length_errors) == 0

    run(m, source, sink, cycles=60 * sum(map(len, payloads)) + 1000)


@pytest.mark.parametrize("cls", [FrameDecoder, FrameEncoder])
@pytest.mark.parametrize("max_payload", [0, -3, 2.5, True])
def test_max_payload_refused(cls, max_payload):
    with pytest.raises(ValueError, match="max_payload"):
        cls(max_payload)

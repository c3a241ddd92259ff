"""The receive window (``hdl/rx_window.py``) in the Amaranth simulator: bytes come out in order under
random idle cycles and back-pressure; a full window drops exactly what the overflow rule says and
counts the lost frames; the ABORT matcher fires for ABORT_FRAME's exact bytes only, whatever the
FIFO is doing; flush empties it."""

import random

import pytest

from protocol_traffic import window_model
from spinemu.hdl.framing import encode_frame
from spinemu.hdl.protocol import ABORT_FRAME, FORMAT_VERSION, Opcode, request
from spinemu.hdl.rx_window import ReceiveWindow
from spinemu.sim.streams import receive, run


def abort_model(data):
    """The indices of the delimiters in ``data`` that end an ABORT_FRAME (the start counting as
    after a delimiter)."""
    ends, start = [], 0
    for at, byte in enumerate(data):
        if byte == 0:
            if bytes(data[start:at + 1]) == ABORT_FRAME:
                ends.append(at)
            start = at + 1
    return ends


async def feed(ctx, dut, data, rng, idle, events):
    """Offer ``data`` one byte at a time (the window is always ready), with random idle cycles;
    record in ``events`` the index of the last byte offered at each cycle with ``abort`` or
    ``overflow`` high."""
    async def tick(index):
        await ctx.tick()
        for name in ("abort", "overflow"):
            if ctx.get(getattr(dut, name)):
                events[name].append(index)

    for index, byte in enumerate(data):
        assert ctx.get(dut.i.ready)
        while rng.random() < idle:
            await tick(index - 1)
        ctx.set(dut.i.payload, byte)
        ctx.set(dut.i.valid, 1)
        await tick(index)
        ctx.set(dut.i.valid, 0)
    for _ in range(3):
        await tick(len(data) - 1)


@pytest.mark.parametrize("seed, idle, stall", [(1, 0.0, 0.0), (2, 0.5, 0.3), (3, 0.2, 0.7)])
def test_bytes_come_out_in_order_under_stalls(seed, idle, stall):
    rng = random.Random(seed)
    data = [rng.choice([0, rng.randrange(256)]) for _ in range(1500)]
    dut = ReceiveWindow(depth=2048)     # never full here
    events = {"abort": [], "overflow": []}
    got = []

    async def source(ctx):
        await feed(ctx, dut, data, random.Random(rng.random()), idle, events)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o, len(data), random.Random(rng.random()), stall))

    run(dut, source, sink, cycles=20_000)
    assert got == data
    assert events["overflow"] == []


def _frames(rng, count):
    """Frames of random lengths (some just a delimiter), as a host might send them."""
    data = []
    for _ in range(count):
        data += [rng.randrange(1, 256) for _ in range(rng.choice([0, 1, 3, 5, 9]))] + [0]
    return data


@pytest.mark.parametrize("depth", [2, 4, 16])
def test_a_full_window_drops_up_to_the_next_delimiter_that_fits_and_counts_lost_frames(depth):
    """Nothing is taken out while three bursts arrive, the window drained in between: each burst
    keeps what the rule keeps, the counter and the pulses count the lost frames."""
    rng = random.Random(depth)
    bursts = [_frames(rng, 3 * depth), [7, 7, 0, 0, 9] + _frames(rng, depth), [0, 3, 0] * depth]
    dut = ReceiveWindow(depth=depth)
    events = {"abort": [], "overflow": []}
    got, expect, counted = [], [], 0
    state = (depth, False, False)

    async def bench(ctx):
        nonlocal state, counted
        ctx.set(dut.o.ready, 0)
        for burst in bursts:
            kept, lost, state = window_model(burst, *state)
            expect.extend(kept)
            counted += lost
            await feed(ctx, dut, burst, rng, 0.3, events)
            assert ctx.get(dut.overflows) == counted
            # drain, then the window has room again (the dropping goes on, as the model says)
            got.extend(await receive(ctx, dut.o, len(kept), rng, 0.2))
            await ctx.tick().repeat(3)
            assert not ctx.get(dut.o.valid)
            state = (depth, *state[1:])

    run(dut, bench, cycles=50_000)
    assert got == expect
    assert len(events["overflow"]) == counted > 0


def _near_misses():
    """ABORT_FRAME's bytes changed one at a time, cut short, lengthened, and another version's."""
    body = ABORT_FRAME[:-1]
    misses = [encode_frame(request(0, Opcode.ABORT, bytes([FORMAT_VERSION - 1]))),
              encode_frame(request(1, Opcode.ABORT, bytes([FORMAT_VERSION]))),
              body[:-1] + b"\0", body[1:] + b"\0", body + b"\1\0", b"\1" + body + b"\0"]
    for at in range(len(body)):
        misses.append(body[:at] + bytes([body[at] ^ 0x10]) + body[at + 1:] + b"\0")
    return misses


@pytest.mark.parametrize("full", [False, True], ids=["draining", "full"])
def test_abort_is_matched_on_the_line_for_its_exact_bytes_only(full):
    """ABORT_FRAME at the very start, twice in a row, after a delimiter, among near misses and
    garbage; with the window draining, or full and dropping (depth 4, nothing taken)."""
    rng = random.Random(4)
    pieces = [ABORT_FRAME, ABORT_FRAME] + _near_misses() * 2 + [b"\0" + ABORT_FRAME] * 4
    rng.shuffle(pieces)
    data = list(ABORT_FRAME * 2)   # at the start, before any delimiter, and twice in a row
    for piece in pieces:
        data += list(piece) + [rng.randrange(1, 256) for _ in range(rng.choice([0, 0, 2]))]
    data += [0] + list(ABORT_FRAME[:3])     # a prefix at the end: no abort
    dut = ReceiveWindow(depth=4 if full else 4096)
    events = {"abort": [], "overflow": []}

    async def source(ctx):
        await feed(ctx, dut, data, rng, 0.3, events)

    async def sink(ctx):
        if not full:
            await receive(ctx, dut.o, len(data), random.Random(5), 0.3)

    run(dut, source, sink, cycles=20_000)
    ends = abort_model(data)
    assert events["abort"] == ends
    assert len(ends) >= 4 and ends[:2] == [len(ABORT_FRAME) - 1, 2 * len(ABORT_FRAME) - 1]
    assert bool(events["overflow"]) == full


def test_flush_empties_the_window_and_ends_the_dropping():
    dut = ReceiveWindow(depth=4)
    events = {"abort": [], "overflow": []}
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        await feed(ctx, dut, [1, 2, 3, 4, 5, 6], random.Random(0), 0, events)   # 5, 6 dropped
        assert ctx.get(dut.o.valid) and ctx.get(dut.overflows) == 1
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        await ctx.tick()
        assert not ctx.get(dut.o.valid)
        await feed(ctx, dut, [7, 8, 0, 9], random.Random(0), 0, events)   # kept: no dropping
        got.extend(await receive(ctx, dut.o, 4, random.Random(1), 0.5))
        await ctx.tick().repeat(3)
        assert not ctx.get(dut.o.valid) and ctx.get(dut.overflows) == 1

    run(dut, bench, cycles=1000)
    assert got == [7, 8, 0, 9]


@pytest.mark.parametrize("depth", [1, 3, 1000, 1.5])
def test_a_window_holds_a_power_of_two_bytes(depth):
    with pytest.raises(ValueError, match="power of two"):
        ReceiveWindow(depth=depth)

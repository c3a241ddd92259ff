# amaranth: UnusedElaboratable=no
"""UART PHY: transmitter waveform, Tx->Rx loopback, and the receiver against a driven line: 2%
baud-rate error and line noise, at the divisors the boards use among others."""

import random

import pytest
from amaranth.hdl import Module

from spinemu.firmware.boards import BOARDS
from spinemu.hdl.uart import UARTRx, UARTTx, divisor_for
from spinemu.sim.streams import receive, run, send

#: The clock cycles per bit of the boards' default UART rates (4 on the iCEBreaker, 12 on the ULX3S).
BOARD_DIVISORS = sorted({divisor_for(b.clock_hz, b.baud) for b in BOARDS.values()})


def frame_bits(byte, stop=1):
    """Line levels of one 8N1 character: start, 8 data bits LSB first, stop."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


class Line:
    """Drives a serial line from a testbench, at a bit time that need not be a whole number of
    cycles."""

    def __init__(self, ctx, rx, bit_cycles):
        self.ctx, self.rx, self.bit_cycles = ctx, rx, bit_cycles
        self.time = 0.0  # in cycles, exact
        self.now = 0     # in cycles, simulated

    async def level(self, value, bits):
        self.ctx.set(self.rx, value)
        self.time += bits * self.bit_cycles
        cycles = round(self.time) - self.now
        if cycles > 0:
            await self.ctx.tick().repeat(cycles)
            self.now += cycles

    async def char(self, byte, stop=1):
        for bit in frame_bits(byte, stop):
            await self.level(bit, 1)


# --- parameters --------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [3, 0, -1])
def test_divisor_too_small(divisor):
    with pytest.raises(ValueError, match="at least 4"):
        UARTTx(divisor)
    with pytest.raises(ValueError, match="at least 4"):
        UARTRx(divisor)


def test_divisor_not_int():
    with pytest.raises(TypeError):
        UARTRx(16.0)


def test_divisor_for():
    assert divisor_for(12_000_000, 115_200) == 104   # 0.16% off
    assert divisor_for(48_000_000, 3_000_000) == 16  # exact
    assert divisor_for(36_000_000, 3_000_000) == 12  # the ULX3S: exact
    assert divisor_for(12_000_000, 3_000_000) == 4   # the iCEBreaker: exact
    with pytest.raises(ValueError, match="off"):
        divisor_for(1_000_000, 220_000)              # 5 cycles: 9% off
    with pytest.raises(ValueError, match="at least"):
        divisor_for(1_000_000, 400_000)


# --- transmitter -------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 7])
def test_tx_waveform(divisor):
    """Back-to-back bytes give exactly start, 8 data bits LSB first, stop, ``divisor`` cycles
    each."""
    dut = UARTTx(divisor)
    data = [0x55, 0x00, 0xFF, 0xA3]
    trace = []

    async def source(ctx):
        await send(ctx, dut.i, data, random.Random(0), idle=0)
        await ctx.tick().repeat(10 * divisor)  # let the last character out

    async def probe(ctx):
        async for _, _, tx in ctx.tick().sample(dut.tx):
            trace.append(tx)

    run(dut, source, background=[probe], cycles=20 * divisor * len(data))
    expected = [1] + [bit for byte in data for bit in frame_bits(byte) for _ in range(divisor)]
    assert trace[:len(expected)] == expected


# --- loopback ----------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", sorted({4, 7, 16, *BOARD_DIVISORS}))
def test_loopback(divisor):
    """Random bytes through Tx->Rx, with random input gaps and output backpressure, come out
    intact."""
    rng = random.Random(divisor)
    count = 4800 // divisor
    data = [rng.randrange(256) for _ in range(count)]
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def source(ctx):
        await send(ctx, tx.i, data, random.Random(rng.random()), idle=0.3)

    async def sink(ctx):
        got.extend(await receive(ctx, rx.o, count, random.Random(rng.random()), stall=0.3))
        assert ctx.get(rx.frame_errors) == 0
        assert ctx.get(rx.overruns) == 0

    run(m, source, sink, cycles=40 * divisor * count)
    assert got == data


# --- receiver against a driven line ------------------------------------------------------------

@pytest.mark.parametrize("divisor", sorted({4, 5, 7, 16, *BOARD_DIVISORS}))
@pytest.mark.parametrize("mismatch", [-0.02, +0.02])
def test_rx_baud_mismatch(divisor, mismatch):
    """The sender's bit time is 2% off the receiver's, with random idle time between characters."""
    rng = random.Random(divisor * 100 + round(mismatch * 100))
    data = [rng.randrange(256) for _ in range(150)]
    dut = UARTRx(divisor)
    got = []

    async def line(ctx):
        wire = Line(ctx, dut.rx, divisor * (1 + mismatch))
        await wire.level(1, 2)
        for byte in data:
            await wire.level(1, rng.uniform(0, 2))
            await wire.char(byte)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o, len(data), random.Random(1), stall=0.3))
        assert ctx.get(dut.frame_errors) == 0
        assert ctx.get(dut.overruns) == 0

    run(dut, line, sink, cycles=20 * divisor * len(data))
    assert got == data


def test_rx_frame_error():
    """A low stop bit (then a short break) is counted, the byte dropped, and the next byte
    received."""
    divisor = 8
    dut = UARTRx(divisor)

    async def line(ctx):
        wire = Line(ctx, dut.rx, divisor)
        await wire.level(1, 2)
        await wire.char(0x3C)
        await wire.char(0xA5, stop=0)
        await wire.level(0, 3)       # break: counted once, not once per character time
        await wire.level(1, 1)
        await wire.char(0x96)
        await wire.level(1, 2)
        assert ctx.get(dut.frame_errors) == 1
        assert ctx.get(dut.overruns) == 0

    async def sink(ctx):
        assert await receive(ctx, dut.o, 2, random.Random(2), stall=0.3) == [0x3C, 0x96]

    run(dut, line, sink, cycles=2000)


def test_rx_glitch_ignored():
    """A low pulse shorter than half a bit is not a start bit."""
    divisor = 16
    dut = UARTRx(divisor)

    async def line(ctx):
        wire = Line(ctx, dut.rx, divisor)
        await wire.level(1, 1)
        await wire.level(0, 0.25)
        await wire.level(1, 2)
        await wire.char(0x42)
        await wire.level(1, 1)
        assert ctx.get(dut.frame_errors) == 0

    async def sink(ctx):
        assert await receive(ctx, dut.o, 1, random.Random(3), stall=0) == [0x42]

    run(dut, line, sink, cycles=2000)


def test_rx_overrun():
    """Bytes arriving while ``o`` is full are counted and dropped; the waiting byte is kept."""
    divisor = 6
    dut = UARTRx(divisor)

    async def line(ctx):
        wire = Line(ctx, dut.rx, divisor)
        await wire.level(1, 1)
        for byte in (0x11, 0x22, 0x33):
            await wire.char(byte)
        await wire.level(1, 1)
        assert ctx.get(dut.overruns) == 2
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x11
        assert await receive(ctx, dut.o, 1, random.Random(4), stall=0) == [0x11]
        await wire.char(0x44)
        await wire.level(1, 1)
        assert await receive(ctx, dut.o, 1, random.Random(5), stall=0) == [0x44]
        assert ctx.get(dut.overruns) == 2

    run(dut, line, cycles=2000)


def test_rx_counters_saturate():
    """Error counters stop at 0xFFFF instead of wrapping to zero."""
    divisor = 4
    dut = UARTRx(divisor)

    async def line(ctx):
        wire = Line(ctx, dut.rx, divisor)
        await wire.level(1, 1)
        ctx.set(dut.frame_errors, 0xFFFE)
        for _ in range(3):
            await wire.char(0x00, stop=0)
            await wire.level(1, 1)
        assert ctx.get(dut.frame_errors) == 0xFFFF

    run(dut, line, cycles=2000)


@pytest.mark.parametrize("divisor,mismatch", [(5, 0.0), (9, -0.02), (9, 0.02), (12, -0.02),
                                              (12, 0.02), (25, -0.02), (25, 0.02)])
def test_rx_line_noise(divisor, mismatch):
    """One-cycle glitches on the line, on idle time and inside characters (in a third of the bit
    times, at a random cycle), with the sender up to 2% off: every byte arrives and no glitch on
    the idle line starts a byte. A glitch next to a start edge moves the reads a cycle early or
    late; with the three samples' cycle either side and 2% over 9.5 bits that fits inside the bit
    from 9 cycles per bit on (5 with an exact rate). Below, see
    ``test_rx_one_glitch_per_character``."""
    rng = random.Random(divisor * 10 + round(mismatch * 100))
    data = [rng.randrange(256) for _ in range(200)]
    dut = UARTRx(divisor)
    got = []

    async def line(ctx):
        bit = divisor * (1 + mismatch)
        level, now, time = 1, 0, 0.0

        async def hold(value, bits, noisy=True):
            nonlocal level, now, time
            time += bits * bit
            cycles = round(time) - now
            # one glitch at a random cycle of this stretch, in a third of the bit times
            glitch = rng.randrange(cycles) if noisy and cycles > 2 and rng.random() < 0.33 else -1
            for c in range(cycles):
                ctx.set(dut.rx, value ^ (c == glitch))
                await ctx.tick()
            now += cycles
            level = value

        await hold(1, 2, noisy=False)
        for byte in data:
            await hold(1, rng.uniform(0.5, 2))
            for value in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                await hold(value, 1)
        await hold(1, 3)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o, len(data), random.Random(1), stall=0.2))

    run(dut, line, sink, cycles=30 * divisor * len(data))
    assert got == data


def test_rx_a_glitch_mid_bit_changes_nothing_that_one_sample_would():
    """A one-cycle glitch right at a bit's middle: the majority keeps the bit."""
    divisor = 8
    dut = UARTRx(divisor)

    async def line(ctx):
        wire = Line(ctx, dut.rx, divisor)
        await wire.level(1, 2)
        await wire.level(0, 1)                     # start bit
        for k in range(8):                         # 0x55, each bit flipped for one mid cycle
            value = (0x55 >> k) & 1
            await wire.level(value, 0.5)
            ctx.set(dut.rx, 1 - value)
            await ctx.tick()
            wire.now, wire.time = wire.now + 1, wire.time + 1
            await wire.level(value, 0.5 - 1 / divisor)
        await wire.level(1, 3)
        assert ctx.get(dut.frame_errors) == 0

    async def sink(ctx):
        assert await receive(ctx, dut.o, 1, random.Random(3), stall=0) == [0x55]

    run(dut, line, sink, cycles=400)


@pytest.mark.parametrize("divisor", sorted({4, *BOARD_DIVISORS}))
def test_rx_one_glitch_per_character(divisor):
    """At the exact rate, any one one-cycle glitch in a character, or in the three idle cycles
    before its start edge, changes nothing: tried at every cycle, for bytes with every kind of bit
    boundary. This is the noise a 4-cycle bit rides out (the iCEBreaker's 3 Mbaud at 12 MHz):
    with a glitch in every third bit time some characters are lost there."""
    patterns = [0x00, 0xFF, 0x55, 0xAA, 0x0F, 0xF0, 0x33, 0xCC, 0x01, 0x80, 0x7E, 0x81]
    positions = range(-3, 10 * divisor)       # cycles from the start edge
    cases = [(byte, at) for byte in patterns for at in positions]
    dut = UARTRx(divisor)

    async def line(ctx):
        for byte, at in cases:
            levels = [1] * 3 + [bit for bit in frame_bits(byte) for _ in range(divisor)]
            levels += [1] * (2 * divisor)     # idle: the receiver is back looking for a start
            levels[3 + at] ^= 1
            for level in levels:
                ctx.set(dut.rx, level)
                await ctx.tick()
        assert ctx.get(dut.frame_errors) == 0

    async def sink(ctx):
        got = await receive(ctx, dut.o, len(cases), random.Random(6), stall=0)
        assert got == [byte for byte, _ in cases]

    run(dut, line, sink, cycles=len(cases) * 14 * divisor)

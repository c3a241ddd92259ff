"""UART PHY: 8N1 serial transmitter and receiver with byte streams on the fabric side.

Line format (``docs/framing.md``): idle high, one start bit (low), 8 data bits least significant bit
first, one stop bit (high), no parity. Both ends count time in clock cycles: ``divisor`` cycles per
bit, chosen with :func:`divisor_for` from the clock and the baud rate.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import cdc, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "MAX_RATE_ERROR", "divisor_for", "UARTTx", "UARTRx"]

#: Fewest clock cycles per bit. The receiver reads each bit as the majority of three consecutive
#: samples, a cycle either side of the middle one, and knows where the start edge fell only to
#: within a cycle: at 4 cycles per bit the three samples cover three of the bit's four cycles, and
#: the sender may still be 2% fast or slow (:class:`UARTRx` says what noise it then rides out).
MIN_DIVISOR = 4

#: Largest relative baud-rate error :func:`divisor_for` accepts. Over the 9.5 bit times from the
#: start edge to the middle of the stop bit, both ends together may drift by less than half a bit
#: (about 5%); 2% per end leaves margin for the other end's error.
MAX_RATE_ERROR = 0.02


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"UART divisor must be an integer number of clock cycles per bit, "
                        f"not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor must be at least {MIN_DIVISOR} clock cycles per bit, "
                         f"not {divisor}")
    return divisor


def divisor_for(clk_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clk_hz``.

    Returns the nearest integer divisor. Raises :class:`ValueError` if the resulting baud rate is
    off by more than :data:`MAX_RATE_ERROR` (2%) or the divisor is below :data:`MIN_DIVISOR`.
    """
    if clk_hz <= 0 or baud <= 0:
        raise ValueError(f"clock ({clk_hz} Hz) and baud rate ({baud}) must be positive")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"{baud} baud needs at least {MIN_DIVISOR * baud} Hz, "
                         f"the clock is {clk_hz} Hz")
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_RATE_ERROR:
        raise ValueError(f"{baud} baud from a {clk_hz} Hz clock: the nearest divisor {divisor} "
                         f"gives {clk_hz / divisor:.1f} baud, {error:.2%} off "
                         f"(at most {MAX_RATE_ERROR:.0%} allowed)")
    return divisor


def _saturating_increment(counter):
    return counter.eq(Mux(counter.all(), counter, counter + 1))


class UARTTx(wiring.Component):
    """8N1 UART transmitter.

    Takes one byte from ``i`` whenever it is idle and shifts it out on ``tx``: start bit, 8 data
    bits LSB first, stop bit, each ``divisor`` cycles long. Back-to-back bytes follow each other
    with no gap beyond the stop bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes to send.
    tx : ``Out(1)``
        Serial output, high when idle.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        timer = Signal(range(self.divisor))   # cycles left in the current bit, minus one
        bits_left = Signal(range(10))          # bits still to shift out after the current one
        shreg = Signal(9)                      # data bits then the stop bit, LSB first

        idle = (bits_left == 0) & (timer == 0)
        m.d.comb += self.i.ready.eq(idle)

        with m.If(idle):
            with m.If(self.i.valid):
                m.d.sync += [
                    self.tx.eq(0),  # start bit
                    shreg.eq(Cat(self.i.payload, Const(1, 1))),
                    bits_left.eq(9),
                    timer.eq(self.divisor - 1),
                ]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [
                self.tx.eq(shreg[0]),
                shreg.eq(shreg >> 1),
                bits_left.eq(bits_left - 1),
                timer.eq(self.divisor - 1),
            ]

        return m


class UARTRx(wiring.Component):
    """8N1 UART receiver.

    ``rx`` passes through a two-flop synchroniser, and the receiver only ever looks at the line as
    the majority of its last three samples, so a glitch of one cycle neither starts a byte nor
    changes a bit. The line reading low starts a byte; the start bit must then go on reading low
    until it is read in its middle, else it was a glitch and the receiver looks for the next start
    at once. Every following bit is read a whole bit time after the previous one, in the middle of
    the bit: the three samples are its middle cycle and the cycle either side. A byte with a good
    stop bit is offered on ``o``; its payload is held until accepted.

    Taking the start from the majority rather than from the first low sample means a one-cycle
    glitch next to the start edge moves the reads by at most one cycle (early or late), never two.
    So every character is received with any one one-cycle glitch in it at the exact baud rate, from
    4 cycles per bit on; with one-cycle glitches in up to a third of the bit times and the sender 2%
    off, from 9 cycles per bit on (``tests/test_uart.py``). Below that, at 2% off, the outermost
    sample of the last bits can fall into the next bit, and a glitch in one of the other two then
    changes the bit.

    Errors drop the byte and are counted (16-bit counters that saturate at 0xFFFF):

    * ``frame_errors``: the stop bit was low. The receiver then waits for the line to go high
      before it looks for the next start bit, so a held-low line (break) counts once.
    * ``overruns``: a byte completed while the previous one was still not accepted on ``o``. The
      older byte stays on ``o``; the new one is lost.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : ``In(1)``
        Serial input, idle high.
    o : ``Out(stream.Signature(8))``
        Received bytes.
    frame_errors : ``Out(16)``
        Bytes dropped for a low stop bit.
    overruns : ``Out(16)``
        Bytes dropped because ``o`` was still full.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    frame_errors: Out(16)
    overruns: Out(16)

    def __init__(self, divisor):
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        rx = Signal(init=1)
        m.submodules.sync = cdc.FFSynchronizer(self.rx, rx, init=1)
        # The line is the majority of this cycle's sample and the two before it; its middle sample
        # is the one of the cycle before. A clean start edge makes it read low one cycle after the
        # first low sample.
        past = Signal(2, init=0b11)
        m.d.sync += past.eq(Cat(rx, past[0]))
        line = (rx & past[0]) | (rx & past[1]) | (past[0] & past[1])
        # Cycles from the first low sample to the middle sample of a read: the middle of the bit,
        # the edge having fallen up to a cycle before that first sample.
        middle = (self.divisor - 1) // 2

        timer = Signal(range(self.divisor))  # cycles to the next read, minus one
        bits_left = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(middle - 1)
                    m.next = "START"
            with m.State("START"):
                # The start bit must read low until it is read: a high line is a glitch, or a low
                # pulse shorter than about half a bit.
                with m.If(line):
                    m.next = "IDLE"
                with m.Elif(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bits_left.eq(7)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [
                        shreg.eq(Cat(shreg[1:], line)),
                        bits_left.eq(bits_left - 1),
                        timer.eq(self.divisor - 1),
                    ]
                    with m.If(bits_left == 0):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(~line):
                    m.d.sync += _saturating_increment(self.frame_errors)
                    m.next = "BREAK"
                with m.Else():
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += _saturating_increment(self.overruns)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"

        return m

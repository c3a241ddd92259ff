"""Board top levels: clock, power-on reset, UART and LEDs around the protocol engine.

:class:`BoardTop` is the same on every board: the board oscillator clocks everything (no PLL: the
engine is clocked at the oscillator frequency, below its Fmax on both boards, and 1 Mbaud
divides both oscillators exactly); a power-on reset counter holds the design in reset for its
first cycles; :class:`~spinemu.hdl.uart.UARTRx` and :class:`~spinemu.hdl.uart.UARTTx` connect the
FTDI's serial lines to the :class:`~spinemu.hdl.protocol_engine.ProtocolEngine`, whose
stop-and-wait protocol is the only flow control (neither board wires RTS/CTS to the FPGA); LEDs show
a heartbeat, a running job and whether the UART has seen an error.

:data:`BOARDS` names the supported boards with their platform, their default
:class:`~spinemu.hdl.memory_map.EngineConfig` and the reference network that configuration holds
(``docs/boards.md`` has the resources and timing measured for each).
"""

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, Elaboratable, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import sized_config
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.hdl.uart import UARTRx, UARTTx, divisor_for
from spinemu.hdl.weight_memory import SPRAM_DEPTH

__all__ = ["DEFAULT_BAUD", "LED_ROLES", "Board", "BOARDS", "board", "BoardTop"]

#: Both oscillators (12 and 25 MHz) divide into 1 Mbaud exactly, and both FTDI chips (FT2232H on
#: the iCEBreaker, FT231X on the ULX3S) make 1 Mbaud exactly (3 MHz / 3). The next FTDI rates,
#: 2 and 3 Mbaud, are more than 2% off what 25 MHz can divide into.
DEFAULT_BAUD = 1_000_000

#: What an LED can show: ``heartbeat`` (on and off for about 0.7 s each once out of reset),
#: ``busy`` (a job is running, stretched to at least 0.1 s so that short jobs show),
#: ``activity`` (the heartbeat, blinking 8 times faster while ``busy``: for boards with few LEDs),
#: ``error`` (the UART has counted a frame error or an overrun since reset).
LED_ROLES = ("heartbeat", "busy", "activity", "error")


@dataclass(frozen=True)
class Board:
    """A supported board.

    ``platform`` is the amaranth-boards platform class and ``family`` the
    :mod:`spinemu.firmware.synth` family. The default engine configuration (:attr:`config`) has
    ``lanes`` lanes and is sized for ``network``, the layer sizes (N_0, ..., N_L) of the largest
    reference network the board holds, with its weight memory rounded up to ``weight_quantum``
    words (:func:`~spinemu.hdl.memory_map.sized_config`). ``leds`` maps ``(resource, number)`` to
    an entry of :data:`LED_ROLES`.
    """

    name: str
    platform: type
    family: str
    lanes: int
    network: tuple
    weight_quantum: int
    leds: tuple
    description: str

    def __post_init__(self):
        for _resource, role in self.leds:
            if role not in LED_ROLES:
                raise ValueError(f"unknown LED role {role!r}; choose from {', '.join(LED_ROLES)}")

    @property
    def config(self):
        """The default :class:`~spinemu.hdl.memory_map.EngineConfig`."""
        return self.configure()

    def configure(self, lanes=None, network=None, noise=None):
        """The configuration with ``lanes`` lanes sized for ``network`` (defaults: the board's),
        built with noise table ``noise`` (default: the Gaussian)."""
        tables = {} if noise is None else {"noise": noise}
        return sized_config(self.network if network is None else tuple(network),
                            self.lanes if lanes is None else lanes, self.weight_quantum, **tables)

    @property
    def clk_hz(self):
        """The board oscillator's frequency, which clocks the whole design."""
        return int(self.platform().default_clk_frequency)


BOARDS = {
    # iCE40 UP5K: its 30 EBR hold the per-lane memories of 2 lanes, not 4 (docs/boards.md). Two
    # lanes of 8-bit weights make 16-bit words: one SPRAM per 16384 words, 4 SPRAMs in all.
    "icebreaker": Board(
        name="icebreaker", platform=ICEBreakerPlatform, family="ice40", lanes=2,
        network=(128, 256, 192, 64), weight_quantum=SPRAM_DEPTH,
        leds=((("led", 1), "activity"), (("led", 0), "error")),
        description="1BitSquared iCEBreaker, Lattice iCE40 UP5K"),
    # ECP5 85F: DP16KD blocks are 1024 words deep at 18 bits.
    "ulx3s": Board(
        name="ulx3s", platform=ULX3S_85F_Platform, family="ecp5", lanes=16,
        network=(128, 256, 256, 64), weight_quantum=1024,
        leds=((("led", 0), "heartbeat"), (("led", 1), "busy"), (("led", 2), "error")),
        description="Radiona ULX3S, Lattice ECP5 LFE5U-85F"),
}


def board(name):
    """The :class:`Board` called ``name``; :class:`KeyError` naming the known boards otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise KeyError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}") from None


class BoardTop(Elaboratable):
    """The design put on a board: clock, power-on reset, UART, protocol engine and LEDs.

    Elaborate it with the board's platform (``platform.build(BoardTop(...))``): it requests the
    default clock, ``uart`` 0 and the LEDs of ``leds`` (see :class:`Board`), all with
    ``dir="-"`` behind :class:`amaranth.lib.io.Buffer`. ``baud`` must divide the clock within 2%
    (:func:`~spinemu.hdl.uart.divisor_for`); ``por_cycles`` is how long the power-on reset lasts
    (iCE40 block RAMs read as zero for about 3 us after configuration).
    """

    def __init__(self, config, *, leds, baud=DEFAULT_BAUD, max_payload=MAX_PAYLOAD,
                 por_cycles=1024):
        self.config, self.leds, self.baud = config, tuple(leds), baud
        self.max_payload, self.por_cycles = max_payload, por_cycles

    @classmethod
    def for_board(cls, board, config=None, **kwargs):
        """The top for ``board`` with ``config`` (default: the board's) and its LED map."""
        return cls(board.config if config is None else config, leds=board.leds, **kwargs)

    def elaborate(self, platform):
        m = Module()
        clk_hz = int(platform.default_clk_frequency)
        divisor = divisor_for(clk_hz, self.baud)

        # ---- clock and power-on reset ----------------------------------------------------------
        m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request(platform.default_clk,
                                                                         dir="-"))
        m.domains.por = por = ClockDomain(reset_less=True)
        m.domains.sync = sync = ClockDomain()
        m.d.comb += [por.clk.eq(clk_buf.i), sync.clk.eq(clk_buf.i)]
        # Counts up from the flip-flops' configuration value (iCE40 flip-flops start at 0).
        por_count = Signal(range(self.por_cycles + 1))
        in_reset = Signal(init=1)
        with m.If(por_count != self.por_cycles):
            m.d.por += por_count.eq(por_count + 1)
        m.d.por += in_reset.eq(por_count != self.por_cycles)
        m.d.comb += sync.rst.eq(in_reset)

        # ---- UART and the protocol engine ------------------------------------------------------
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.uart_rx = rx = UARTRx(divisor)
        m.submodules.uart_tx = tx = UARTTx(divisor)
        m.submodules.engine = engine = ProtocolEngine(self.config, self.max_payload)
        m.d.comb += [rx.rx.eq(rx_buf.i), tx_buf.o.eq(tx.tx),
                     engine.uart_frame_errors.eq(rx.frame_errors),
                     engine.uart_overruns.eq(rx.overruns)]
        wiring.connect(m, rx.o, engine.i)
        wiring.connect(m, engine.o, tx.i)

        # ---- LEDs ------------------------------------------------------------------------------
        # The top bit of a counter as wide as clk_hz toggles every 2^(width - 1) cycles: 0.5 to 1 s.
        blink = Signal(max(clk_hz.bit_length(), 4))
        m.d.sync += blink.eq(blink + 1)
        busy_hold = Signal(range(clk_hz // 10 + 1))
        with m.If(engine.busy):
            m.d.sync += busy_hold.eq(clk_hz // 10)
        with m.Elif(busy_hold != 0):
            m.d.sync += busy_hold.eq(busy_hold - 1)
        busy = engine.busy | (busy_hold != 0)
        roles = {
            "heartbeat": blink[-1],
            "busy": busy,
            "activity": Mux(busy, blink[-4], blink[-1]),
            "error": (rx.frame_errors != 0) | (rx.overruns != 0),
        }
        for (resource, number), role in self.leds:
            buf = io.Buffer("o", platform.request(resource, number, dir="-"))
            m.submodules[f"{resource}{number}_buf"] = buf
            m.d.comb += buf.o.eq(roles[role])
        return m


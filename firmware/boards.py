"""Board top levels: clock, power-on reset, UART and LEDs around the protocol engine.

:class:`BoardTop` is the same on every board: :class:`~spinemu.firmware.pll.BoardClock` clocks
everything from the board's PLL (or from the oscillator where the board runs at the oscillator's
frequency) and holds the design in reset until the PLL has locked and a power-on count has run out;
:class:`~spinemu.hdl.uart.UARTRx` and :class:`~spinemu.hdl.uart.UARTTx` connect the FTDI's serial
lines to the :class:`~spinemu.hdl.protocol_engine.ProtocolEngine`, whose protocol is the only flow
control (neither board wires RTS/CTS to the FPGA); LEDs show a heartbeat, a running job and
whether the UART has seen an error.

:data:`BOARDS` names the supported boards with their platform, their clock and UART rate, their
default :class:`~spinemu.hdl.memory_map.EngineConfig` and the reference network that configuration
holds (``docs/boards.md`` has the resources and timing measured for each, and why each clock).
"""

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, Elaboratable, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import sized_config
from spinemu.hdl.protocol import WINDOW
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.hdl.uart import UARTRx, UARTTx, divisor_for
from spinemu.hdl.weight_memory import SPRAM_DEPTH

from .pll import BoardClock, pll_settings

__all__ = ["LED_ROLES", "Board", "BOARDS", "board", "BoardTop"]

#: What an LED can show: ``heartbeat`` (on and off for about 0.7 s each once out of reset),
#: ``busy`` (a job is running, stretched to at least 0.1 s so that short jobs show),
#: ``activity`` (the heartbeat, blinking 8 times faster while ``busy``: for boards with few LEDs),
#: ``error`` (the UART has counted a frame error or an overrun since reset).
LED_ROLES = ("heartbeat", "busy", "activity", "error")


@dataclass(frozen=True)
class Board:
    """A supported board.

    ``platform`` is the amaranth-boards platform class and ``family`` the
    :mod:`spinemu.firmware.synth` family. ``clock_hz`` clocks the design: the output of the PLL
    (:attr:`pll`), or the oscillator itself where it runs at that frequency. ``baud`` is the
    default UART rate; ``clock_hz`` must be an exact multiple of it (the UART divisor exact, 0%
    error) and the PLL must make ``clock_hz`` exactly. The default engine configuration
    (:attr:`config`) has ``lanes`` lanes that add ``inputs_per_cycle`` spin inputs a cycle each
    (W, ``docs/engine.md``) and is sized for ``network``, the layer sizes (N_0, ...,
    N_L) of the largest reference network the board holds, with its weight memory rounded up to
    ``weight_quantum`` words (:func:`~spinemu.hdl.memory_map.sized_config`). ``leds`` maps
    ``(resource, number)`` to an entry of :data:`LED_ROLES`. ``window`` is the receive window in
    bytes (:class:`~spinemu.hdl.rx_window.ReceiveWindow`): the requests a host keeps in flight.
    """

    name: str
    platform: type
    family: str
    lanes: int
    inputs_per_cycle: int
    network: tuple
    weight_quantum: int
    leds: tuple
    clock_hz: int
    baud: int
    description: str
    window: int = WINDOW

    def __post_init__(self):
        for _resource, role in self.leds:
            if role not in LED_ROLES:
                raise ValueError(f"unknown LED role {role!r}; choose from {', '.join(LED_ROLES)}")
        if self.clock_hz % self.baud:
            raise ValueError(f"{self.name}: a {self.clock_hz} Hz clock does not divide into "
                             f"{self.baud} baud exactly")
        divisor_for(self.clock_hz, self.baud)   # at least MIN_DIVISOR cycles per bit
        pll_settings(self.family, self.oscillator_hz, self.clock_hz)   # the PLL can make it

    @property
    def config(self):
        """The default :class:`~spinemu.hdl.memory_map.EngineConfig`."""
        return self.configure()

    def configure(self, lanes=None, network=None, noise=None, inputs_per_cycle=None):
        """The configuration with ``lanes`` lanes of ``inputs_per_cycle`` inputs a cycle sized for
        ``network`` (defaults: the board's), built with noise table ``noise`` (default: the
        Gaussian)."""
        tables = {} if noise is None else {"noise": noise}
        w = self.inputs_per_cycle if inputs_per_cycle is None else inputs_per_cycle
        return sized_config(self.network if network is None else tuple(network),
                            self.lanes if lanes is None else lanes, self.weight_quantum,
                            inputs_per_cycle=w, **tables)

    @property
    def oscillator_hz(self):
        """The board oscillator's frequency: the PLL's input."""
        return int(self.platform().default_clk_frequency)

    @property
    def pll(self):
        """The PLL settings (:func:`~spinemu.firmware.pll.pll_settings`) that make
        :attr:`clock_hz` from the oscillator; ``None``: the oscillator clocks the design."""
        return pll_settings(self.family, self.oscillator_hz, self.clock_hz)

    @property
    def uart_divisor(self):
        """Clock cycles per bit at :attr:`baud`."""
        return self.clock_hz // self.baud


BOARDS = {
    # iCE40 UP5K: logic, not memory, limits it (docs/boards.md): 2 lanes no longer fit its 5280
    # logic cells, 1 lane adding 8 weights a cycle does (64-bit words over the 4 SPRAMs' width,
    # 11776 of them for the digits network). 3 Mbaud needs a multiple of 3 MHz; the PLL's output
    # starts at 16, and 18 MHz (6 cycles per bit) leaves the Fmax (about 22 MHz) 15% above it.
    "icebreaker": Board(
        name="icebreaker", platform=ICEBreakerPlatform, family="ice40", lanes=1,
        inputs_per_cycle=8, network=(128, 256, 192, 64), weight_quantum=SPRAM_DEPTH,
        leds=((("led", 1), "activity"), (("led", 0), "error")),
        clock_hz=18_000_000, baud=3_000_000,
        description="1BitSquared iCEBreaker, Lattice iCE40 UP5K"),
    # ECP5 85F: DP16KD blocks are 512 words deep at 36 bits; 16 lanes of 16 inputs a cycle make
    # 2048-bit words (57 blocks side by side). 45 MHz (the PLL from 25 MHz) gives 15 cycles per
    # bit at 3 Mbaud, below the Fmax (docs/boards.md).
    "ulx3s": Board(
        name="ulx3s", platform=ULX3S_85F_Platform, family="ecp5", lanes=16, inputs_per_cycle=16,
        network=(128, 256, 256, 64), weight_quantum=512,
        leds=((("led", 0), "heartbeat"), (("led", 1), "busy"), (("led", 2), "error")),
        clock_hz=45_000_000, baud=3_000_000,
        description="Radiona ULX3S, Lattice ECP5 LFE5U-85F",
        # at the link's 3125 images/s (the engine makes more) a 16 ms round trip needs 50 JOBs of
        # 96 bytes in flight, beyond the 1024-byte default; 8 KiB holds the client's most, 64
        window=8192),
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
    default clock (through :class:`~spinemu.firmware.pll.BoardClock`, which feeds it to the PLL of
    ``pll`` settings, or with ``pll=None`` clocks the design from it directly), ``uart`` 0 and the
    LEDs of ``leds`` (see :class:`Board`), all with ``dir="-"`` behind
    :class:`amaranth.lib.io.Buffer`. ``baud`` must divide the clock (the PLL's output, else the
    oscillator) within 2% (:func:`~spinemu.hdl.uart.divisor_for`); ``por_cycles`` is how long the
    power-on reset lasts after the PLL locks (iCE40 block RAMs read as zero for about 3 us after
    configuration).
    """

    def __init__(self, config, *, leds, baud, pll=None, max_payload=MAX_PAYLOAD, window=WINDOW,
                 por_cycles=1024):
        self.config, self.leds, self.baud, self.pll = config, tuple(leds), baud, pll
        self.max_payload, self.window, self.por_cycles = max_payload, window, por_cycles

    @classmethod
    def for_board(cls, board, config=None, **kwargs):
        """The top for ``board`` with ``config`` (default: the board's), its LED map, its PLL and
        its baud rate and receive window (``baud=`` or ``window=`` in ``kwargs`` overrides them)."""
        kwargs.setdefault("baud", board.baud)
        kwargs.setdefault("window", board.window)
        return cls(board.config if config is None else config, leds=board.leds, pll=board.pll,
                   **kwargs)

    def elaborate(self, platform):
        m = Module()
        clk_hz = (int(platform.default_clk_frequency) if self.pll is None
                  else self.pll.output_hz)
        divisor = divisor_for(clk_hz, self.baud)
        m.domains.sync = ClockDomain()
        m.submodules.clock = BoardClock(self.pll, por_cycles=self.por_cycles)

        # ---- UART and the protocol engine ------------------------------------------------------
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.uart_rx = rx = UARTRx(divisor)
        m.submodules.uart_tx = tx = UARTTx(divisor)
        m.submodules.engine = engine = ProtocolEngine(self.config, self.max_payload, self.window)
        m.d.comb += [rx.rx.eq(rx_buf.i), tx_buf.o.eq(tx.tx),
                     engine.uart_frame_errors.eq(rx.frame_errors),
                     engine.uart_overruns.eq(rx.overruns)]
        wiring.connect(m, rx.o, engine.i)
        wiring.connect(m, engine.o, tx.i)

        # ---- LEDs ------------------------------------------------------------------------------
        # The top bit of a counter as wide as clk_hz toggles every 2^(width - 1) cycles: 0.5 to 1 s.
        blink = Signal(max(clk_hz.bit_length(), 4))
        m.d.sync += blink.eq(blink + 1)
        # busy is held for 2 to 3 ticks of the counter's bit `tick` after the job (each tick at
        # least 0.05 s apart): at least 0.1 s, with a 2-bit count instead of one of 0.1 s.
        tick_bit = max(1, (clk_hz // 20 - 1).bit_length())     # 2^tick_bit >= clk_hz / 20
        assert tick_bit < len(blink)
        ticked = Signal()
        m.d.sync += ticked.eq(blink[tick_bit])
        tick = ticked & ~blink[tick_bit]                        # that bit fell
        busy_hold = Signal(2)
        with m.If(engine.busy):
            m.d.sync += busy_hold.eq(3)
        with m.Elif(tick & (busy_hold != 0)):
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


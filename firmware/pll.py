"""The board clock: a PLL (or the oscillator itself) driving the ``sync`` domain, and its reset.

:func:`ice40_pll` and :func:`ecp5_pll` find the divider settings that make an output frequency
*exactly* from an input frequency (the UART divisor must be exact), within the limits of the
iCE40 ``SB_PLL40_PAD`` and the ECP5 ``EHXPLLL``; :func:`pll_settings` picks the family's, or
``None`` where the oscillator already runs at the frequency wanted. :class:`BoardClock` is the
elaboratable that puts them on a board: it instantiates the primitive, clocks ``sync`` from its
output, constrains that clock for nextpnr, and holds ``sync`` in reset until the PLL has locked
and a power-on count has run out. ``docs/boards.md`` has the settings each board uses.

The limits are the vendors' (iCE40 sysCLOCK PLL Design and Usage Guide, ECP5 data sheet) as the
icestorm and Project Trellis PLL calculators (``icepll``, ``ecppll``) apply them.
"""

from dataclasses import asdict, dataclass
from fractions import Fraction

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import cdc, io, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ICE40PLL", "ECP5PLL", "ice40_pll", "ecp5_pll", "pll_settings", "PowerOnReset",
           "BoardClock"]

_MHZ = 1_000_000


def _mhz(hz):
    """``hz`` in MHz, to the Hz, for messages."""
    return f"{hz / _MHZ:.6f}".rstrip("0").rstrip(".") + " MHz"


def _check_range(what, hz, low_mhz, high_mhz):
    if not low_mhz * _MHZ <= hz <= high_mhz * _MHZ:
        raise ValueError(f"{what} {_mhz(hz)} is outside {low_mhz:g}-{high_mhz:g} MHz")


@dataclass(frozen=True)
class ICE40PLL:
    """Settings of an iCE40 ``SB_PLL40_PAD`` in ``SIMPLE`` feedback.

    ``PFD = input / (DIVR + 1)``, ``VCO = PFD * (DIVF + 1)``, ``output = VCO / 2**DIVQ``;
    ``FILTER_RANGE`` is the loop filter's setting for the PFD frequency.
    """

    input_hz: int
    divr: int
    divf: int
    divq: int
    filter_range: int

    family = "ice40"

    @property
    def pfd_hz(self):
        return Fraction(self.input_hz, self.divr + 1)

    @property
    def vco_hz(self):
        return self.pfd_hz * (self.divf + 1)

    @property
    def output_hz(self):
        """The output frequency in Hz (an int: the search only returns exact settings)."""
        return int(self.vco_hz / 2 ** self.divq)

    def as_dict(self):
        """The settings and the frequencies they make, for ``report.json``."""
        return {"primitive": "SB_PLL40_PAD", **asdict(self), "pfd_hz": float(self.pfd_hz),
                "vco_hz": float(self.vco_hz), "output_hz": self.output_hz}


@dataclass(frozen=True)
class ECP5PLL:
    """Settings of an ECP5 ``EHXPLLL`` with CLKOP as its feedback and the clock on CLKOS.

    ``PFD = input / CLKI_DIV``, ``VCO = PFD * CLKFB_DIV * CLKOP_DIV``, the feedback clock
    ``CLKOP = VCO / CLKOP_DIV`` and the output ``CLKOS = VCO / CLKOS_DIV``. Feeding back an output
    other than the one that clocks the design lets the VCO be any multiple of the PFD that
    factors into the two dividers: with CLKOP alone the output is ``PFD * CLKFB_DIV``, and 36 MHz
    from 25 MHz would need a 1 MHz PFD, below the 3.125 MHz minimum. Both phases are 0 degrees:
    ``CPHASE = DIV - 1``, as Lattice's tools set it.
    """

    input_hz: int
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkos_div: int

    family = "ecp5"

    @property
    def pfd_hz(self):
        return Fraction(self.input_hz, self.clki_div)

    @property
    def vco_hz(self):
        return self.pfd_hz * self.clkfb_div * self.clkop_div

    @property
    def feedback_hz(self):
        return self.vco_hz / self.clkop_div

    @property
    def output_hz(self):
        """The output frequency in Hz (an int: the search only returns exact settings)."""
        return int(self.vco_hz / self.clkos_div)

    @property
    def clkop_cphase(self):
        return self.clkop_div - 1

    @property
    def clkos_cphase(self):
        return self.clkos_div - 1

    def as_dict(self):
        """The settings and the frequencies they make, for ``report.json``."""
        return {"primitive": "EHXPLLL", **asdict(self), "clkop_cphase": self.clkop_cphase,
                "clkos_cphase": self.clkos_cphase, "pfd_hz": float(self.pfd_hz),
                "vco_hz": float(self.vco_hz), "feedback_hz": float(self.feedback_hz),
                "output_hz": self.output_hz}


def _no_settings(family, input_hz, output_hz):
    return ValueError(f"the {family} PLL cannot make exactly {_mhz(output_hz)} from "
                      f"{_mhz(input_hz)}")


def ice40_pll(input_hz, output_hz):
    """The :class:`ICE40PLL` that makes exactly ``output_hz`` from ``input_hz``.

    Limits: input and PFD 10-133 MHz, VCO 533-1066 MHz, output 16-275 MHz, DIVR 0-15, DIVF 0-127
    (``SIMPLE`` feedback), DIVQ 1-6. Of the exact settings it takes the highest PFD (the least
    multiplication of the input's jitter), then the VCO nearest the middle of its range.
    ``FILTER_RANGE`` follows the PFD: 1 below 17 MHz, 2 below 26, 3 below 44, 4 below 66, 5 below
    101, else 6. :class:`ValueError` if a frequency is out of range or no setting is exact.
    """
    _check_range("iCE40 PLL input", input_hz, 10, 133)
    _check_range("iCE40 PLL output", output_hz, 16, 275)
    found = []
    for divr in range(16):
        pfd = Fraction(input_hz, divr + 1)
        if not 10 * _MHZ <= pfd <= 133 * _MHZ:
            continue
        for divq in range(1, 7):
            # output * 2**DIVQ is the VCO: it must be a whole multiple of the PFD.
            multiple = output_hz * 2 ** divq / pfd
            vco = output_hz * 2 ** divq
            if multiple.denominator == 1 and 1 <= multiple <= 128 \
                    and 533 * _MHZ <= vco <= 1066 * _MHZ:
                found.append((-pfd, abs(vco - 799.5 * _MHZ), divr, int(multiple) - 1, divq))
    if not found:
        raise _no_settings("iCE40", input_hz, output_hz)
    *_, divr, divf, divq = min(found)
    pfd_mhz = input_hz / (divr + 1) / _MHZ
    filter_range = 1 + sum(pfd_mhz >= edge for edge in (17, 26, 44, 66, 101))
    return ICE40PLL(input_hz, divr, divf, divq, filter_range)


def ecp5_pll(input_hz, output_hz):
    """The :class:`ECP5PLL` that makes exactly ``output_hz`` from ``input_hz``.

    Limits: input 8-400 MHz, PFD 3.125-400 MHz, VCO 400-800 MHz, outputs (CLKOP and CLKOS)
    10-400 MHz, CLKI_DIV, CLKOP_DIV and CLKOS_DIV 1-128, CLKFB_DIV 1-80. Of the exact settings it
    takes the VCO nearest the middle of its range, then the highest PFD, then the smallest
    CLKFB_DIV. :class:`ValueError` if a frequency is out of range or no setting is exact.
    """
    _check_range("ECP5 PLL input", input_hz, 8, 400)
    _check_range("ECP5 PLL output", output_hz, 10, 400)
    found = []
    for clki_div in range(1, 129):
        pfd = Fraction(input_hz, clki_div)
        if not Fraction(3125, 1000) * _MHZ <= pfd <= 400 * _MHZ:
            continue
        for clkos_div in range(1, 129):
            vco = output_hz * clkos_div
            if not 400 * _MHZ <= vco <= 800 * _MHZ:
                continue
            # The VCO must be PFD * CLKFB_DIV * CLKOP_DIV.
            multiple = vco / pfd
            if multiple.denominator != 1:
                continue
            for clkfb_div in range(1, 81):
                clkop_div, rest = divmod(int(multiple), clkfb_div)
                if rest == 0 and clkop_div <= 128 and 10 * _MHZ <= vco / clkop_div <= 400 * _MHZ:
                    found.append((abs(vco - 600 * _MHZ), -pfd, clkfb_div, clki_div, clkop_div,
                                  clkos_div))
                    break      # the smallest CLKFB_DIV for this VCO and PFD
    if not found:
        raise _no_settings("ECP5", input_hz, output_hz)
    *_, clkfb_div, clki_div, clkop_div, clkos_div = min(found)
    return ECP5PLL(input_hz, clki_div, clkfb_div, clkop_div, clkos_div)


def pll_settings(family, input_hz, output_hz):
    """The PLL settings of ``family`` (``"ice40"`` or ``"ecp5"``) that make ``output_hz`` from
    the oscillator's ``input_hz``; ``None`` when the two are equal (the oscillator clocks the
    design, no PLL). :class:`ValueError` if the PLL cannot make it exactly."""
    if output_hz == input_hz:
        return None
    search = {"ice40": ice40_pll, "ecp5": ecp5_pll}.get(family)
    if search is None:
        raise ValueError(f"no PLL for FPGA family {family!r}; choose ice40 or ecp5")
    return search(input_hz, output_hz)


class PowerOnReset(wiring.Component):
    """Holds ``rst`` high until ``por_cycles`` cycles after ``locked`` rises, and again from
    whenever it falls.

    ``locked`` (a PLL's lock, asynchronous to this clock) passes a two-flop synchroniser first.
    The component has no reset of its own: put it in a reset-less domain on the clock it resets
    (:class:`BoardClock` does); it starts from its flip-flops' configuration values.
    """

    locked: In(1)
    rst: Out(1, init=1)

    def __init__(self, por_cycles):
        self.por_cycles = por_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        m.submodules.lock_sync = cdc.FFSynchronizer(self.locked, locked)
        count = Signal(range(self.por_cycles + 1))
        with m.If(~locked):
            m.d.sync += count.eq(0)
        with m.Elif(count != self.por_cycles):
            m.d.sync += count.eq(count + 1)
        m.d.sync += self.rst.eq(~locked | (count != self.por_cycles))
        return m


class BoardClock(Elaboratable):
    """The ``sync`` domain of a board: drives its clock and its power-on reset.

    The design defines ``sync`` (Amaranth wants a domain defined in a module above all that use
    it); this drives it. It requests the platform's default clock pin. With ``pll`` settings
    (:class:`ICE40PLL` or :class:`ECP5PLL`, whose ``input_hz`` must be the pin's frequency) the
    pin feeds that PLL and its output clocks ``sync``; that output is constrained to
    ``pll.output_hz`` with the platform's ``add_clock_constraint``, so nextpnr checks timing at
    the real clock. With ``pll=None`` the pin clocks ``sync`` directly (timed at the pin's own
    constraint).

    ``sync`` is held in reset (:class:`PowerOnReset`) until ``por_cycles`` cycles after the PLL
    reports lock (or after configuration, without a PLL), and again whenever the lock drops:
    nothing runs on a clock that is not yet stable, and iCE40 block RAMs read as zero for about
    3 us after configuration.
    """

    def __init__(self, pll=None, *, por_cycles=1024):
        self.pll, self.por_cycles = pll, por_cycles

    def elaborate(self, platform):
        m = Module()
        pin = platform.request(platform.default_clk, dir="-")
        # The power-on reset runs on sync's clock but must not be reset by it.
        m.domains.por = por = ClockDomain(reset_less=True, local=True)

        if self.pll is None:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", pin)
            clk, lock = clk_buf.i, Const(1)
        else:
            if self.pll.input_hz != int(platform.default_clk_frequency):
                raise ValueError(f"the PLL settings are for a {_mhz(self.pll.input_hz)} input, "
                                 f"the board clock is {_mhz(platform.default_clk_frequency)}")
            # keep: the output's own name must survive flattening, for the clock constraint.
            clk = Signal(name="pll_clk", attrs={"keep": 1})
            lock = Signal(name="pll_lock")
            if self.pll.family == "ice40":
                m.submodules.pll = self._ice40(pin, clk, lock)
            else:
                m.submodules.clk_buf = clk_buf = io.Buffer("i", pin)
                m.submodules.pll = self._ecp5(clk_buf.i, clk, lock)
            platform.add_clock_constraint(clk, self.pll.output_hz)
        m.d.comb += [ClockSignal("sync").eq(clk), por.clk.eq(clk)]

        m.submodules.por = por_reset = DomainRenamer("por")(PowerOnReset(self.por_cycles))
        m.d.comb += [por_reset.locked.eq(lock), ResetSignal("sync").eq(por_reset.rst)]
        return m

    def _ice40(self, pin, clk, lock):
        # The PAD form: on the iCE40 the PLL's reference pad feeds it directly, without an SB_IO.
        return Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
            p_DIVR=self.pll.divr, p_DIVF=self.pll.divf, p_DIVQ=self.pll.divq,
            p_FILTER_RANGE=self.pll.filter_range,
            i_PACKAGEPIN=pin.io, i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk, o_LOCK=lock)

    def _ecp5(self, clk_in, clk, lock):
        feedback = Signal()
        return Instance(
            "EHXPLLL",
            p_FEEDBK_PATH="CLKOP",
            p_CLKI_DIV=self.pll.clki_div, p_CLKFB_DIV=self.pll.clkfb_div,
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=self.pll.clkop_div,
            p_CLKOP_CPHASE=self.pll.clkop_cphase, p_CLKOP_FPHASE=0,
            p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=self.pll.clkos_div,
            p_CLKOS_CPHASE=self.pll.clkos_cphase, p_CLKOS_FPHASE=0,
            p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            i_CLKI=clk_in, i_CLKFB=feedback, o_CLKOP=feedback, o_CLKOS=clk, o_LOCK=lock,
            i_RST=Const(0), i_STDBY=Const(0), i_PLLWAKESYNC=Const(0),
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(0),
            i_PHASESTEP=Const(0), i_PHASELOADREG=Const(0),
            i_ENCLKOP=Const(0), i_ENCLKOS=Const(0))

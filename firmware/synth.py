"""Resource and timing reports from the pip-installed open-source toolchain.

:func:`synth_stats` synthesizes an Amaranth design with yosys for the iCE40 UP5K (iCEBreaker) or
the ECP5 LFE5U-85F (ULX3S) and counts the cells yosys mapped it to. :func:`place_and_route_fmax`
places and routes it with nextpnr, out of context (no pin constraints), and reads the achieved
Fmax of its clock. Every number comes from the tools' JSON output; docs/synthesis.md describes
what is counted and which commands run.
"""

import contextlib
import json
import re
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spinemu.hdl.noise_unit import RDWR_APART

from .toolchain import run_tool

__all__ = ["FAMILIES", "AFTER_READ", "ECP5_SYNTH_OPTS", "ECP5_MAP_LUTS", "classify_cells",
           "synth_stats", "place_and_route_fmax", "OutOfContextHarness"]

#: The ECP5 flow's LUT mapping: yosys 0.70's ABC9 aborts on the ULX3S engine at 16 inputs a cycle
#: (``ABC_OPS_REINTEGRATE``: assert ``GetSize(conn.first) == GetSize(conn.second)``, rtlil.cc:3091),
#: so ``synth_ecp5`` stops before its ``map_luts`` step and the classic ABC maps the LUTs (4-input
#: LUTs and the PFU's wide-LUT muxes up to 7 inputs, as ``synth_ecp5`` did before ABC9); then
#: ``synth_ecp5`` goes on from ``map_cells``.
ECP5_SYNTH_OPTS = "-run :map_luts"
ECP5_MAP_LUTS = ("check -latchonly -assert", "techmap -map +/lattice/latches_map.v",
                 "abc -dress -lut 4:7", "clean", "synth_ecp5 -run map_cells:")

#: Per family: the yosys synthesis command (followed by ``-top``) and the commands that finish it,
#: the nextpnr tool and device/package options, and the default P&R target: the clock the
#: family's board runs at (:attr:`Board.clock_hz <spinemu.firmware.boards.Board.clock_hz>`: both
#: boards' PLLs).
FAMILIES = {
    "ice40": {
        "synth": "synth_ice40 -dsp -spram",
        "after_synth": (),
        "nextpnr": "nextpnr-ice40",
        "device": ["--up5k", "--package", "sg48"],
        "target_mhz": 18.0,
    },
    "ecp5": {
        "synth": f"synth_ecp5 {ECP5_SYNTH_OPTS}",
        "after_synth": ECP5_MAP_LUTS,
        "nextpnr": "nextpnr-ecp5",
        "device": ["--85k", "--package", "CABGA381"],
        "target_mhz": 45.0,
    },
}


#: Yosys commands right after reading a design, for both families: the memories marked
#: :data:`~spinemu.hdl.noise_unit.RDWR_APART` get undefined read-write collisions (their ``$mem_v2``
#: cells exist only once ``memory_collect`` has run, which needs ``proc``).
AFTER_READ = ("proc", "memory_collect",
              f"setparam -set RD_COLLISION_X_MASK 1'1 t:$mem_v2 a:{RDWR_APART} %i")


def _family(family):
    if family not in FAMILIES:
        raise ValueError(f"unknown FPGA family {family!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


def _count(cells, predicate):
    return sum(n for cell_type, n in cells.items() if predicate(cell_type))


def classify_cells(family, cells):
    """Sort yosys cell counts ``cells`` (``{cell type: count}`` of ``stat -json``) of a ``family``
    design into resource classes: ``lut``, ``ff``, ``bram``, ``dsp``, ``carry``, and ``spram``
    (iCE40) or ``dram`` (ECP5). ``docs/synthesis.md`` says what each counts."""
    if family == "ice40":
        return {
            "lut":   cells.get("SB_LUT4", 0),
            "ff":    _count(cells, lambda t: t.startswith("SB_DFF")),
            "bram":  cells.get("SB_RAM40_4K", 0),
            "spram": cells.get("SB_SPRAM256KA", 0),
            "dsp":   cells.get("SB_MAC16", 0),
            "carry": cells.get("SB_CARRY", 0),
        }
    return {
        # Recent yosys emits LUT4; TRELLIS_COMB is the packed form some versions emit instead.
        "lut":   cells.get("LUT4", 0) + cells.get("TRELLIS_COMB", 0),
        "ff":    cells.get("TRELLIS_FF", 0),
        "bram":  cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
        "dsp":   cells.get("MULT18X18D", 0) + cells.get("ALU54B", 0),
        "dram":  cells.get("TRELLIS_DPR16X4", 0),
        # One CCU2C is a 2-bit carry slice: it fills two LUT4 sites that `lut` does not count.
        "carry": cells.get("CCU2C", 0),
    }


def _workdir(build_dir):
    """A context manager giving the folder for tool files: ``build_dir`` (kept) or a temporary one."""
    if build_dir is None:
        return tempfile.TemporaryDirectory(prefix="spinemu_synth_")
    path = Path(build_dir)
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path))


def _synthesize(elaboratable, family, workdir, *, top_name, ports, netlist):
    """Write RTLIL, run yosys in ``workdir``; return (classified stats, path of netlist or None)."""
    spec = _family(family)
    workdir = Path(workdir)
    (workdir / f"{top_name}.il").write_text(rtlil.convert(elaboratable, name=top_name, ports=ports))
    script = [
        f"read_rtlil {top_name}.il",
        *AFTER_READ,
        f"{spec['synth']} -top {top_name}",
        *spec["after_synth"],
        "tee -q -o stat.json stat -json",
    ]
    if netlist:
        script.append(f"write_json {top_name}.json")
    (workdir / f"{top_name}.ys").write_text("\n".join(script) + "\n")
    run_tool("yosys", ["-q", "-l", "yosys.log", f"{top_name}.ys"], cwd=workdir)

    report = json.loads((workdir / "stat.json").read_text())
    # synth_* flattens the hierarchy, so the design totals are the top module's cells. A
    # $scopeinfo cell only records where a flattened submodule was: it is no hardware.
    cells = {cell_type: n for cell_type, n in report["design"]["num_cells_by_type"].items()
             if cell_type != "$scopeinfo"}
    version = re.match(r"Yosys \S+", report.get("creator", ""))
    stats = {"family": family, "top": top_name, **classify_cells(family, cells), "cells": cells,
             "yosys": version[0] if version else None}
    return stats, (workdir / f"{top_name}.json" if netlist else None)


def synth_stats(elaboratable, family, *, top_name="top", ports=None, build_dir=None):
    """Synthesize ``elaboratable`` for ``family`` with yosys and count the cells it maps to.

    ``family`` is ``"ice40"`` (``synth_ice40 -dsp``, for the iCE40 UP5K) or ``"ecp5"``
    (``synth_ecp5``, for the LFE5U-85F). A :class:`amaranth.lib.wiring.Component` brings its
    ports from its signature (plus ``clk`` and ``rst`` for the ``sync`` domain); any other
    elaboratable needs ``ports``, as for :func:`amaranth.back.rtlil.convert`. With ``build_dir``
    the RTLIL, yosys script, log and ``stat.json`` are kept there.

    Returns a dict with ``lut``, ``ff``, ``bram``, ``dsp`` and ``carry``; ``spram`` (iCE40) or
    ``dram`` (ECP5 ``TRELLIS_DPR16X4``); ``cells``, every cell type yosys reported with its count;
    and ``family``, ``top`` and ``yosys`` (the version). Example::

        stats = synth_stats(MyCore(), "ice40")
        print(stats["lut"], stats["ff"], stats["bram"], stats["dsp"])
    """
    with _workdir(build_dir) as workdir:
        stats, _ = _synthesize(elaboratable, family, workdir, top_name=top_name, ports=ports,
                               netlist=False)
    return stats


class OutOfContextHarness(wiring.Component):
    """Puts a component behind five pins (``clk``, ``rst``, ``si``, ``load``, ``so``) for P&R.

    Every input port of ``core`` is driven from a shift register fed by ``si``; every output port
    is captured in parallel (``load`` high) into a register shifted out on ``so``. So a core with
    more ports than the package has pins still places, every port path is a timed register to
    register path (nextpnr leaves paths to unconstrained pins untimed), and yosys can neither
    constant-fold an input nor drop logic behind an output. The harness adds one flip-flop per port
    bit and a 2:1 multiplexer per output bit; the core's own resources are what
    :func:`synth_stats` reports for it alone.
    """

    def __init__(self, core):
        if not isinstance(core, wiring.Component):
            raise TypeError(f"the out-of-context harness needs a wiring.Component, not {core!r}")
        self.core = core
        super().__init__({"si": In(1), "load": In(1), "so": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        inputs, outputs = [], []
        for _path, member, value in core.signature.flatten(core):
            (inputs if member.flow == In else outputs).append(value)

        if inputs:
            scan_in = Signal(sum(len(Value.cast(v)) for v in inputs))
            m.d.sync += scan_in.eq(Cat(self.si, scan_in[:-1]))
            offset = 0
            for value in inputs:
                width = len(Value.cast(value))
                m.d.comb += value.eq(scan_in[offset:offset + width])
                offset += width

        # An output-less core still gets a one-bit chain, so that `so` has a driver.
        captured = Cat(*outputs) if outputs else self.si
        scan_out = Signal(len(captured))
        with m.If(self.load):
            m.d.sync += scan_out.eq(captured)
        with m.Else():
            m.d.sync += scan_out.eq(scan_out[1:])
        m.d.comb += self.so.eq(scan_out[0])
        return m


def place_and_route_fmax(elaboratable, family, *, frequency_mhz=None, top_name="top",
                         harness=True, seed=1, build_dir=None):
    """Synthesize, place and route ``elaboratable`` out of context; return its achieved Fmax.

    The design must have a single clock, the ``sync`` domain's ``clk``. nextpnr gets no pin
    constraints and places I/O itself (``--up5k --package sg48`` for iCE40,
    ``--85k --package CABGA381`` for ECP5). With ``harness`` (the default) the component is
    wrapped in :class:`OutOfContextHarness` first; with ``harness=False`` its ports become pins,
    which fails when they outnumber the package's I/O and leaves pin-to-register paths untimed.
    ``frequency_mhz`` (default: the board's clock, 18 MHz iCEBreaker, 45 MHz ULX3S) only
    steers timing-driven placement; a design that misses it still reports its Fmax (``met`` is
    then ``False``). ``seed`` fixes nextpnr's placement for repeatable numbers.

    Returns a dict: ``fmax_mhz`` (achieved), ``target_mhz``, ``met``, ``clock`` (nextpnr's net
    name), ``utilization`` (nextpnr's ``{bel type: {"used", "available"}}``, harness included),
    ``synth`` (the :func:`synth_stats` dict of what was placed), ``family`` and ``harness``.
    """
    spec = _family(family)
    target = spec["target_mhz"] if frequency_mhz is None else float(frequency_mhz)
    top = OutOfContextHarness(elaboratable) if harness else elaboratable
    with _workdir(build_dir) as workdir:
        stats, netlist = _synthesize(top, family, workdir, top_name=top_name, ports=None,
                                     netlist=True)
        run_tool(spec["nextpnr"], [
            *spec["device"], "--json", netlist.name, "--freq", target, "--seed", seed,
            # The Fmax is the result wanted; a missed target is reported, not an error.
            "--timing-allow-fail",
            "--report", "report.json", "--log", "nextpnr.log", "--quiet",
        ], cwd=workdir)
        report = json.loads((Path(workdir) / "report.json").read_text())

    clocks = report.get("fmax", {})
    if len(clocks) != 1:
        raise ValueError(f"expected one clock in the nextpnr report, found {sorted(clocks)}; "
                         f"place_and_route_fmax handles designs clocked by `clk` alone")
    (clock, timing), = clocks.items()
    return {
        "family": family,
        "harness": harness,
        "clock": clock,
        "fmax_mhz": timing["achieved"],
        "target_mhz": timing["constraint"],
        "met": timing["achieved"] >= timing["constraint"],
        "utilization": report.get("utilization", {}),
        "synth": stats,
    }

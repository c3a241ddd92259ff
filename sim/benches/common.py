"""Shared pieces of the cocotb benches: configuration, clock and reset."""

import json
import os

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

__all__ = ["config", "start"]


def config():
    """The bench configuration that :func:`spinemu.sim.rtl.run_bench` passed (as a file)."""
    with open(os.environ["SPINEMU_BENCH"]) as f:
        return json.load(f)


async def start(dut, cycles=2):
    """Start a 100 MHz clock on ``clk`` and hold ``rst`` for ``cycles``; returns at a falling edge.

    Benches drive inputs and sample outputs at falling edges, half a cycle away from the rising
    edges where the design's registers change, so no read races a register update; that makes the
    simulator-side clock (``impl="gpi"``, no Python per edge) safe on every simulator.
    """
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    for _ in range(cycles):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)

"""Shared pieces of the cocotb benches: configuration, clock and reset."""

import json
import os

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["config", "start", "Handshake", "PERIOD_NS"]

PERIOD_NS = 10      # the benches' clock: 100 MHz


def config():
    """The bench configuration that :func:`spinemu.sim.rtl.run_bench` passed (as a file)."""
    with open(os.environ["SPINEMU_BENCH"]) as f:
        return json.load(f)


async def start(dut, cycles=2, **levels):
    """Start a 100 MHz clock on ``clk`` and hold ``rst`` for ``cycles``; returns at a falling edge.

    Before, every input of the design is set to its reset value, as the Amaranth simulator starts
    them (Icarus would leave an input no bench drives undefined), or to ``levels[name]``.

    Benches drive inputs and sample outputs at falling edges, half a cycle away from the rising
    edges where the design's registers change, so no read races a register update; that makes the
    simulator-side clock (``impl="gpi"``, no Python per edge) safe on every simulator.
    """
    for name, value in {**config()["input_inits"], **levels}.items():
        getattr(dut, name).value = value
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    for _ in range(cycles):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)


class Handshake:
    """One clock cycle at a time of a design's ``i`` and ``o`` streams: offers :attr:`words` on
    ``i`` with random idle cycles (a word once offered stays until taken, the stream rule) and takes
    words from ``o`` under random back-pressure. Handshakes are read in the ReadOnly phase, after
    combinational ``ready``/``valid`` have settled; inputs change at falling edges."""

    def __init__(self, dut, rng, valid_p, ready_p):
        self.dut, self.rng, self.valid_p, self.ready_p = dut, rng, valid_p, ready_p
        self.has_input = hasattr(dut, "i__valid")
        self.feed([])

    def feed(self, words):
        """Offer ``words`` next; :attr:`sent` counts those taken."""
        self.words, self.sent, self.offering = list(words), 0, False

    async def cycle(self):
        """Run one cycle, from falling edge to falling edge; the word taken from ``o``, or None."""
        dut = self.dut
        if self.has_input:
            if not self.offering and self.sent < len(self.words) \
                    and self.rng.random() < self.valid_p:
                dut.i__payload.value = self.words[self.sent]
                self.offering = True
            dut.i__valid.value = self.offering
        ready = self.rng.random() < self.ready_p
        dut.o__ready.value = ready
        await ReadOnly()
        if self.offering and dut.i__ready.value:
            self.sent, self.offering = self.sent + 1, False
        word = dut.o__payload.value.to_unsigned() if ready and dut.o__valid.value else None
        await FallingEdge(dut.clk)
        return word

"""A cocotb bench for :class:`~spinemu.hdl.engine.LayerEngine`: load a model, run jobs, take counts.

Configuration (the JSON file named by ``SPINEMU_BENCH``; :mod:`spinemu.sim.engine_backends` writes
it, packing every word with the engine's own layouts):

* ``model``: the packed ``write`` words that load the model;
* ``jobs``: per job ``{"inputs": [packed write words], "start": packed start word,
  "max_cycles": the most cycles either the computation or the count output may take}``;
* ``last_bit``: the bit of the ``result`` payload that flags the last count;
* ``valid_p`` / ``ready_p``: per-cycle probabilities of offering a write word and of being ready for
  a count (random idle cycles and back-pressure), drawn from ``stall_seed``.

Writes ``engine.json`` into ``out_dir``: per job the raw ``result`` payload words, the engine's
``cycles`` output after the last count, and the wall-clock seconds from start to last count; and the
seconds the model load took.

A job computes for tens of thousands of cycles with nothing to drive, so the bench does not run
Python every cycle then: it waits for ``result.valid`` to rise (under a simulated-time timeout, one
timer, since :class:`~cocotb.triggers.ClockCycles` would wake Python on every edge) and only then
runs the per-cycle handshake. As in ``stream_bench``, inputs are driven and outputs sampled at
falling edges, half a cycle from the rising edges where registers change, and handshakes are read in
the ReadOnly phase, after combinational ``ready``/``valid`` have settled.
"""

import json
import random
import time
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from spinemu.sim.benches.common import PERIOD_NS, config, start


async def _transfer(dut, stream, word):
    """Offer ``word`` on ``stream`` (from a falling edge) until taken; ends at a falling edge."""
    getattr(dut, f"{stream}__payload").value = word
    getattr(dut, f"{stream}__valid").value = 1
    ready = getattr(dut, f"{stream}__ready")
    await ReadOnly()
    # A word once offered stays offered until taken (stream rule).
    while not ready.value:
        await FallingEdge(dut.clk)
        await ReadOnly()
    await FallingEdge(dut.clk)
    getattr(dut, f"{stream}__valid").value = 0


async def _write_all(dut, words, rng, valid_p):
    for word in words:
        while rng.random() >= valid_p:  # an idle cycle between writes
            await FallingEdge(dut.clk)
        await _transfer(dut, "write", word)


async def _collect(dut, rng, ready_p, last_bit, max_cycles):
    """Take counts under random back-pressure until the one flagged last; ends at a falling edge."""
    words = []
    for _ in range(max_cycles):
        ready = rng.random() < ready_p
        dut.result__ready.value = ready
        await ReadOnly()
        taken = ready and dut.result__valid.value
        word = dut.result__payload.value.to_unsigned() if taken else None
        await FallingEdge(dut.clk)
        if word is not None:
            words.append(word)
            if word >> last_bit & 1:
                dut.result__ready.value = 0
                return words
    raise AssertionError(f"{len(words)} counts, and no last one, in {max_cycles} cycles")


@cocotb.test()
async def engine(dut):
    cfg = config()
    rng = random.Random(cfg.get("stall_seed", 0))
    valid_p, ready_p = cfg.get("valid_p", 1.0), cfg.get("ready_p", 1.0)
    await start(dut)

    began = time.perf_counter()
    await _write_all(dut, cfg["model"], rng, valid_p)
    load_seconds = time.perf_counter() - began

    results = []
    for number, job in enumerate(cfg["jobs"]):
        await _write_all(dut, job["inputs"], rng, valid_p)
        began = time.perf_counter()
        await _transfer(dut, "start", job["start"])
        try:
            await with_timeout(RisingEdge(dut.result__valid), job["max_cycles"] * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"job {number}: no result after {job['max_cycles']} cycles") \
                from None
        await FallingEdge(dut.clk)
        words = await _collect(dut, rng, ready_p, cfg["last_bit"], job["max_cycles"])
        results.append({"words": words, "cycles": dut.cycles.value.to_unsigned(),
                        "seconds": time.perf_counter() - began})

    Path(cfg["out_dir"], "engine.json").write_text(json.dumps(
        {"jobs": results, "load_seconds": load_seconds}))

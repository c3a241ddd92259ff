"""A generic cocotb bench for a design with an input stream ``i`` and/or an output stream ``o``.

Configuration (the JSON file named by ``SPINEMU_BENCH``):

* ``load``: signal values to apply while ``load`` is pulsed for one cycle before streaming
  (e.g. ``{"states": ...}``), if the design has a ``load`` port;
* ``inputs``: payload words to send on ``i``, in order (omit for designs without ``i``);
* ``outputs``: how many words to collect from ``o``;
* ``valid_p`` / ``ready_p``: per-cycle probabilities of offering an input word and of being ready
  for an output word (random idle cycles and back-pressure), drawn from ``stall_seed``;
* ``max_cycles``: the bench fails if the outputs have not all arrived by then.

Writes ``outputs.json`` (the words) and ``timing.json`` (cycles, seconds) into ``out_dir``.
Inputs are driven and outputs sampled half a cycle away from the rising edge; handshakes are read
in the ReadOnly phase, after combinational ``ready``/``valid`` have settled.
"""

import json
import random
import time
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge

from spinemu.sim.benches.common import Handshake, config, start


@cocotb.test()
async def stream(dut):
    cfg = config()
    rng = random.Random(cfg.get("stall_seed", 0))
    valid_p, ready_p = cfg.get("valid_p", 1.0), cfg.get("ready_p", 1.0)
    inputs, wanted = list(cfg.get("inputs", [])), cfg["outputs"]
    await start(dut)
    if "load" in cfg:
        for name, value in cfg["load"].items():
            getattr(dut, name).value = value
        dut.load.value = 1
        await FallingEdge(dut.clk)
        dut.load.value = 0

    outputs, cycles, began = [], 0, time.perf_counter()
    streams = Handshake(dut, rng, valid_p, ready_p)
    streams.feed(inputs)
    while len(outputs) < wanted:
        if cycles >= cfg.get("max_cycles", 100 * (wanted + len(inputs)) + 1000):
            raise AssertionError(f"only {len(outputs)} of {wanted} outputs after {cycles} cycles")
        word = await streams.cycle()
        if word is not None:
            outputs.append(word)
        cycles += 1
    sent = streams.sent
    out = Path(cfg["out_dir"])
    (out / "outputs.json").write_text(json.dumps(outputs))
    (out / "timing.json").write_text(json.dumps(
        {"cycles": cycles, "seconds": time.perf_counter() - began, "inputs_sent": sent}))

"""cocotb bench for a design behind a byte stream (``i``/``o``): send each request's bytes, read its
answer up to the 0x00 delimiter, stop-and-wait as a host does.

Configuration: ``requests`` (hex strings), ``valid_p`` / ``ready_p`` (per-cycle probabilities of
offering a byte and of taking one), ``stall_seed``, ``max_cycles`` per answer. Writes
``answers.json`` (hex strings) into ``out_dir``.
"""

import json
import random
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge

from spinemu.sim.benches.common import Handshake, config, quiet_link, start


@cocotb.test()
async def link(dut):
    cfg = config()
    rng = random.Random(cfg.get("stall_seed", 0))
    valid_p, ready_p = cfg.get("valid_p", 1.0), cfg.get("ready_p", 1.0)
    limit = cfg.get("max_cycles", 1_000_000)
    quiet_link(dut, o_ready=0)
    await start(dut)
    answers = []
    streams = Handshake(dut, rng, valid_p, ready_p)
    for text in cfg["requests"]:
        data, answer, cycles = bytes.fromhex(text), bytearray(), 0
        streams.feed(data)
        while not (answer and answer[-1] == 0):
            if streams.sent == len(data) and not answer and not dut.o__valid.value:
                # The design is computing: wait for its first byte without a Python step per cycle.
                dut.i__valid.value = 0
                await First(RisingEdge(dut.o__valid), ClockCycles(dut.clk, limit))
                await FallingEdge(dut.clk)
            byte = await streams.cycle()
            if byte is not None:
                answer.append(byte)
            cycles += 1
            if cycles > limit:
                raise AssertionError(f"no whole answer to request {len(answers)} in {limit} cycles")
        answers.append(answer.hex())
    (Path(cfg["out_dir"]) / "answers.json").write_text(json.dumps(answers))

"""cocotb bench for a design behind a byte stream (``i``/``o``): send each request's bytes, read its
answer up to the 0x00 delimiter, stop-and-wait as a host does.

Configuration: ``requests`` (hex strings), ``valid_p`` / ``ready_p`` (per-cycle probabilities of
offering a byte and of taking one), ``stall_seed``, ``limits`` (for each request, the cycles within
which its whole answer must have come, from its first byte offered). Writes ``answers.json``: the
answers (hex strings) and the cycles each took, into ``out_dir``.
"""

import json
import random
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge
from cocotb.utils import get_sim_time

from spinemu.sim.benches.common import PERIOD_NS, Handshake, config, start


def _now():
    return int(get_sim_time(unit="ns")) // PERIOD_NS


@cocotb.test()
async def link(dut):
    cfg = config()
    rng = random.Random(cfg.get("stall_seed", 0))
    valid_p, ready_p = cfg.get("valid_p", 1.0), cfg.get("ready_p", 1.0)
    await start(dut)
    answers, cycles = [], []
    streams = Handshake(dut, rng, valid_p, ready_p)
    for k, (text, limit) in enumerate(zip(cfg["requests"], cfg["limits"], strict=True)):
        data, answer, began = bytes.fromhex(text), bytearray(), _now()
        streams.feed(data)
        while not (answer and answer[-1] == 0):
            left = limit - (_now() - began)
            if left <= 0:
                raise AssertionError(f"no whole answer to request {k} ({text}) in {limit} cycles")
            if streams.sent == len(data) and not answer and not dut.o__valid.value:
                # The design is computing: wait for its first byte without a Python step per cycle.
                dut.i__valid.value = 0
                await First(RisingEdge(dut.o__valid), ClockCycles(dut.clk, left))
                await FallingEdge(dut.clk)
                continue
            byte = await streams.cycle()
            if byte is not None:
                answer.append(byte)
        answers.append(answer.hex())
        cycles.append(_now() - began)
    (Path(cfg["out_dir"]) / "answers.json").write_text(
        json.dumps({"answers": answers, "cycles": cycles}))

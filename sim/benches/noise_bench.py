"""cocotb bench for :class:`~spinemu.hdl.noise.NoiseBank`: load states, collect codes.

Configuration: ``blocks``, ``samples``, ``states`` (one LFSR state per block), ``ready_p`` (the
probability that ``o.ready`` is high in a cycle: random back-pressure) and ``stall_seed``. Writes
``codes.npy`` (int16, shape (samples, blocks)) and ``cycles.json`` into ``out_dir``.
"""

import json
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from spinemu.hdl.noise import CODE_WIDTH
from spinemu.sim.benches.common import config, start, unpack_signed


@cocotb.test()
async def noise_stream(dut):
    cfg = config()
    blocks, samples = cfg["blocks"], cfg["samples"]
    rng = random.Random(cfg["stall_seed"])
    await start(dut)
    dut.states.value = sum(s << (64 * j) for j, s in enumerate(cfg["states"]))
    dut.load.value = 1
    await FallingEdge(dut.clk)
    dut.load.value = 0

    words, cycles, began = [], 0, time.perf_counter()
    valid, ready, payload = dut.o__valid, dut.o__ready, dut.o__payload
    while len(words) < samples:
        r = rng.random() < cfg["ready_p"]
        ready.value = r
        if r and valid.value:
            words.append(payload.value.to_unsigned())
        await FallingEdge(dut.clk)
        cycles += 1
    elapsed = time.perf_counter() - began
    out = Path(cfg["out_dir"])
    np.save(out / "codes.npy", np.array(unpack_signed(words, CODE_WIDTH, blocks), dtype=np.int16))
    (out / "cycles.json").write_text(json.dumps({"cycles": cycles, "seconds": elapsed}))

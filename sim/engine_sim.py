"""A :class:`~spinemu.hdl.engine.LayerEngine` in a simulator: load a model, run jobs.

Writes go in with random idle cycles and results come out under random back-pressure, so a result
that depends on handshake timing shows up as a mismatch with the golden model: in the Amaranth
simulator (:func:`run_engine_amaranth`) or as Verilog in a cocotb bench
(:func:`run_engine_verilog`, :mod:`spinemu.sim.benches.engine_bench`).
"""

import json
import random
import shutil

import numpy as np

from spinemu.hdl.engine import LayerEngine
from spinemu.hdl.memory_map import input_writes, job_cycles, model_writes

from . import rtl
from .streams import receive, run, send

__all__ = ["run_engine_amaranth", "run_engine_verilog"]


def run_engine_amaranth(config, model, inputs, seeds, samples, *, valid_p=0.8, ready_p=0.8,
                        stall_seed=0):
    """Counts ``(jobs, N_L)`` and the engine's cycles per job, from the Amaranth simulator."""
    dut = LayerEngine(config)
    rng = random.Random(stall_seed)
    idle, stall = 1 - valid_p, 1 - ready_p
    counts, cycles = [], []

    def words(writes):
        return [{"region": region, "addr": addr, "data": value} for region, addr, value in writes]

    async def bench(ctx):
        await send(ctx, dut.write, words(model_writes(model, config)), rng, idle)
        for x, seed in zip(inputs, seeds, strict=True):
            await send(ctx, dut.write, words(input_writes(x)), rng, idle)
            await send(ctx, dut.start, [{"seed": int(seed), "samples": samples}], rng, idle)
            results = await receive(ctx, dut.result, None, rng, stall, until=lambda p: p.last)
            counts.append([p.count for p in results])
            cycles.append(ctx.get(dut.cycles))

    run(dut, bench)
    return np.array(counts, dtype=np.int64), np.array(cycles)


def run_engine_verilog(simulator, config, model, inputs, seeds, samples, *, valid_p=1.0,
                       ready_p=1.0, stall_seed=0):
    """Counts ``(jobs, N_L)``, the engine's cycles per job and the seconds the jobs took (without
    the build and the model load), from the engine's Verilog under ``simulator``."""
    dut = LayerEngine(config)

    def pack(writes):
        return [dut.write_layout.const({"region": r, "addr": a, "data": d}).as_bits()
                for r, a, d in writes]

    start_layout = dut.start.payload.shape()
    # Either phase (computing, handing out counts under back-pressure) ends well inside this.
    max_cycles = (2 * job_cycles(model.sizes, config, samples)
                  + int(8 * model.sizes[-1] / ready_p) + 1000)
    bench = {
        "model": pack(model_writes(model, config)),
        "jobs": [{"inputs": pack(input_writes(x)), "max_cycles": max_cycles,
                  "start": start_layout.const({"seed": int(s), "samples": samples}).as_bits()}
                 for x, s in zip(inputs, seeds, strict=True)],
        "last_bit": dut.result.payload.shape()["last"].offset,
        "valid_p": valid_p, "ready_p": ready_p, "stall_seed": stall_seed,
    }
    out = rtl.run_bench(dut, simulator=simulator, test_module="spinemu.sim.benches.engine_bench",
                        config=bench)
    jobs = json.loads((out / "engine.json").read_text())["jobs"]
    shutil.rmtree(out, ignore_errors=True)
    result_layout = dut.result.payload.shape()
    counts = [[result_layout.from_bits(w).count for w in job["words"]] for job in jobs]
    return (np.array(counts, dtype=np.int64).reshape(len(jobs), -1),
            np.array([job["cycles"] for job in jobs], dtype=np.int64),
            sum(job["seconds"] for job in jobs))

"""Drive a :class:`~spinemu.hdl.engine.LayerEngine` in the Amaranth simulator: load a model, run jobs.

Writes go in with random idle cycles and results come out under random back-pressure, so a result
that depends on handshake timing shows up as a mismatch with the golden model.
"""

import random

import numpy as np
from amaranth.sim import Simulator

from spinemu.hdl.engine import LayerEngine, input_writes, model_writes

__all__ = ["run_engine_amaranth"]


def run_engine_amaranth(config, model, inputs, seeds, samples, *, valid_p=0.8, ready_p=0.8,
                        stall_seed=0):
    """Counts ``(jobs, N_L)`` and the engine's cycles per job, from the Amaranth simulator."""
    dut = LayerEngine(config)
    rng = random.Random(stall_seed)
    counts, cycles = [], []
    layout = dut.write_layout

    async def write_all(ctx, writes):
        for region, addr, value in writes:
            while rng.random() >= valid_p:
                ctx.set(dut.write.valid, 0)
                await ctx.tick()
            ctx.set(dut.write.payload, layout.const({"region": region, "addr": addr,
                                                     "data": value}))
            ctx.set(dut.write.valid, 1)
            await ctx.tick().until(dut.write.ready)
        ctx.set(dut.write.valid, 0)

    async def bench(ctx):
        await write_all(ctx, model_writes(model, config))
        for x, seed in zip(inputs, seeds):
            await write_all(ctx, input_writes(x))
            ctx.set(dut.start.payload, {"seed": int(seed), "samples": samples})
            ctx.set(dut.start.valid, 1)
            await ctx.tick().until(dut.start.ready)
            ctx.set(dut.start.valid, 0)
            job = []
            while True:
                ready = rng.random() < ready_p
                ctx.set(dut.result.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(dut.result.valid, dut.result.payload)
                if valid and ready:
                    job.append(payload.count)
                    if payload.last:
                        break
            ctx.set(dut.result.ready, 0)
            counts.append(job)
            cycles.append(ctx.get(dut.cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(counts, dtype=np.int64), np.array(cycles)

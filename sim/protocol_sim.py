"""Exchange frames with a :class:`~spinemu.hdl.protocol_engine.ProtocolEngine` in the Amaranth
simulator: each request's bytes go in with random idle cycles, and the answer is read under random
back-pressure up to its delimiter (stop-and-wait, as a host does)."""

import random

from amaranth.sim import Simulator

from spinemu.hdl.framing import DELIMITER
from spinemu.hdl.protocol_engine import ProtocolEngine

__all__ = ["exchange_amaranth"]


def exchange_amaranth(config, max_payload, requests, *, valid_p=0.7, ready_p=0.7, stall_seed=0,
                      max_cycles=2_000_000):
    """The design's answer to each of ``requests`` (raw bytes on the link), as a list of bytes."""
    dut = ProtocolEngine(config, max_payload)
    rng = random.Random(stall_seed)
    answers = []

    async def bench(ctx):
        cycles = 0
        for data in requests:
            answer, sent = bytearray(), 0
            while not (answer and answer[-1] == DELIMITER):
                if sent < len(data) and rng.random() < valid_p:
                    ctx.set(dut.i.valid, 1)
                    ctx.set(dut.i.payload, data[sent])
                else:
                    ctx.set(dut.i.valid, 0)
                ready = rng.random() < ready_p
                ctx.set(dut.o.ready, ready)
                _, _, i_valid, i_ready, o_valid, o_byte = await ctx.tick().sample(
                    dut.i.valid, dut.i.ready, dut.o.valid, dut.o.payload)
                if i_valid and i_ready:
                    sent += 1
                if o_valid and ready:
                    answer.append(o_byte)
                cycles += 1
                if cycles > max_cycles:
                    raise TimeoutError(f"no complete answer after {max_cycles} cycles")
            ctx.set(dut.i.valid, 0)
            answers.append(bytes(answer))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return answers

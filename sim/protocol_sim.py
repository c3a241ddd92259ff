"""Exchange frames with a :class:`~spinemu.hdl.protocol_engine.ProtocolEngine` in the Amaranth
simulator: each request's bytes go in with random idle cycles, and the answer is read under random
back-pressure up to its delimiter (stop-and-wait, as a host does)."""

import random

from spinemu.hdl.framing import DELIMITER
from spinemu.hdl.protocol_engine import ProtocolEngine

from .streams import receive, run, send

__all__ = ["exchange_amaranth"]


def exchange_amaranth(config, max_payload, requests, *, valid_p=0.7, ready_p=0.7, stall_seed=0,
                      max_cycles=2_000_000):
    """The design's answer to each of ``requests`` (raw bytes on the link), as a list of bytes;
    TimeoutError if they are not all complete after ``max_cycles`` cycles."""
    dut = ProtocolEngine(config, max_payload)
    rng = random.Random(stall_seed)
    send_rng, receive_rng = random.Random(rng.random()), random.Random(rng.random())
    answers = []

    async def host(ctx):
        for k, data in enumerate(requests):
            while len(answers) < k:     # stop and wait for the previous answer
                await ctx.tick()
            await send(ctx, dut.i, data, send_rng, 1 - valid_p)

    async def reader(ctx):
        for _ in requests:
            answer = await receive(ctx, dut.o, None, receive_rng, 1 - ready_p,
                                   until=lambda byte: byte == DELIMITER)
            answers.append(bytes(answer))

    run(dut, host, reader, cycles=max_cycles)
    return answers

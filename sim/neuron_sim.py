"""A single :class:`~spinemu.hdl.neuron.NoisyNeuron` in a simulator: its spins for a run of inputs.

The neuron is loaded from the job seed, then takes one ``{a, theta, sigma}`` per cycle (``theta``
and ``sigma`` fixed) and answers one spin each, at full rate (the stream tests of the neuron drive
it under random stalls: ``tests/test_neuron.py``).
"""

import random

import numpy as np

from spinemu.hdl.neuron import NoisyNeuron
from spinemu.hdl.seeding import seed_state

from . import rtl
from .streams import receive, run, send

__all__ = ["neuron_spins_amaranth", "neuron_spins_verilog"]


def _payloads(dut, theta, sigma, inputs):
    """The input payload of each distinct ``a`` of ``inputs``."""
    return {int(x): dut.input_layout.const({"a": int(x), "theta": theta, "sigma": sigma})
            for x in np.unique(inputs)}


def neuron_spins_amaranth(index, theta, sigma, inputs, seed, fmt, table=None):
    """``(spins, cycles)`` of neuron ``index`` (noise table ``table``, the Gaussian by default)
    on ``inputs`` in the Amaranth simulator."""
    dut = NoisyNeuron(index, fmt, table)
    words = _payloads(dut, theta, sigma, inputs)
    spins = []

    async def feed(ctx):
        ctx.set(dut.seed, seed_state(seed, index))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        await send(ctx, dut.i, [words[int(x)] for x in inputs], random.Random(0), idle=0)

    async def take(ctx):
        taken = await receive(ctx, dut.o, len(inputs), random.Random(0), stall=0)
        spins.extend(p.spin for p in taken)

    cycles = run(dut, feed, take)
    return np.array(spins, dtype=np.uint8), cycles


def neuron_spins_verilog(simulator, index, theta, sigma, inputs, seed, fmt, table=None):
    """``(spins, cycles)`` of neuron ``index`` (noise table ``table``) on ``inputs``: its Verilog
    under ``simulator``."""
    dut = NoisyNeuron(index, fmt, table)
    words = {a: w.as_bits() for a, w in _payloads(dut, theta, sigma, inputs).items()}
    result = rtl.run_stream_bench(dut, simulator=simulator,
                                  inputs=[words[int(x)] for x in inputs], outputs=len(inputs),
                                  load={"seed": seed_state(seed, index)})
    spin = dut.output_layout["spin"]
    mask = (1 << spin.width) - 1
    return (np.array([(w >> spin.offset) & mask for w in result.outputs], dtype=np.uint8),
            result.cycles)

"""The noise schedule straight from its definition (``docs/engine.md``), for the tests of the
noise unit, the golden model and training: stream ``v`` is the LFSR of ``STREAM_TAPS`` loaded
with ``seed_state(seed, v)``, and per sample and layer neuron ``j`` takes the next code of stream
``j mod V``."""

import numpy as np

from spinemu.hdl.noise_unit import STREAM_TAPS
from spinemu.hdl.seeding import seed_state
from spinemu.sim import golden


def stream_codes(seed, streams, count, table):
    """The first ``count`` codes of each stream after loading ``seed``: ``(streams, count)``."""
    states = [seed_state(seed, v) for v in range(streams)]
    words = golden.lfsr_outputs(states, count, width=64, taps=STREAM_TAPS, step=32)
    return golden.words_to_codes(words, table)


def schedule(seed, streams, sizes, samples, table):
    """A list of one code array per (sample, layer), neuron ``j`` of a layer of ``sizes`` taking
    the next code of stream ``j mod streams``."""
    taken = [sum(-(-(n - v) // streams) for n in sizes if n > v) for v in range(streams)]
    codes = stream_codes(seed, streams, samples * max(taken), table)
    at, out = [0] * streams, []
    for _ in range(samples):
        for n in sizes:
            layer = []
            for j in range(n):
                layer.append(codes[j % streams, at[j % streams]])
                at[j % streams] += 1
            out.append(np.array(layer))
    return out

"""The layer engine's memory map, configuration and job arithmetic, in plain Python.

What the gateware (:class:`~spinemu.hdl.engine.LayerEngine`), the golden model, the firmware and
the host share about an engine: its compile-time parameters (:class:`EngineConfig`), the regions a
write addresses (:class:`Region`), how a network is sized into a configuration, checked against
one and laid out in its memories (:func:`model_writes`), and what a job takes (its input vector,
cycles and multiply-accumulates). ``docs/engine.md`` is the specification. No gateware is imported
here.
"""

from dataclasses import dataclass, field

import numpy as np
from amaranth.lib import data, enum

from . import seeding
from .formats import NeuronFormat
from .model_image import ModelError
from .noise_table import ENTRIES, ENTRY_BITS, NoiseTable, gaussian

__all__ = ["ADDR_BITS", "COUNT_BITS", "SAMPLE_BITS", "CONFIG_BITS", "NOISE_STREAMS", "Region",
           "EngineConfig",
           "groups", "network_words", "sized_config", "fitted_config", "check_fits",
           "model_writes", "input_writes", "job_inputs", "MAC_LATENCY", "spin_latency", "job_cycles",
           "seeding_cycles",
           "word_utilisation", "macs_per_job"]

COUNT_BITS = 16     # a spin count of the last layer
SAMPLE_BITS = 16    # a job's sample count S
ADDR_BITS = 20      # a write address
CONFIG_BITS = 16    # a CONFIG word: L or a layer size
#: The noise streams every layer engine draws from (V, ``docs/engine.md``): a job's samples depend
#: on it, so it is one number for every board and backend, and an engine has at most V lanes.
NOISE_STREAMS = 16


class Region(enum.Enum, shape=3):
    """What a write on the engine's ``write`` port addresses (``docs/engine.md``)."""

    CONFIG = 0   # addr 0: layers L; addr 1 + l: size N_l, l = 0..L
    INPUT = 1    # addr i: input x_i (layer 0)
    WEIGHT = 2   # addr = word * W + slot; a slot holds one weight per lane, lane 0 lowest
    PARAM = 3    # addr = lane * param_depth + word: {bias, theta, sigma}
    NOISE = 4    # addr j: noise table entry j, q | alias << 18, written into every lane's table


@dataclass(frozen=True)
class EngineConfig:
    """Compile-time parameters of a layer engine.

    ``lanes`` (a power of two) neurons are computed at once. ``max_layers``, ``max_inputs`` (N_0)
    and ``max_width`` (any N_l, l >= 1) bound the networks it runs; ``weight_depth`` and
    ``param_depth`` are the per-lane memory sizes in words. ``inputs_per_cycle`` (W, a power of
    two 1..64) is the number of inputs a lane adds per cycle in the spin layers: a weight word
    holds W slots of one weight per lane. ``noise`` is the noise table the design is built with
    (NOISE writes replace it).
    """

    lanes: int = 4
    max_layers: int = 4
    max_inputs: int = 128
    max_width: int = 256
    weight_depth: int = 8192
    param_depth: int = 256
    input_bits: int = 5
    weight_bits: int = 8
    inputs_per_cycle: int = 1
    fmt: NeuronFormat = field(default_factory=lambda: NeuronFormat(a_width=20))
    # IDENTIFY reports the loaded table by its hash; the build hash leaves the table out
    noise: NoiseTable = field(default_factory=gaussian, repr=False)

    @property
    def seed_digit_bits(self):
        """The bits of fmix64's constants the seeder multiplies by a cycle: as many as lanes, up
        to 4, since layer 1's once-per-job pass, behind which the seeding runs, shrinks as
        ``1 / lanes`` (and the adders cost most on the small boards)."""
        return min(4, self.lanes)

    def __post_init__(self):
        if self.lanes < 1 or self.lanes & (self.lanes - 1) or self.lanes > NOISE_STREAMS:
            raise ValueError(f"lanes must be a power of two 1..{NOISE_STREAMS} (the noise "
                             f"streams), not {self.lanes}")
        for name in ("max_layers", "max_inputs", "max_width", "weight_depth", "param_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not isinstance(self.noise, NoiseTable):
            raise ValueError(f"noise must be a NoiseTable, not {type(self.noise).__name__}")
        w = self.inputs_per_cycle
        if not isinstance(w, int) or w < 1 or w & (w - 1) or w > 64:
            raise ValueError(f"inputs_per_cycle must be a power of two 1..64, not {w!r}")
        if max(self.weight_depth * w, self.lanes * self.param_depth) > 1 << ADDR_BITS:
            raise ValueError(f"a memory region exceeds the {ADDR_BITS}-bit write address")

    def as_dict(self):
        """The parameters as JSON-able values (build reports): the neuron format as a dict, the
        noise table by its name and hash (``{"shape", "hash"}``)."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("fmt", "noise")}
        return {**values, "fmt": dict(vars(self.fmt)),
                "noise": {"shape": self.noise.name, "hash": f"{self.noise.hash:08x}"}}

    @classmethod
    def from_dict(cls, values):
        """The configuration :meth:`as_dict` describes, its noise table left at the default: a
        report names the build's table but does not hold it, and every model load writes the
        model's own table."""
        values = dict(values)
        values.pop("noise", None)
        return cls(**{**values, "fmt": NeuronFormat(**values["fmt"])})

    @property
    def max_groups(self):
        return groups(self.max_width, self.lanes)

    @property
    def lane_bits(self):
        return (self.lanes - 1).bit_length()

    @property
    def param_layout(self):
        f = self.fmt
        return data.StructLayout({"bias": f.a.shape, "theta": f.theta.shape, "sigma": f.sigma.shape})

    @property
    def data_bits(self):
        """Width of the data of a write: the widest word of any region."""
        return max(self.word_bits(r) for r in Region)

    def word_bits(self, region):
        """Bits of one word (one address) of ``region``."""
        return {Region.CONFIG: CONFIG_BITS, Region.INPUT: self.input_bits,
                Region.WEIGHT: self.lanes * self.weight_bits,
                Region.PARAM: self.param_layout.size, Region.NOISE: ENTRY_BITS}[Region(region)]

    def depth(self, region):
        """Addresses in ``region`` (WEIGHT: one per slot); CONFIG holds L and N_0..N_L for up to
        ``max_layers`` layers."""
        return {Region.CONFIG: self.max_layers + 2, Region.INPUT: self.max_inputs,
                Region.WEIGHT: self.weight_depth * self.inputs_per_cycle,
                Region.PARAM: self.lanes * self.param_depth, Region.NOISE: ENTRIES}[Region(region)]


def groups(size, lanes):
    """Groups of ``lanes`` neurons that cover a layer of ``size`` (the last may be partial)."""
    return -(-size // lanes)


def network_words(network, lanes, inputs_per_cycle=1):
    """Weight words and parameter entries per lane that a network of layer sizes ``network``
    (N_0, ..., N_L) takes in an engine with ``lanes`` lanes and W = ``inputs_per_cycle`` slots per
    weight word: ``ceil(N_(l-1) / W)`` words and one entry per group of each layer ``l``."""
    per_layer = [groups(n, lanes) for n in network[1:]]
    words = sum(g * groups(n, inputs_per_cycle) for g, n in zip(per_layer, network[:-1], strict=True))
    return words, sum(per_layer)


def sized_config(network, lanes, weight_quantum=1, *, inputs_per_cycle=1, round_params=True,
                 **formats):
    """The :class:`EngineConfig` with ``lanes`` lanes sized for layer sizes ``network``.

    ``max_layers``, ``max_inputs`` and ``max_width`` are the network's; the weight memory holds
    its weight words (:func:`network_words`) rounded up to a multiple of ``weight_quantum`` (the
    depth of the RAM blocks it is built from, so no block is left part-used), the parameter
    memories its entries per lane, rounded up to a power of two unless ``round_params`` is false.
    ``formats`` (``input_bits``, ``weight_bits``, ``fmt``) default to :class:`EngineConfig`'s.
    ValueError for a network without a layer or ``lanes`` the design does not allow.
    """
    if len(network) < 2 or min(network) < 1:
        raise ValueError(f"a network needs an input size and at least one layer, not {network}")
    words, entries = network_words(network, lanes, inputs_per_cycle)
    return EngineConfig(lanes=lanes, inputs_per_cycle=inputs_per_cycle,
                        max_layers=len(network) - 1, max_inputs=network[0],
                        max_width=max(network[1:]),
                        weight_depth=-(-words // weight_quantum) * weight_quantum,
                        param_depth=1 << (entries - 1).bit_length() if round_params else entries,
                        **formats)


def fitted_config(model, lanes=4, inputs_per_cycle=1):
    """The :class:`EngineConfig` just large enough for ``model`` with ``lanes`` lanes and W =
    ``inputs_per_cycle``: its layers,
    sizes, input and weight bits and neuron format, and exactly the weight words and per-lane
    parameter entries it needs (the counts :func:`check_fits` checks). ValueError if ``lanes`` is
    not a power of two the design allows."""
    return sized_config(model.sizes, lanes, inputs_per_cycle=inputs_per_cycle, round_params=False,
                        input_bits=model.input_bits,
                        weight_bits=model.weight_bits, fmt=model.fmt)


def check_fits(model, config):
    """Raise :class:`~spinemu.hdl.model_image.ModelError` unless ``config`` can run ``model``."""
    c, reasons = config, []
    if model.layers > c.max_layers:
        reasons.append(f"{model.layers} layers, the design holds at most {c.max_layers}")
    if model.sizes[0] > c.max_inputs:
        reasons.append(f"{model.sizes[0]} inputs, the design takes at most {c.max_inputs}")
    if max(model.sizes[1:]) > c.max_width:
        reasons.append(f"a layer of {max(model.sizes[1:])} neurons, the design's limit is "
                       f"{c.max_width}")
    if model.input_bits > c.input_bits or model.weight_bits > c.weight_bits:
        reasons.append(f"{model.input_bits}-bit inputs and {model.weight_bits}-bit weights, the "
                       f"design has {c.input_bits} and {c.weight_bits}")
    if model.fmt != c.fmt:
        reasons.append(f"neuron format {model.fmt}, the design uses {c.fmt}")
    words, entries = network_words(model.sizes, c.lanes, c.inputs_per_cycle)
    if words > c.weight_depth:
        reasons.append(f"{words} weight words, the design has {c.weight_depth}")
    if entries > c.param_depth:
        reasons.append(f"{entries} parameter entries per lane, the design has {c.param_depth}")
    if reasons:
        raise ModelError("the model does not fit this design: " + "; ".join(reasons))


def model_writes(model, config):
    """The ``(region, addr, data)`` writes that load ``model`` into an engine (``docs/engine.md``).

    Lane ``p`` computes neurons ``j = g * lanes + p`` of every layer, group by group. A weight
    word holds W = ``inputs_per_cycle`` slots, each one weight per lane (lane 0 lowest); slot ``s``
    of the ``k``-th word of a group holds the weights for input ``W k + s``. Each group takes
    ``ceil(N_(l-1) / W)`` words, group after group from layer 1 on, and slot ``s`` of word ``w`` is
    written at address ``w * W + s``; the unused slots of a partial last word are written with
    zeros. Lane ``p``'s ``{bias, theta, sigma}`` entries follow the same group order. Lanes beyond
    a layer's last neuron get zero weights and ``(0, 0, sigma=1)``.
    Last, the model's noise table, entry 0 first (so the design's table hash is the table's).
    """
    check_fits(model, config)
    c, P, W = config, config.lanes, config.inputs_per_cycle
    writes = [(Region.CONFIG, 0, model.layers)]
    writes += [(Region.CONFIG, 1 + l, n) for l, n in enumerate(model.sizes)]
    mask = (1 << c.weight_bits) - 1
    slot, entry = 0, 0
    for l in range(model.layers):
        n_out, n_in = model.sizes[l + 1], model.sizes[l]
        for g in range(groups(n_out, P)):
            rows = [model.weights[l][j] if j < n_out else [0] * n_in
                    for j in range(g * P, g * P + P)]
            for i in range(groups(n_in, W) * W):
                packed = 0 if i >= n_in else sum((int(rows[p][i]) & mask) << (p * c.weight_bits)
                                                 for p in range(P))
                writes.append((Region.WEIGHT, slot + i, packed))
            slot += groups(n_in, W) * W
            for p in range(P):
                j = g * P + p
                values = ({"bias": int(model.bias[l][j]), "theta": int(model.theta[l][j]),
                           "sigma": int(model.sigma[l][j])} if j < n_out
                          else {"bias": 0, "theta": 0, "sigma": 1})
                writes.append((Region.PARAM, p * c.param_depth + entry,
                               c.param_layout.const(values).as_bits()))
            entry += 1
    writes += [(Region.NOISE, j, word) for j, word in enumerate(model.noise.entries)]
    return writes


def input_writes(x):
    """The writes that load input vector ``x`` (layer 0 values)."""
    return [(Region.INPUT, i, int(v)) for i, v in enumerate(x)]


def job_inputs(images, masks):
    """The engine's input vector of each job: the image with unknown pixels zeroed, then the mask."""
    images, masks = np.asarray(images), np.asarray(masks)
    if images.shape != masks.shape:
        raise ValueError(f"images {images.shape} and masks {masks.shape} differ in shape")
    flat = images.reshape(len(images), -1) * masks.reshape(len(masks), -1)
    return np.concatenate([flat, masks.reshape(len(masks), -1)], axis=1).astype(np.int64)


#: Cycles from the read of a layer-1 weight to its product entering the accumulators: the RAM, its
#: output register, the register of the weight selected from the word, the product's register.
MAC_LATENCY = 4


def spin_latency(inputs_per_cycle):
    """Cycles from the read of a weight word to its sum entering the accumulators: the weight RAM,
    its output register, then one register per two levels of the lanes' adder trees."""
    return 2 + ((inputs_per_cycle.bit_length() - 1) + 1) // 2


def _pass_cycles(sizes, lanes, inputs_per_cycle):
    """``(cycles, words)`` of each spin layer 2..L in one sample pass: from the cycle the feeder
    starts the layer to the cycle it starts the next, and the weight words it reads in between."""
    d = spin_latency(inputs_per_cycle)
    layers = []
    for l in range(2, len(sizes)):
        g, k = groups(sizes[l], lanes), groups(sizes[l - 1], inputs_per_cycle)
        # 3 to start (2 of them waiting for the spins), groups every max(k, d + 2) cycles (a sum
        # must leave the sum register before the next), d + 1 to offer the last group's sum
        layers.append((4 + d + k + (g - 1) * max(k, d + 2), g * k))
    return layers


def job_cycles(sizes, config, samples):
    """The engine's cycles for one job (``LayerEngine.cycles``) of a network of layer sizes
    ``sizes`` on an engine of :class:`EngineConfig` ``config`` (its lanes and W matter), when
    results are taken at once.

    The seeding of the noise streams (:func:`seeding_cycles`) while layer 1's pre-activations
    are computed once (``N_0 + 2 + MAC_LATENCY`` per group, less 1 shared with the first sample
    pass),
    whichever takes longer; then per sample layer 1 from the cache, ``G_1 + 1`` cycles (``2 G_1``
    when it is the last layer), and, for each later layer of ``G`` groups of
    ``k = ceil(N_(l-1) / W)`` words, ``4 + D + k + (G - 1) max(k, D + 2)`` with
    ``D = spin_latency(W)`` (its inputs' spins must be written first, then its groups follow each
    other), and finally 2 cycles per count out and 5 to drain.
    ``docs/engine.md`` derives it state by state.
    """
    lanes = config.lanes
    g1 = groups(sizes[1], lanes)
    # layer 1 streams from the cache, a group a cycle; as the last layer every other cycle,
    # each group's counts being updated in the cycle after it is written
    cached = g1 + 1 if len(sizes) > 2 else 2 * g1
    per_sample = cached + sum(c for c, _ in _pass_cycles(sizes, lanes, config.inputs_per_cycle))
    # where layer 1's once-per-job pass outlasts the seeding, its last cycle (the offer) is the
    # first sample pass's read of group 0
    return (max(seeding_cycles(config), g1 * (sizes[0] + 2 + MAC_LATENCY) - 1) + samples * per_sample
            + 2 * sizes[-1] + 5)


def seeding_cycles(config):
    """Cycles from a job's start to the last noise stream loaded: the seeder's
    (:func:`~spinemu.hdl.seeding.seeding_cycles`) for :data:`NOISE_STREAMS` streams."""
    return seeding.seeding_cycles(NOISE_STREAMS, config.seed_digit_bits)


def word_utilisation(sizes, config):
    """On an engine of :class:`EngineConfig` ``config``, the fraction of the cycles of one sample
    pass spent on layers 2..L (from the cycle the
    feeder starts a layer's first group to the cycle it starts the next layer, or the pass ends)
    in which the weight memory delivers a word to the adder trees; 1.0 for a single-layer
    network, which has no spin layer."""
    layers = _pass_cycles(sizes, config.lanes, config.inputs_per_cycle)
    cycles = sum(c for c, _ in layers)
    return sum(w for _, w in layers) / cycles if cycles else 1.0


def macs_per_job(sizes, samples):
    """Multiply-accumulates of one job: layer 1 once, layers 2..L once per sample."""
    return sizes[0] * sizes[1] + samples * sum(sizes[l] * sizes[l + 1]
                                               for l in range(1, len(sizes) - 1))

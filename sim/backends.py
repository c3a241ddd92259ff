"""The backends, each named once: where the design's blocks are computed.

``golden`` is the bit-exact numpy golden model; ``amaranth`` runs the gateware in the Amaranth
simulator; ``icarus`` and ``verilator`` run its generated Verilog under cocotb (and the simulated
board on ``verilator`` is the native build, :mod:`spinemu.sim.board.native`). Every backend gives
the same codes, spins and counts for the same arguments (contract 2).

A :class:`Backend` runs noise blocks (:meth:`~Backend.noise`), one neuron
(:meth:`~Backend.neuron`), the layer engine (:meth:`~Backend.engine`) and the whole board
(:meth:`~Backend.board`); the entry points that check their arguments are
:func:`~spinemu.sim.noise_backends.generate_noise`,
:func:`~spinemu.sim.engine_backends.run_engine` and :func:`~spinemu.sim.board.start_server`.
:func:`find_backend` looks one up by name in :data:`BACKENDS`. The simulator drivers are imported
when first used, so that the golden model loads no simulator.
"""

import abc
import time

import numpy as np

from spinemu.hdl.memory_map import job_cycles

__all__ = ["Backend", "BACKENDS", "find_backend"]


class Backend(abc.ABC):
    """What one backend runs. ``cycles`` are simulated clock cycles (``None`` for the golden
    model, which has no clock); ``seconds`` exclude building a simulation."""

    name: str

    @abc.abstractmethod
    def noise(self, seed, blocks, samples, ready_p, stall_seed, progress, table):
        """``(codes, cycles, seconds)``: ``samples`` codes of noise blocks ``0 .. blocks-1`` with
        noise table ``table``, loaded from job seed ``seed`` (int16 ``(samples, blocks)``)."""

    @abc.abstractmethod
    def neuron(self, index, theta, sigma, inputs, seed, fmt, table):
        """``(spins, cycles)``: noisy neuron ``index`` (``theta``, ``sigma`` codes, noise table
        ``table``), loaded from job seed ``seed``, on the pre-activations ``inputs``, one spin
        each (uint8)."""

    @abc.abstractmethod
    def engine(self, config, model, inputs, seeds, samples, valid_p, ready_p, stall_seed,
               progress):
        """``(counts, cycles, job_seconds)`` of one job per row of ``inputs`` on an engine of
        ``config`` holding ``model`` (``job_seconds``: ``None`` where not measured)."""

    @abc.abstractmethod
    def board(self):
        """The :class:`~spinemu.sim.board.base.Server` class of the simulated board."""


class Golden(Backend):
    name = "golden"

    def noise(self, seed, blocks, samples, ready_p, stall_seed, progress, table):
        from . import golden
        began = time.perf_counter()
        codes = golden.noise_codes(seed, blocks, samples, table=table)
        return codes, None, time.perf_counter() - began

    def neuron(self, index, theta, sigma, inputs, seed, fmt, table):
        from . import golden
        codes = golden.noise_codes(seed, 1, len(inputs), first=index, table=table)[:, 0]
        return golden.neuron(inputs, theta, sigma, codes, fmt)[0], None

    def engine(self, config, model, inputs, seeds, samples, valid_p, ready_p, stall_seed,
               progress):
        from .engine_model import run_jobs
        counts = run_jobs(model, inputs, seeds, samples)
        cycles = np.full(len(inputs), job_cycles(model.sizes, config, samples), np.int64)
        return counts, cycles, None

    def board(self):
        from .board.golden import GoldenServer
        return GoldenServer


class Amaranth(Backend):
    name = "amaranth"

    def noise(self, seed, blocks, samples, ready_p, stall_seed, progress, table):
        from .noise_sim import noise_amaranth
        return noise_amaranth(seed, blocks, samples, ready_p, stall_seed, progress, table)

    def neuron(self, index, theta, sigma, inputs, seed, fmt, table):
        from .neuron_sim import neuron_spins_amaranth
        return neuron_spins_amaranth(index, theta, sigma, inputs, seed, fmt, table)

    def engine(self, config, model, inputs, seeds, samples, valid_p, ready_p, stall_seed,
               progress):
        from .engine_sim import run_engine_amaranth
        # One simulation per job, so that progress can be shown; results do not depend on what
        # ran before (contract 2), only the model is loaded again each time.
        counts = np.zeros((len(inputs), model.sizes[-1]), np.int64)
        cycles = np.zeros(len(inputs), np.int64)
        for k in range(len(inputs)):
            c, n = run_engine_amaranth(config, model, inputs[k:k + 1], seeds[k:k + 1], samples,
                                       valid_p=valid_p, ready_p=ready_p,
                                       stall_seed=stall_seed + k)
            counts[k], cycles[k] = c[0], n[0]
            if progress is not None:
                progress(1)
        return counts, cycles, None

    def board(self):
        from .board.amaranth import AmaranthServer
        return AmaranthServer


class Verilog(Backend):
    """The generated Verilog under the cocotb ``simulator``."""

    def __init__(self, simulator):
        self.name = simulator

    def noise(self, seed, blocks, samples, ready_p, stall_seed, progress, table):
        from .noise_sim import noise_verilog
        return noise_verilog(self.name, seed, blocks, samples, ready_p, stall_seed, table)

    def neuron(self, index, theta, sigma, inputs, seed, fmt, table):
        from .neuron_sim import neuron_spins_verilog
        return neuron_spins_verilog(self.name, index, theta, sigma, inputs, seed, fmt, table)

    def engine(self, config, model, inputs, seeds, samples, valid_p, ready_p, stall_seed,
               progress):
        from .engine_sim import run_engine_verilog
        return run_engine_verilog(self.name, config, model, inputs, seeds, samples,
                                  valid_p=valid_p, ready_p=ready_p, stall_seed=stall_seed)

    def board(self):
        if self.name == "verilator":   # Verilator's own C++ clock loop: many times faster
            from .board.native import NativeServer
            return NativeServer
        from .board.cocotb import RTLServer
        return RTLServer


#: Every backend by name, the golden model first.
BACKENDS = {b.name: b for b in (Golden(), Amaranth(), Verilog("icarus"), Verilog("verilator"))}


def find_backend(name):
    """The :class:`Backend` called ``name``; ValueError naming the backends otherwise."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None

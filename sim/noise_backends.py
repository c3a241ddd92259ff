"""Noise codes from any backend: the golden model, the Amaranth simulator, or Verilog under cocotb.

Every backend returns the same int16 array of shape ``(samples, blocks)`` for the same arguments;
the RTL backends stall the output stream at random (``ready_p``), which must not change the codes.
"""

from dataclasses import dataclass

import numpy as np

from spinemu.hdl.polynomials import MAX_BLOCKS

from .backends import find_backend

__all__ = ["NoiseRun", "generate_noise"]


@dataclass
class NoiseRun:
    """Codes from one backend, with the simulated cycles and wall time when there are any."""

    codes: np.ndarray
    backend: str
    seconds: float
    cycles: int | None = None

    @property
    def rate(self):
        """Cycles per second of simulation (samples per second for the golden model)."""
        work = self.cycles if self.cycles is not None else self.codes.size
        return work / self.seconds if self.seconds > 0 else float("inf")


def generate_noise(backend, *, seed, blocks, samples, ready_p=0.75, stall_seed=0, progress=None,
                   table=None):
    """Run noise blocks ``0 .. blocks-1`` from job seed ``seed`` for ``samples`` codes each on
    ``backend`` (a name of :data:`~spinemu.sim.backends.BACKENDS`), with noise table ``table``
    (a :class:`~spinemu.hdl.noise_table.NoiseTable`, the Gaussian by default).

    ``progress`` (optional) is called with the number of new samples (Amaranth backend only; the
    others finish too fast or run in a separate process).
    """
    where = find_backend(backend)
    if not 1 <= blocks <= MAX_BLOCKS:
        raise ValueError(f"neurons must be 1..{MAX_BLOCKS} (one primitive polynomial each)")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, not {samples}")
    if not 0 < ready_p <= 1:
        raise ValueError(f"ready_p must be in (0, 1], not {ready_p}")
    codes, cycles, seconds = where.noise(seed, blocks, samples, ready_p, stall_seed, progress,
                                         table)
    return NoiseRun(codes, backend, seconds, cycles)

"""What every job runner is: :class:`JobRunner`, and the :class:`JobResult` its ``run`` returns.

The runners themselves are in :mod:`spinemu.host.runners` (one board, the golden model, the
simulators, the float model), :mod:`spinemu.host.pool` and :mod:`spinemu.host.cluster` (many
boards); this module is apart so that those can build on it without importing each other.
"""

import abc
from dataclasses import dataclass

import numpy as np

__all__ = ["JobResult", "JobRunner"]


@dataclass
class JobResult:
    """``counts``: int64 ``(jobs, N_L)``, the last layer's spin counts; ``cycles``: int64
    ``(jobs,)``, the engine's cycles per job (``None`` for the float model); ``seconds``: the
    wall-clock time of the run; ``job_seconds``: the part of it in the jobs themselves, without
    building and loading (the Verilog simulators only)."""

    counts: np.ndarray
    cycles: np.ndarray | None
    seconds: float
    job_seconds: float | None = None


class JobRunner(abc.ABC):
    """Runs jobs of one model. ``name`` says where, for people; ``lanes``, the design's (of
    several, as a pool's: their one number, or the list of each one's if they differ).
    Use it as a context manager, or call :meth:`close`."""

    name: str
    lanes: int
    #: whether the jobs are slow and the runner draws no progress bar of its own: the caller should
    needs_bar = False

    @abc.abstractmethod
    def run(self, inputs, seeds, samples, *, progress=None):
        """A :class:`JobResult`; ``progress``, if given, is called with the jobs finished."""

    def where(self):
        """What ran the jobs, as the fields of a report (``spinemu evaluate``'s)."""
        return {"backend": self.name}

    def close(self):  # noqa: B027 (not abstract: most runners hold nothing)
        """Release what the runner holds (a connection); nothing by default."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

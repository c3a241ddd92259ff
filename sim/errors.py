"""The simulation side's errors: a simulator or a simulated board that cannot do what was asked."""

__all__ = ["SimulationError"]


class SimulationError(RuntimeError):
    """A simulator run or a simulated board failed; the message says why (and names its log)."""

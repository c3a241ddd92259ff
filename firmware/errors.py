"""The firmware side's errors: a design that cannot be built for a board, or a tool that failed."""

__all__ = ["FirmwareError"]


class FirmwareError(RuntimeError):
    """A build or a toolchain run failed; the message says why (and names its log)."""

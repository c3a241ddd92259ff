"""Noise tables by name or by file, for the commands that take one (``--table``).

A table is named by a shipped shape (:data:`SHAPES`) or by a file that holds one: a CALIB.json
(``spinemu calibrate --out``) or a model image (``spinemu train``), told apart by their contents.
"""

from pathlib import Path

from spinemu.hdl.model_image import MAGIC, ModelImage
from spinemu.hdl.noise_table import gaussian, logistic, thermal

from .calibration import read_noise_table
from .errors import InputError

__all__ = ["SHAPES", "read_table"]

#: The shipped shapes (``docs/noise.md``).
SHAPES = {"gaussian": gaussian, "logistic": logistic, "thermal": thermal}


def read_table(spec):
    """The :class:`~spinemu.hdl.noise_table.NoiseTable` that ``spec`` names; :class:`InputError`
    naming it when it is neither a shape nor a readable file that holds a table."""
    if spec in SHAPES:
        return SHAPES[spec]()
    path = Path(spec)
    try:
        head = path.read_bytes()[:len(MAGIC)]
    except FileNotFoundError:
        raise InputError(f"{spec}: neither a noise shape ({', '.join(SHAPES)}) nor a file") from None
    except OSError as error:
        raise InputError(f"{spec}: cannot read it ({error.strerror or error})") from None
    if head == MAGIC:
        return ModelImage.read(path).noise
    if head.lstrip()[:1] == b"{":
        return read_noise_table(path)
    raise InputError(f"{spec}: not a CALIB.json or a model image, the files that hold a noise table")

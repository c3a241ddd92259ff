"""Writing the files a command was asked for: a path that cannot be written is one line, not a
traceback."""

import numpy as np

from . import UserError

__all__ = ["write_npz", "write_text", "write_bytes"]


def _writing(path, write):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as error:
        raise UserError(f"{path}: cannot write it ({error.strerror or error})") from None


def write_npz(path, arrays):
    """``arrays`` as an uncompressed ``.npz`` at exactly ``path`` (``np.savez`` would add
    ``.npz`` to any other name)."""
    def write():
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    _writing(path, write)


def write_text(path, text):
    _writing(path, lambda: path.write_text(text))


def write_bytes(path, data):
    _writing(path, lambda: path.write_bytes(data))

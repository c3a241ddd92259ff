"""Model files: the shipped digits model, and a model image read with its training companion."""

from pathlib import Path

from spinemu.hdl.model_image import ModelImage

from .train import companion_path, load_companion

__all__ = ["DEFAULT_MODEL", "resolve_model", "read_trained"]

#: The shipped digits model (``docs/training.md`` says how it is regenerated).
DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "digits_model.bin"


def resolve_model(text):
    """``"default"`` -> the shipped model's path; anything else is a path."""
    return DEFAULT_MODEL if str(text) == "default" else Path(text)


def read_trained(path):
    """``(model, companion)``: the model image at ``path`` and the companion ``M.npz`` beside it,
    checked to belong to each other; :class:`~spinemu.hdl.model_image.ModelError` or
    :class:`~spinemu.host.errors.InputError` naming the file and the problem."""
    model = ModelImage.read(path)
    # the image format is canonical: its bytes are the file's
    return model, load_companion(companion_path(path), model.to_bytes())

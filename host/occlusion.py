"""Occlusion masks: which pixels of an image are known, and the occluded images made from them.

A mask is a ``uint8`` array of the image's shape, 1 = known pixel, 0 = hidden pixel. The kinds
(:data:`OCCLUSIONS`), for an ``H x W`` image:

* ``bottom`` / ``top``: the last / first ``floor(H / 2)`` rows are hidden;
* ``right`` / ``left``: the last / first ``floor(W / 2)`` columns are hidden;
* ``random``: ``floor(H * W / 2)`` pixels are hidden, chosen uniformly without replacement: the
  first ``floor(H * W / 2)`` entries of ``rng.permutation(H * W)`` (row-major pixel numbers) from
  a numpy :class:`~numpy.random.Generator`.

So exactly half is hidden for even sizes, and for odd sizes the one row, column or pixel left over
stays known.

:func:`apply_mask` makes the occluded images a network or classifier sees: hidden pixels set to zero
or to the mean image, known pixels unchanged.
"""

import numpy as np

from .errors import InputError

__all__ = ["OCCLUSIONS", "occlusion_mask", "occlusion_masks", "apply_mask"]

#: The kinds of occlusion, the one list every part of the project uses.
OCCLUSIONS = ("bottom", "top", "left", "right", "random")


def _check(kind, shape):
    if kind not in OCCLUSIONS:
        raise InputError(f"unknown occlusion {kind!r}; the occlusions are {', '.join(OCCLUSIONS)}")
    if len(shape) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in shape):
        raise ValueError(f"shape must be (H, W) with positive integers, not {shape!r}")
    return int(shape[0]), int(shape[1])


def _fixed_mask(kind, height, width):
    mask = np.ones((height, width), dtype=np.uint8)
    rows, cols = height // 2, width // 2
    if kind == "bottom":
        mask[height - rows:, :] = 0
    elif kind == "top":
        mask[:rows, :] = 0
    elif kind == "right":
        mask[:, width - cols:] = 0
    else:  # left
        mask[:, :cols] = 0
    return mask


def _random_mask(rng, height, width):
    pixels = height * width
    mask = np.ones(pixels, dtype=np.uint8)
    mask[rng.permutation(pixels)[:pixels // 2]] = 0
    return mask.reshape(height, width)


def _generator(rng, kind):
    if rng is None:
        # an unseeded random mask would make results impossible to reproduce
        raise ValueError(f"{kind!r} masks need a seed or a numpy Generator")
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def occlusion_mask(kind, shape, rng=None):
    """The ``(H, W)`` ``uint8`` mask (1 = known) of occlusion ``kind`` for images of ``shape``.

    ``rng`` is used by ``random`` only and is then required: a seed (anything
    :func:`numpy.random.default_rng` takes) or a :class:`numpy.random.Generator`, which is advanced.
    The same seed gives the same mask.
    """
    height, width = _check(kind, shape)
    if kind == "random":
        return _random_mask(_generator(rng, kind), height, width)
    return _fixed_mask(kind, height, width)


def occlusion_masks(kind, n, shape, seed=None):
    """``n`` masks ``(n, H, W)`` of occlusion ``kind``, one per image.

    For ``random`` the masks are independent and reproducible: mask ``i`` is the ``i``-th call of
    :func:`occlusion_mask` on one Generator ``numpy.random.default_rng(seed)``, so the first ``k``
    of ``n`` masks do not depend on ``n``. ``seed`` is required for ``random`` and unused otherwise.
    """
    height, width = _check(kind, shape)
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")
    if kind != "random":
        return np.broadcast_to(_fixed_mask(kind, height, width), (n, height, width)).copy()
    rng = _generator(seed, kind)
    masks = np.empty((n, height, width), dtype=np.uint8)
    for i in range(n):
        masks[i] = _random_mask(rng, height, width)
    return masks


def apply_mask(images, masks, fill="zero", mean_image=None):
    """The occluded images: ``images`` where ``masks`` is 1, the fill where it is 0.

    ``images`` is ``(N, H, W)`` or ``(H, W)``; ``masks`` (values 0 and 1, or bool) has the same
    shape, or ``(H, W)`` for one mask shared by all images. ``fill="zero"`` puts 0 in the hidden
    pixels and keeps the images' dtype. ``fill="mean"`` puts ``mean_image`` (``(H, W)``, required:
    the per-pixel mean of the clean *training* images, so that no test pixel leaks in) there; the
    result has the dtype numpy gives the two together (float64 for uint8 images and a float mean).
    The inputs are not changed.
    """
    images, masks = np.asarray(images), np.asarray(masks)
    if images.ndim not in (2, 3):
        raise ValueError(f"images must be (N, H, W) or (H, W), not {images.shape}")
    if masks.shape not in (images.shape, images.shape[-2:]):
        raise ValueError(f"masks of shape {masks.shape} do not fit images of shape {images.shape}")
    if masks.dtype != np.bool_:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must hold only 0 (hidden) and 1 (known)")
        masks = masks.astype(bool)
    if fill == "zero":
        return np.where(masks, images, np.zeros((), dtype=images.dtype))
    if fill == "mean":
        if mean_image is None:
            raise ValueError("fill='mean' needs mean_image: the per-pixel mean of the clean "
                             "training images")
        mean_image = np.asarray(mean_image)
        if mean_image.shape != images.shape[-2:]:
            raise ValueError(f"mean_image of shape {mean_image.shape} does not fit images of "
                             f"shape {images.shape}")
        return np.where(masks, images, mean_image)
    raise ValueError(f"unknown fill {fill!r}; the fills are 'zero' and 'mean'")

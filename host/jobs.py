"""Imagination jobs of occluded images: which images, their masks and seeds, and the reconstruction.

An occluded image becomes one engine job: its input vector is the image with the hidden pixels
zeroed, then the mask (:func:`~spinemu.hdl.memory_map.job_inputs`), so a model for H x W images
has 2 H W inputs and H W outputs. Image k of a data set's held-out split runs with job seed
:func:`job_seed` ``(seed, k)``, so an image's result depends only on the arguments and on k, never
on how many images run. A hidden pixel becomes the fraction of the S samples in which its output
spin fired (:func:`reconstruct_images`).
"""

from dataclasses import dataclass

import numpy as np

from spinemu.hdl.memory_map import job_inputs

from .datasets import split
from .errors import InputError
from .occlusion import occlusion_masks

__all__ = ["SEED_MAX", "SAMPLES_MAX", "job_seed", "check_jobs", "reconstruct_images",
           "check_model_for", "ImageJobs", "image_jobs"]

SEED_MAX = (1 << 64) - 1
SAMPLES_MAX = (1 << 16) - 1


def job_seed(seed, k):
    """The job seed of image ``k`` (0, 1, ... in the held-out split) for the run seed ``seed``."""
    return (seed * (1 << 20) + k) & SEED_MAX


def check_jobs(samples, seed):
    """:class:`InputError` unless ``samples`` is 1..65535 and ``seed`` 0..2^64-1."""
    if not 1 <= samples <= SAMPLES_MAX:
        raise InputError(f"--samples must be 1..65535, not {samples}")
    if not 0 <= seed <= SEED_MAX:
        raise InputError(f"--seed must be 0..2^64-1, not {seed}")


def reconstruct_images(images, masks, counts, samples, max_value):
    """Known pixels as they are (scaled to [0, 1]), hidden ones the fraction of samples fired."""
    images = np.asarray(images)
    return np.where(np.asarray(masks) == 1, images / max_value,
                    np.asarray(counts).reshape(images.shape) / samples)


def check_model_for(model, dataset, source):
    """:class:`InputError` naming ``source`` unless ``model`` imagines ``dataset``'s images: 2 x
    pixels inputs (pixels, then mask bits), pixels outputs, inputs wide enough for its values."""
    pixels = int(np.prod(dataset.shape))
    if model.sizes[0] != 2 * pixels or model.sizes[-1] != pixels:
        raise InputError(
            f"{source}: the model has {model.sizes[0]} inputs and {model.sizes[-1]} outputs "
            f"(sizes {'-'.join(map(str, model.sizes))}); {dataset.name} images of "
            f"{dataset.shape[0]}x{dataset.shape[1]} pixels need {2 * pixels} inputs "
            f"({pixels} pixels and {pixels} mask bits) and {pixels} outputs")
    if dataset.max_value >= 1 << model.input_bits:
        raise InputError(f"{source}: the model takes {model.input_bits}-bit inputs, but "
                         f"{dataset.name} pixels go up to {dataset.max_value}")


@dataclass
class ImageJobs:
    """The jobs of the first images of a held-out split: ``indices`` into the data set, the
    ``images`` and ``labels``, the ``masks`` (1 = known pixel), the job ``seeds`` (uint64) and the
    engine ``inputs`` (int64 ``(jobs, 2 x pixels)``)."""

    indices: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    seeds: np.ndarray
    inputs: np.ndarray

    def __len__(self):
        return len(self.indices)

    def reconstruct(self, counts, samples, max_value):
        """:func:`reconstruct_images` of these jobs' ``counts``."""
        return reconstruct_images(self.images, self.masks, counts, samples, max_value)


def image_jobs(dataset, occlusion, seed, count=None):
    """:class:`ImageJobs` of the first ``count`` (default: all) held-out images of ``dataset``,
    occluded by ``occlusion``, with job seeds from ``seed``; :class:`InputError` for a count
    outside 1..the split's size."""
    test = split(dataset)[1]
    count = len(test) if count is None else count
    if not 1 <= count <= len(test):
        raise InputError(f"--count must be 1..{len(test)} (the held-out {dataset.name} images), "
                         f"not {count}")
    indices = test[:count]
    images = dataset.images[indices]
    masks = occlusion_masks(occlusion, count, dataset.shape, seed)
    seeds = np.array([job_seed(seed, k) for k in range(count)], dtype=np.uint64)
    return ImageJobs(indices, images, dataset.labels[indices], masks, seeds,
                     job_inputs(images, masks))

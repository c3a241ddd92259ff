"""The imagination benchmark: the reference classifier, the metrics and the trivial baselines.

* :class:`ReferenceClassifier`: a small fixed MLP (pixels -> 128 -> 64 -> classes, ReLU) trained on
  the *clean training images only* (:func:`train_classifier`), saved with the model. Its accuracy on
  reconstructed test images is the benchmark's recognition figure; its penultimate layer (the 64
  ReLU units) gives the features of the Frechet distance.
* Metrics: :func:`accuracy`, :func:`occluded_mse` and :func:`psnr` (on the hidden pixels only, in
  [0, 1] units), :func:`frechet_distance` (FID computed on the reference classifier's penultimate
  features, *not* on Inception features: named ``fid_classifier_features`` everywhere).
* Baselines: :func:`zero_fill`, :func:`mean_fill` (the mean clean training image) and
  :func:`nearest_neighbour_fill` (the hidden pixels of the training image nearest on the known
  pixels).
* :func:`benchmark_report`: every figure for one set of reconstructions, the baselines included.

Images here are float arrays in [0, 1] (``Dataset.images / max_value``), shape ``(N, H, W)``;
masks are 1 for a known pixel, 0 for a hidden one. ``docs/training.md`` is the spec.
"""

import math
import warnings

import numpy as np
from scipy import linalg

__all__ = [
    "CLASSIFIER_HIDDEN", "ReferenceClassifier", "train_classifier", "accuracy", "occluded_mse",
    "psnr", "feature_statistics", "frechet_distance", "zero_fill", "mean_fill",
    "nearest_neighbour_fill", "method_figures", "benchmark_report",
]

#: Hidden layer sizes of the reference classifier; the last one is the feature layer of the FID.
CLASSIFIER_HIDDEN = (128, 64)


class ReferenceClassifier:
    """A ReLU MLP on images in [0, 1]: ``weights[i]`` ``(n_out, n_in)`` and ``biases[i]``, float64.

    :meth:`features` is the last hidden layer (after its ReLU), :meth:`logits` the output layer.
    The arithmetic is numpy float64, so the predictions do not depend on torch.
    """

    def __init__(self, weights, biases):
        self.weights = [np.asarray(w, dtype=np.float64) for w in weights]
        self.biases = [np.asarray(b, dtype=np.float64) for b in biases]
        if len(self.weights) != len(self.biases) or len(self.weights) < 2:
            raise ValueError("a reference classifier needs at least two layers")

    @property
    def inputs(self):
        return self.weights[0].shape[1]

    @property
    def classes(self):
        return self.weights[-1].shape[0]

    def _flat(self, images):
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        if x.shape[1] != self.inputs:
            raise ValueError(f"the reference classifier takes {self.inputs} pixels, "
                             f"not {x.shape[1]}")
        return x

    def features(self, images):
        """The penultimate layer's activations, ``(N, CLASSIFIER_HIDDEN[-1])``."""
        x = self._flat(images)
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = np.maximum(x @ w.T + b, 0.0)
        return x

    def logits(self, images):
        return self.features(images) @ self.weights[-1].T + self.biases[-1]

    def predict(self, images):
        """The predicted class of each image, ``(N,)`` int64."""
        return self.logits(images).argmax(axis=1).astype(np.int64)

    def to_arrays(self, prefix="classifier_"):
        """The parameters as named arrays (for ``np.savez``)."""
        arrays = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"{prefix}w{i}"] = w.astype(np.float32)
            arrays[f"{prefix}b{i}"] = b.astype(np.float32)
        return arrays

    @classmethod
    def from_arrays(cls, arrays, prefix="classifier_"):
        """The classifier saved by :meth:`to_arrays`; KeyError if it is not there."""
        weights, biases, i = [], [], 0
        while f"{prefix}w{i}" in arrays:
            weights.append(arrays[f"{prefix}w{i}"])
            biases.append(arrays[f"{prefix}b{i}"])
            i += 1
        if not weights:
            raise KeyError(f"no {prefix}w0")
        return cls(weights, biases)


def train_classifier(images, labels, classes, *, seed=0, hidden=CLASSIFIER_HIDDEN, epochs=200,
                     batch=64, lr=1e-3, weight_decay=1e-4):
    """Train the reference classifier on ``images`` (clean, in [0, 1], ``(N, H, W)``).

    Adam with L2 weight decay, cross-entropy, mini-batches in an order drawn from ``seed``; torch
    runs on one thread, so the same arguments give the same classifier (same platform and torch).
    """
    import torch

    x = torch.tensor(np.asarray(images, dtype=np.float32).reshape(len(images), -1))
    y = torch.tensor(np.asarray(labels, dtype=np.int64))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(seed)
        sizes = (x.shape[1], *hidden, classes)
        layers = []
        for i in range(len(sizes) - 1):
            layer = torch.nn.Linear(sizes[i], sizes[i + 1])
            bound = 1 / math.sqrt(sizes[i])  # torch's default initialisation, from our generator
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
            layers += [layer, torch.nn.ReLU()]
        net = torch.nn.Sequential(*layers[:-1])
        opt = torch.optim.Adam(net.parameters(), lr, weight_decay=weight_decay)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), batch):
                b = order[i:i + batch]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x[b]), y[b]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    return ReferenceClassifier([m.weight.detach().double().numpy() for m in linear],
                               [m.bias.detach().double().numpy() for m in linear])


# ---------------------------------------------------------------------------------------------
# Metrics


def accuracy(predicted, labels):
    """Fraction of ``predicted`` equal to ``labels``."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape or not labels.size:
        raise ValueError("accuracy needs as many predictions as labels, at least one")
    return float(np.mean(predicted == labels))


def occluded_mse(reconstructed, originals, masks):
    """Mean squared error over every hidden pixel of every image (images in [0, 1]).

    All hidden pixels are pooled (each counts once), so images with more hidden pixels weigh more.
    """
    hidden = np.asarray(masks) == 0
    if not hidden.any():
        raise ValueError("no hidden pixels: the occluded MSE is undefined")
    diff = np.asarray(reconstructed, dtype=np.float64) - np.asarray(originals, dtype=np.float64)
    return float(np.mean(diff[hidden] ** 2))


def psnr(mse, peak=1.0):
    """Peak signal-to-noise ratio in dB, ``10 log10(peak^2 / mse)`` (infinite for mse = 0)."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def feature_statistics(features):
    """Mean and covariance (``ddof = 1``) of feature rows."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError("feature statistics need two or more feature rows")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(stats_a, stats_b):
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula):

        |mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))

    ``stats_*`` are ``(mean, covariance)`` from :func:`feature_statistics`. The matrix square root
    is scipy's; its tiny imaginary part (rounding) is dropped, and a singular product is regularised
    as in the reference FID implementation (1e-6 added to both diagonals).
    """
    mu_a, cov_a = stats_a
    mu_b, cov_b = stats_b
    with warnings.catch_warnings():
        # features of dead ReLU units make the covariances singular: expected, and harmless here
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            eps = np.eye(len(cov_a)) * 1e-6
            root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = np.real(root)
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                  - 2.0 * np.trace(root))
    return max(value, 0.0)


# ---------------------------------------------------------------------------------------------
# Baselines


def _check(images, masks):
    images, masks = np.asarray(images, dtype=np.float64), np.asarray(masks)
    if images.shape != masks.shape or images.ndim != 3:
        raise ValueError(f"images {images.shape} and masks {masks.shape} must be equal (N, H, W)")
    return images, masks.astype(bool)


def zero_fill(images, masks):
    """Hidden pixels set to 0."""
    images, known = _check(images, masks)
    return np.where(known, images, 0.0)


def mean_fill(images, masks, mean_image):
    """Hidden pixels set to ``mean_image`` (the per-pixel mean of the clean training images)."""
    images, known = _check(images, masks)
    return np.where(known, images, np.asarray(mean_image, dtype=np.float64))


def nearest_neighbour_fill(images, masks, train_images):
    """Hidden pixels copied from the training image nearest on the known pixels (squared
    Euclidean distance over the known pixels; the first such image on ties)."""
    images, known = _check(images, masks)
    train = np.asarray(train_images, dtype=np.float64).reshape(len(train_images), -1)
    x, k = images.reshape(len(images), -1), known.reshape(len(known), -1).astype(np.float64)
    # sum_known (x - t)^2 = sum_known x^2 - 2 (x*k) . t + k . t^2
    dist = ((x * k) ** 2).sum(axis=1)[:, None] - 2.0 * (x * k) @ train.T + k @ (train ** 2).T
    nearest = train[np.argmin(dist, axis=1)].reshape(images.shape)
    return np.where(known, images, nearest)


# ---------------------------------------------------------------------------------------------
# The report


def method_figures(classifier, filled, originals, labels, masks, reference_stats):
    """``accuracy``, ``mse_occluded``, ``psnr_occluded_db`` and ``fid_classifier_features`` of
    one set of filled-in images."""
    mse = occluded_mse(filled, originals, masks)
    return {
        "accuracy": accuracy(classifier.predict(filled), labels),
        "mse_occluded": mse,
        "psnr_occluded_db": psnr(mse),
        "fid_classifier_features": frechet_distance(
            feature_statistics(classifier.features(filled)), reference_stats),
    }


def benchmark_report(classifier, reconstructed, originals, labels, masks, train_images):
    """Every figure of the benchmark for ``reconstructed`` test images and the baselines.

    ``originals``, ``reconstructed`` and ``train_images`` are in [0, 1]. The FID reference set is
    the clean *training* images, so the clean test images' own FID is the floor that sampling 2 x
    a few hundred images leaves. Returns a dict: ``accuracy`` (clean, zero_filled, mean_filled,
    nearest_neighbour, reconstructed), ``improvement_ratio`` (reconstructed / zero-filled
    accuracy), and ``methods``, each method's figures (:func:`method_figures`).
    """
    originals = np.asarray(originals, dtype=np.float64)
    reference = feature_statistics(classifier.features(train_images))
    mean_image = np.asarray(train_images, dtype=np.float64).mean(axis=0)
    fills = {
        "reconstructed": np.asarray(reconstructed, dtype=np.float64),
        "zero_filled": zero_fill(originals, masks),
        "mean_filled": mean_fill(originals, masks, mean_image),
        "nearest_neighbour": nearest_neighbour_fill(originals, masks, train_images),
    }
    methods = {"clean": {
        "accuracy": accuracy(classifier.predict(originals), labels),
        "fid_classifier_features": frechet_distance(
            feature_statistics(classifier.features(originals)), reference)}}
    for name, filled in fills.items():
        methods[name] = method_figures(classifier, filled, originals, labels, masks, reference)
    zero = methods["zero_filled"]["accuracy"]
    return {
        "accuracy": {name: figures["accuracy"] for name, figures in methods.items()},
        "improvement_ratio": (methods["reconstructed"]["accuracy"] / zero) if zero else math.inf,
        "methods": methods,
    }

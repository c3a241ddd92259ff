"""SYNTHETIC switching data: from the probit model (the shipped example files come from here), and
from four devices of known shape (probit, logistic, thermal activation, a two-population mixture)."""

import csv
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.special import expit, ndtr

__all__ = ["SyntheticDevice", "SYNTHETIC_DEVICES", "make_synthetic", "make_shape_synthetic"]


def make_synthetic(path, *, i50=1.2, sigma=0.08, devices=0, i50_spread=0.05, sigma_spread=0.15,
                   currents=None, trials=200, seed=2026):
    """Write a SYNTHETIC aggregated switching CSV drawn from the probit model; return the truth.

    ``devices=0`` writes one device without a ``device`` column. ``devices=N`` writes N devices
    labelled ``D1``..``DN`` with I50 ~ Normal(i50, i50_spread) and sigma = sigma * exp(Normal(0,
    sigma_spread)). Each device is measured at ``currents`` (default: 12 evenly spaced currents that
    span every device's curve) with ``trials`` pulses each. The file starts with comment lines saying
    it is synthetic. Returns a list of ``{"device", "i50", "sigma"}`` with the true parameters.
    """
    rng = np.random.default_rng(seed)
    if devices:
        truth = [{"device": f"D{k + 1}", "i50": float(a), "sigma": float(b)}
                 for k, (a, b) in enumerate(zip(rng.normal(i50, i50_spread, devices),
                                                sigma * np.exp(rng.normal(0, sigma_spread, devices)),
                                                strict=True))]
    else:
        truth = [{"device": None, "i50": i50, "sigma": sigma}]
    if currents is None:
        reach = 2.5 * sigma + 2 * i50_spread * bool(devices)
        currents = np.round(np.linspace(i50 - reach, i50 + reach, 12), 4)
    with open(path, "w", newline="") as stream:
        stream.write(f"# SYNTHETIC data, not a measurement: drawn from P = Phi((I - I50) / sigma) by\n"
                     f"# spinemu.host.calibration.make_synthetic(devices={devices}, seed={seed}); "
                     "true parameters in README.md\n")
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow((["device"] if devices else []) + ["current", "trials", "switched"])
        for device in truth:
            hits = rng.binomial(trials, ndtr((np.asarray(currents) - device["i50"]) / device["sigma"]))
            for amps, k in zip(currents, hits, strict=True):
                writer.writerow(([device["device"]] if devices else []) + [f"{amps:g}", trials, int(k)])
    return truth


@dataclass(frozen=True)
class SyntheticDevice:
    """A device of known switching curve: ``model`` is the calibration model whose shape it has
    (the one the data should prefer), ``curve`` its true ``P(I)`` (vectorised, I in mA)."""

    model: str
    description: str
    curve: object

    def probability(self, current):
        """The true switching probability at ``current`` (mA)."""
        return self.curve(np.asarray(current, dtype=float))

    def quantile(self, p):
        """The current at which the device switches with probability ``p``."""
        return optimize.brentq(lambda i: float(self.curve(np.asarray(i))) - p, 0.0, 2.3, xtol=1e-12)


def _thermal(i, delta=40.0, ic=2.35, t_over_tau0=1e4):
    return -np.expm1(-np.exp(math.log(t_over_tau0) - delta * (1 - np.minimum(i, ic) / ic) ** 2))


#: The synthetic devices by the model that should be preferred for them.
SYNTHETIC_DEVICES = {
    "probit": SyntheticDevice("probit", "Gaussian thresholds, P = Phi((I - 1.2 mA) / 0.08 mA)",
                              lambda i: ndtr((i - 1.2) / 0.08)),
    "logistic": SyntheticDevice("logistic", "logistic thresholds, P = 1 / (1 + exp(-(I - 1.2 mA) "
                                "/ 0.05 mA))", lambda i: expit((i - 1.2) / 0.05)),
    "thermal": SyntheticDevice("thermal", "thermal activation (Neel-Brown), Delta = 40, Ic = 2.35 "
                               "mA, t / tau0 = 1e4", _thermal),
    "nonparametric": SyntheticDevice("nonparametric", "two populations of thresholds, 0.5 N(1.15, "
                                     "0.05^2) + 0.5 N(1.26, 0.06^2) mA",
                                     lambda i: 0.5 * ndtr((i - 1.15) / 0.05)
                                     + 0.5 * ndtr((i - 1.26) / 0.06)),
}


def make_shape_synthetic(path, shape, *, currents=16, trials=4000, seed=2026):
    """Write a SYNTHETIC aggregated CSV of the device ``SYNTHETIC_DEVICES[shape]``; return it.

    ``currents`` evenly spaced currents (mA, to 0.1 uA) from the device's 0.5% to its 99.5%
    switching point, ``trials`` pulses each, drawn by ``numpy.random.default_rng(seed)``. The file
    starts with comment lines saying it is synthetic and what the device is.
    """
    device = SYNTHETIC_DEVICES[shape]
    current = np.round(np.linspace(device.quantile(0.005), device.quantile(0.995), currents), 4)
    hits = np.random.default_rng(seed).binomial(trials, device.probability(current))
    with open(path, "w", newline="") as stream:
        stream.write(f"# SYNTHETIC data, not a measurement: {device.description}, drawn by\n"
                     f"# spinemu.host.calibration.make_shape_synthetic({shape!r}, currents={currents}, "
                     f"trials={trials}, seed={seed})\n")
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["current", "trials", "switched"])
        for amps, k in zip(current, hits, strict=True):
            writer.writerow([f"{amps:g}", trials, int(k)])
    return device

"""SYNTHETIC switching data drawn from the probit model (the shipped example files come from here)."""

import csv

import numpy as np
from scipy.special import ndtr

__all__ = ["make_synthetic"]


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

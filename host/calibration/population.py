"""A measurement file's calibration: every device's fits, and the spread of I50 and sigma over them."""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .fit import fit_device
from .measurements import Measurements

__all__ = ["Population", "Calibration", "fit_population", "calibrate"]


@dataclass(frozen=True)
class Population:
    """Per-device fits and the spread of the probit parameters across the devices.

    ``*_std`` are sample standard deviations (``None`` for one device); ``correlation`` is Pearson's
    r between I50 and sigma (``None`` below 3 devices); ``*_mean_ci`` are t intervals of the means at
    ``level``.
    """

    devices: list
    i50_mean: float
    i50_std: float | None
    sigma_mean: float
    sigma_std: float | None
    correlation: float | None
    i50_mean_ci: tuple
    sigma_mean_ci: tuple
    level: float

    @property
    def count(self):
        """Number of devices."""
        return len(self.devices)


def fit_population(curves, level=0.95):
    """Fit each device's :class:`Curve` and summarise I50 and sigma over the devices."""
    devices = [fit_device(curve, level) for curve in curves]
    i50 = np.array([d.probit.i50 for d in devices])
    sigma = np.array([d.probit.sigma for d in devices])
    n = len(devices)

    def spread(values):
        if n < 2:
            return None, (None, None)
        sd = float(values.std(ddof=1))
        half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        return sd, (float(values.mean() - half), float(values.mean() + half))

    i50_std, i50_ci = spread(i50)
    sigma_std, sigma_ci = spread(sigma)
    correlation = float(np.corrcoef(i50, sigma)[0, 1]) if n >= 3 else None
    return Population(devices, float(i50.mean()), i50_std, float(sigma.mean()), sigma_std,
                      correlation, i50_ci, sigma_ci, level)


@dataclass(frozen=True)
class Calibration:
    """The calibration of one measurement file: per-device fits, and a population where the file
    has a device column."""

    measurements: Measurements
    devices: list
    population: Population | None


def calibrate(measurements, level=0.95):
    """Fit a :class:`Measurements` set: every device's models, plus the population summary."""
    curves = measurements.curves()
    if measurements.device is None:
        return Calibration(measurements, [fit_device(curves[0], level)], None)
    population = fit_population(curves, level)
    return Calibration(measurements, population.devices, population)

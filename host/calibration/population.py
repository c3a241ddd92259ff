"""A measurement file's calibration: every device's fits, the spread of I50 and sigma over them, and
the design's shape with every device's place on it."""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from spinemu.host.errors import InputError

from .device_fit import MODELS, fit_device
from .measurements import Measurements
from .shape import Shape, locate, shape_of

__all__ = ["Population", "Calibration", "fit_population", "summed_aic", "calibrate"]


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
    """The calibration of one measurement file: per-device fits, a population where the file has a
    device column, and the design's shape.

    ``model`` is the emulated shape's model (``model_source`` says whether the data prefer it or
    ``--model`` forced it); ``shape`` is its :class:`~spinemu.host.calibration.shape.Shape`, taken
    from the fit of device ``reference``; ``locations`` holds every device's threshold mean and
    standard deviation ``(mu, s)`` on it.
    """

    measurements: Measurements
    devices: list
    population: Population | None
    model: str
    model_source: str
    shape: Shape
    reference: int
    locations: list

    @property
    def aic(self):
        """``{model: AIC}`` summed over the devices (:func:`summed_aic`)."""
        return summed_aic(self.devices)

    @property
    def preferred_model(self):
        """The model with the smallest (summed) AIC."""
        aic = self.aic
        return min(aic, key=aic.get)


def summed_aic(devices):
    """``{model: AIC summed over the devices}`` for the models fitted on every device, in ``MODELS``
    order (the nonparametric shape drops out where a device's data cannot identify it)."""
    return {m: sum(d.fits[m].aic for d in devices) for m in MODELS
            if all(m in d.fits for d in devices)}


def _reference(devices):
    """The device nearest the population's means of probit I50 and ln sigma (in units of their
    standard deviations): the nominal device whose fit gives a population's shape."""
    if len(devices) < 2:
        return 0
    params = np.array([[d.probit.i50, math.log(d.probit.sigma)] for d in devices])
    spread = params.std(axis=0, ddof=1)
    distance = (((params - params.mean(axis=0)) / np.where(spread > 0, spread, 1)) ** 2).sum(axis=1)
    return int(np.argmin(distance))


def calibrate(measurements, level=0.95, model=None):
    """Fit a :class:`Measurements` set: every device's models, the population summary, and the
    shape of ``model`` with every device's location and scale on it.

    ``model`` defaults to the model the data prefer by AIC (summed over the devices), or, when no
    noise table can hold that model's shape (a thermal fit that levels off below 1, tails too heavy
    for the code grid), the next by AIC that has one; ``model_source`` says which and why. A
    ``model`` that is not fitted or has no table raises :class:`InputError`.
    """
    curves = measurements.curves()
    if measurements.device is None:
        devices, population = [fit_device(curves[0], level)], None
    else:
        population = fit_population(curves, level)
        devices = population.devices
    reference = _reference(devices)
    where = devices[reference].curve.where
    if model is None:
        aic = summed_aic(devices)
        skipped = []
        for model in sorted(aic, key=aic.get):   # the probit always has a table: the loop ends
            try:
                shape = shape_of(devices[reference].fits[model], where)
                break
            except InputError as error:
                skipped.append(str(error))
        source = "preferred by AIC" if not skipped else \
            f"the best by AIC with a noise table ({'; '.join(skipped)})"
    elif model not in MODELS:
        raise InputError(f"unknown model '{model}'; choose one of {', '.join(MODELS)}")
    elif model not in devices[reference].fits:
        raise InputError(devices[reference].refused[model])
    else:
        shape, source = shape_of(devices[reference].fits[model], where), "--model"
    return Calibration(measurements, devices, population, model, source, shape, reference,
                       [locate(shape, d) for d in devices])

"""The design's shape: the threshold distribution that every emulated neuron's noise table draws.

A device switches when its threshold current ``T`` (distribution ``G``, mean ``mu``, standard
deviation ``s``) lies below the pulse current: ``P(I) = G(I)``. The neuron fires when ``a + sigma n
> theta`` with ``n`` drawn from its noise table ``F``, ``P = 1 - F((theta - a) / sigma)``; with
``n = (mu - T) / s``, i.e. ``F(t) = 1 - G(mu - s t)``, and ``theta``, ``sigma`` mapped from ``mu``,
``s`` (:mod:`.mapping`), it switches exactly like the device. ``F`` has mean 0 and variance 1.

- ``probit``: ``F`` is the standard normal, the Gaussian table
  (:func:`~spinemu.hdl.noise_table.gaussian`), ``mu = I50``, ``s = sigma``.
- ``logistic``: the logistic table of variance 1 (:func:`~spinemu.hdl.noise_table.logistic`),
  ``mu = I50``, ``s = pi / sqrt(3)`` times the fit's ``s``.
- ``thermal`` and ``nonparametric`` are not location-scale families: ``F`` is the reference device's
  fitted curve, continued beyond the measured range by the model's own formula, standardized by
  its threshold mean and standard deviation (computed numerically), and tabulated by
  :func:`~spinemu.hdl.noise_table.from_cdf`. Every other device's ``(mu, s)`` on that fixed shape is
  fitted by binomial maximum likelihood (:func:`locate`).
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from spinemu.hdl.noise_table import NoiseTable, TableError, from_cdf, gaussian, logistic
from spinemu.host.errors import InputError

from .fit import _CDF, _LINK, ModelFit

__all__ = ["LOGISTIC_SD", "Shape", "gaussian_shape", "shape_of", "threshold_moments", "locate"]

LOGISTIC_SD = math.pi / math.sqrt(3)   # the standard deviation of the logistic distribution
_EDGE = 1e-12          # the moments integrate G from where it is below this to where 1 - G is
_GRID = 20_001         # points of that integration


@dataclass(frozen=True)
class Shape:
    """A standardized threshold distribution ``F`` and its noise table.

    ``model`` names it; for ``thermal`` and ``nonparametric``, ``fit`` is the reference device's fit
    whose curve ``F`` is, with its threshold mean ``mu`` and standard deviation ``s``. A device at
    ``(mu_k, s_k)`` on the shape switches with ``P(I) = 1 - F((mu_k - I) / s_k)``.
    """

    model: str
    table: NoiseTable
    fit: ModelFit | None = None
    mu: float = 0.0
    s: float = 1.0

    def _eta(self, current, mu, s):
        e = (np.asarray(current, dtype=float) - mu) / s
        if self.model == "probit":
            return e
        if self.model == "logistic":
            return e * LOGISTIC_SD
        return self.fit.eta(self.mu + self.s * e)

    def probability(self, current, mu, s):
        """The switching probability at ``current`` of the device at ``(mu, s)`` on the shape."""
        return _CDF[self.model](self._eta(current, mu, s))

    def log_probabilities(self, current, mu, s):
        """``(log P, log(1 - P))`` of :meth:`probability`, accurate in both tails."""
        lp, lq, _, _ = _LINK[self.model](self._eta(current, mu, s))
        return lp, lq

    def median(self, mu, s):
        """The current at which the device at ``(mu, s)`` switches with probability 1/2."""
        if self.model in ("probit", "logistic"):
            return float(mu)
        median = self.fit.params["i50"]   # the reference's, moved to (mu, s)
        return float(mu + s * (median - self.mu) / self.s)


def gaussian_shape():
    """The probit shape: the Gaussian noise table."""
    return Shape("probit", gaussian())


def threshold_moments(fit, where):
    """``(mu, s)``: the mean and standard deviation of the threshold whose distribution is the
    fitted curve, integrated numerically over the curve continued by its formula. InputError
    naming ``where`` when the curve does not rise from 0 to 1 (e.g. a thermal fit that levels off
    below 1, whose threshold has no mean)."""
    lo = hi = fit.frame.center
    step = fit.frame.scale
    for _ in range(200):
        if fit.probability(lo) <= _EDGE and 1 - fit.probability(hi) <= _EDGE:
            break
        lo, hi, step = lo - step, hi + step, step * 1.1
    else:
        bottom, top = float(fit.probability(lo)), float(fit.probability(hi))
        level = f"levels off at P = {top:.6g}" if 1 - top > _EDGE else f"stays at P = {bottom:.3g}"
        raise InputError(f"{where}: the {fit.model} fit {level}, so its threshold current has no "
                         "mean and no noise table fits it; measure further out or choose another "
                         "--model")
    grid = np.linspace(lo, hi, _GRID)
    mass = np.diff(fit.probability(grid))
    mid = (grid[1:] + grid[:-1]) / 2
    mass /= mass.sum()
    mu = float(mass @ mid)
    return mu, float(math.sqrt(mass @ (mid - mu) ** 2))


def shape_of(fit, where):
    """The :class:`Shape` of a device's fit (the reference device of a design)."""
    if fit.model == "probit":
        return gaussian_shape()
    if fit.model == "logistic":
        return Shape("logistic", logistic())
    mu, s = threshold_moments(fit, where)
    try:
        table = from_cdf(fit.model, lambda t: 1 - fit.probability(mu - s * np.asarray(t)))
    except TableError as error:
        raise InputError(f"{where}: the {fit.model} fit has no noise table: {error}") from None
    return Shape(fit.model, table, fit, mu, s)


def locate(shape, device):
    """``(mu, s)`` of a :class:`~spinemu.host.calibration.DeviceFit` on ``shape``.

    The probit's I50 and sigma, the logistic's I50 and ``pi / sqrt(3)`` times its ``s``, the
    shape's own moments for its reference device, and otherwise the binomial maximum-likelihood
    location and scale with the shape fixed (from the device's probit I50 and sigma).
    """
    if shape.model == "probit":
        return device.probit.i50, device.probit.sigma
    if shape.model == "logistic":
        params = device.fits["logistic"].params
        return params["i50"], params["s"] * LOGISTIC_SD
    if device.fits.get(shape.model) is shape.fit:
        return shape.mu, shape.s
    curve, start_mu, start_s = device.curve, device.probit.i50, device.probit.sigma
    failed, total = curve.trials - curve.switched, float(curve.trials.sum())

    def objective(p):
        lp, lq = shape.log_probabilities(curve.current, start_mu + start_s * p[0],
                                         start_s * math.exp(p[1]))
        return -(curve.switched @ lp + failed @ lq) / total

    result = optimize.minimize(objective, [0.0, 0.0], method="Nelder-Mead",
                               options={"initial_simplex": [[0, 0], [0.2, 0], [0, 0.2]],
                                        "xatol": 1e-9, "fatol": 1e-15, "maxiter": 5000})
    if not result.success:
        raise InputError(f"{curve.where}: the {shape.model} shape's location and scale did not "
                         f"converge ({result.message})")
    return start_mu + start_s * float(result.x[0]), start_s * math.exp(float(result.x[1]))

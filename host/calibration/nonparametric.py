"""The nonparametric shape: a monotone smooth fit of one device's switching curve.

``P(I) = Phi(g(x))``, where ``x`` is the standardised current (as in :mod:`.fit`) and ``g`` is a
smooth rising spline: its slope ``g'`` is piecewise linear between knots evenly spaced over the
measured range, one coefficient per knot bounded below by 0, and held at its end values beyond the
range, so ``g`` is piecewise quadratic with a continuous slope, never falls, and continues linearly
beyond the data. ``g`` is linear in its coefficients (its value at the first knot and the knots'
slopes), so the model is a probit GLM on a spline basis with non-negative coefficients, whose
log-likelihood is concave (one optimum). AIC counts every coefficient. Its pointwise band is the
delta method's, from the inverse observed information. ``docs/calibration.md`` is the spec.

A shape is only identified from data that reach both tails: fewer than :data:`MIN_CURRENTS`
distinct currents, no measured proportion below :data:`LOW` or none above :data:`HIGH`, or a fit
that is flat at either end (whose tail cannot be continued) is refused with an
:class:`~spinemu.host.errors.InputError` that names the data and the reason.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats
from scipy.special import ndtr

from spinemu.host.errors import InputError

from .fit import ModelFit, _fit_glm, _Frame, _model_fit, _probit_information

__all__ = ["FORMULA", "MIN_CURRENTS", "LOW", "HIGH", "MAX_SEGMENTS", "NonparametricFit",
           "fit_nonparametric"]

FORMULA = "P(I) = Phi(g(I)), g' >= 0 piecewise linear between the knots, constant beyond them"
MIN_CURRENTS = 5        # fewer distinct currents cannot show a shape
LOW, HIGH = 0.2, 0.8    # the data must reach below LOW and above HIGH
MAX_SEGMENTS = 4        # knots - 1: the most segments between knots (fewer for fewer currents)


def _ramp(z):
    """The integral of the hat function ``max(0, 1 - |u|)`` from -infinity to ``z``."""
    z = np.clip(z, -1, 1)
    return np.where(z < 0, (z + 1) ** 2 / 2, 1 - (1 - z) ** 2 / 2)


def _basis(x, knots):
    """The design matrix of ``g``: a column of ones (``g`` at the first knot), then per knot the
    integral from the first knot to ``x`` of its hat function (the slope ``g'`` is the hats'
    non-negative combination); the first hat stays 1 to the left and the last to the right, so
    ``g`` continues linearly beyond the knots."""
    x = np.asarray(x, dtype=float)[..., None]
    width = knots[1] - knots[0]                   # the knots are evenly spaced
    columns = width * _ramp((x - knots) / width)
    first, last = x[..., 0] - knots[0], x[..., 0] - knots[-1]
    columns[..., 0] = np.where(first < 0, first, columns[..., 0] - width / 2)
    columns[..., -1] = width * _ramp(np.minimum(last, 0) / width) + np.maximum(last, 0)
    return np.concatenate([np.ones_like(x), columns], axis=-1)


@dataclass(frozen=True)
class NonparametricFit(ModelFit):
    """The nonparametric fit: ``coef`` is ``g`` at the first knot, then ``g'`` at each knot (per
    standardised current); ``knots`` are in standardised current too. ``cov`` is the inverse
    observed information of ``coef``. ``params`` holds ``i50``, the ``knots`` in current units,
    ``g`` there and the ``slopes`` ``g'`` there per current unit."""

    knots: np.ndarray = field(default=None, repr=False)
    cov: np.ndarray = field(default=None, repr=False)

    def _eta(self, x):
        return _basis(x, self.knots) @ self.coef

    def band(self, current, level=0.95):
        """Pointwise ``level`` confidence band (lo, hi) of the curve at ``current``: a Wald interval
        on ``g`` (delta method) mapped through Phi."""
        design = _basis(self.frame.x(current), self.knots)
        sd = np.sqrt(np.maximum(np.einsum("...i,ij,...j->...", design, self.cov, design), 0))
        z = stats.norm.ppf(0.5 + level / 2)
        eta = design @ self.coef
        return ndtr(eta - z * sd), ndtr(eta + z * sd)


def _refusal(curve):
    """Why the data cannot identify a shape, or None."""
    n = len(curve.current)
    if n < MIN_CURRENTS:
        return (f"only {n} distinct currents; the nonparametric shape needs at least "
                f"{MIN_CURRENTS}")
    p = curve.switched / curve.trials
    if p.min() >= LOW:
        return (f"no current switched with probability below {LOW:g} (the lowest is {p.min():.3g}"
                f" at {curve.current[p.argmin()]:g}), so the shape's lower tail is unknown; "
                "measure at lower currents")
    if p.max() <= HIGH:
        return (f"no current switched with probability above {HIGH:g} (the highest is "
                f"{p.max():.3g} at {curve.current[p.argmax()]:g}), so the shape's upper tail is "
                "unknown; measure at higher currents")
    return None


def fit_nonparametric(curve):
    """Fit the nonparametric shape to a :class:`~spinemu.host.calibration.Curve` (checked with
    :meth:`~spinemu.host.calibration.Curve.check` first); returns a :class:`NonparametricFit`.

    ``min(MAX_SEGMENTS, (currents - 1) // 2)`` segments between the knots, so each holds about two
    currents or more. :class:`InputError` naming the data when they cannot identify a shape (see the
    module).
    """
    curve.check()
    reason = _refusal(curve)
    if reason is not None:
        raise InputError(f"{curve.where}: nonparametric shape refused: {reason}")
    frame = _Frame.of(curve)
    x = frame.x(curve.current)
    segments = min(MAX_SEGMENTS, (len(x) - 1) // 2)
    knots = np.linspace(x.min(), x.max(), segments + 1)
    design = _basis(x, knots)
    lower = np.array([-np.inf] + [0.0] * (segments + 1))
    coef, log_likelihood = _fit_glm("nonparametric", curve, design, lower, np.full(segments + 2, np.inf))
    for end, side in ((1, "lowest"), (segments + 1, "highest")):
        if coef[end] <= 0:
            raise InputError(f"{curve.where}: nonparametric shape refused: the fit is flat at the "
                             f"{side} currents, so its tail cannot be continued beyond them; "
                             "measure further out")
    cov = np.linalg.pinv(_probit_information(curve, design, coef))
    params = {"i50": _median(frame, knots, coef),
              "knots": (frame.center + frame.scale * knots).tolist(),
              "g": (_basis(knots, knots) @ coef).tolist(),
              "slopes": (coef[1:] / frame.scale).tolist()}
    return NonparametricFit(**_model_fit("nonparametric", curve, frame, coef, log_likelihood, params),
                            knots=knots, cov=cov)


def _median(frame, knots, coef):
    """The current where ``g`` crosses 0: within the knots, or on an end's line beyond them."""
    def g(x):
        return float(_basis(x, knots) @ coef)
    lo, hi = knots[0], knots[-1]
    if g(lo) > 0:
        x = lo - g(lo) / coef[1]
    elif g(hi) < 0:
        x = hi - g(hi) / coef[-1]
    else:
        x = optimize.brentq(g, lo, hi, xtol=1e-14)
    return float(frame.center + frame.scale * x)

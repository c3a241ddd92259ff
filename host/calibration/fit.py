"""Fit one device's switching curve: the probit model, and the logistic and thermal curves.

A device's switching probability rises with the current like a Gaussian CDF, ``P(I) = Phi((I - I50)
/ sigma)``; this module fits that *probit* model by binomial maximum likelihood, with
profile-likelihood confidence intervals and a deviance goodness-of-fit test, and the logistic and
thermal-activation (Neel-Brown) curves, so that a device that is not Gaussian shows up as such
(:mod:`.nonparametric` adds a shape-free fit, :mod:`.device_fit` compares them all by AIC).
``docs/calibration.md`` is the spec.

Every model is a binomial GLM: ``P = F(eta)`` with a linear predictor ``eta`` in standardised current
``x = (I - center) / scale`` and a log-concave link ``F`` (normal, logistic, complementary log-log), so
each log-likelihood is concave in the fitted coefficients and has one optimum, which a bounded
quasi-Newton method (SLSQP) finds from any start; the natural parameters (I50, sigma, ...) are
computed from the coefficients. Data that cannot identify the curve raise
:class:`~spinemu.host.errors.InputError` naming where they came from.
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats
from scipy.special import expit, log_ndtr, ndtr

from spinemu.host.errors import InputError

__all__ = ["PARAMETRIC", "FORMULAS", "ModelFit", "ProbitFit", "fit_probit", "fit_parametric"]

PARAMETRIC = ("probit", "logistic", "thermal")
FORMULAS = {
    "probit": "P(I) = Phi((I - i50) / sigma)",
    "logistic": "P(I) = 1 / (1 + exp(-(I - i50) / s))",
    "thermal": "P(I) = 1 - exp(-exp(ln_t_over_tau0 - delta * (1 - I / ic)**2)), I <= ic",
}
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LN_LN_2 = math.log(math.log(2))  # cloglog of P = 0.5


# ---------------------------------------------------------------------------------------------
# Links: (log F, log(1 - F), d log F / d eta, d log(1 - F) / d eta), all overflow-safe


def _probit_link(eta):
    lp, lq = log_ndtr(eta), log_ndtr(-eta)
    log_pdf = -0.5 * eta * eta - _LOG_SQRT_2PI
    return lp, lq, np.exp(log_pdf - lp), -np.exp(log_pdf - lq)


def _logit_link(eta):
    return -np.logaddexp(0, -eta), -np.logaddexp(0, eta), expit(-eta), -expit(eta)


def _cloglog_link(eta):
    rate = np.exp(np.clip(eta, -700, 700))  # exp overflows beyond 709; no fit lies out there
    p = -np.expm1(-rate)
    return np.log(p), -rate, rate * np.exp(-rate) / p, -rate


# the nonparametric model (:mod:`.nonparametric`) is a probit of a monotone spline
_CDF = {"probit": ndtr, "logistic": expit, "thermal": lambda eta: -np.expm1(-np.exp(eta)),
        "nonparametric": ndtr}
_LINK = {"probit": _probit_link, "logistic": _logit_link, "thermal": _cloglog_link,
         "nonparametric": _probit_link}


# ---------------------------------------------------------------------------------------------
# Fits


@dataclass(frozen=True)
class _Frame:
    """Standardised current x = (I - center) / scale; ``top`` is the largest measured x."""

    center: float
    scale: float
    top: float

    @classmethod
    def of(cls, curve):
        center, scale = float(curve.current.mean()), float(curve.current.std())
        return cls(center, scale, float((curve.current.max() - center) / scale))

    def x(self, current):
        return (np.asarray(current, dtype=float) - self.center) / self.scale


@dataclass(frozen=True)
class ModelFit:
    """A maximum-likelihood fit of one model to one device's curve.

    ``params`` holds the model's natural parameters in the file's current unit (see ``FORMULAS``);
    ``log_likelihood`` is that of the individual Bernoulli trials (no binomial coefficients), so raw and
    aggregated forms of the same data give the same value. ``deviance`` is twice the log-likelihood
    gap to the saturated model, with ``dof`` = distinct currents - parameters and its chi-square
    ``deviance_p`` (``None`` when ``dof`` is 0). ``coef`` are the GLM coefficients on ``frame``.
    """

    model: str
    params: dict
    log_likelihood: float
    deviance: float
    dof: int
    deviance_p: float | None
    n_params: int
    coef: np.ndarray = field(repr=False)
    frame: _Frame = field(repr=False)

    @property
    def aic(self):
        """Akaike's information criterion, 2 k - 2 log L."""
        return 2 * self.n_params - 2 * self.log_likelihood

    def probability(self, current):
        """The fitted switching probability at ``current`` (array-like, file units)."""
        return _CDF[self.model](self.eta(current))

    def log_probabilities(self, current):
        """``(log P, log(1 - P))`` at ``current``, accurate far out in both tails."""
        lp, lq, _, _ = _LINK[self.model](self.eta(current))
        return lp, lq

    def eta(self, current):
        """The linear predictor at ``current`` (file units): ``P = F(eta)`` with the model's link."""
        return self._eta(self.frame.x(current))

    def _eta(self, x):
        if self.model != "thermal":
            return self.coef[0] + self.coef[1] * x
        c0, d, b2 = self.coef
        u = x - self.frame.top
        if b2 < 0:  # beyond Ic the barrier is gone: eta stays at its peak ln(t / tau0)
            u = np.minimum(u, d / (-2 * b2))
        return c0 + d * u + b2 * u * u


@dataclass(frozen=True)
class ProbitFit(ModelFit):
    """The probit fit with ``level`` confidence intervals for I50 and sigma by profile likelihood.

    An interval end is ``None`` when the profile deviance stays below the chi-square cut however far
    the parameter goes (the data do not bound it on that side). ``cov`` is the inverse observed
    information of the coefficients (alpha, beta) of ``eta = alpha + beta * x``.
    """

    i50_ci: tuple = (None, None)
    sigma_ci: tuple = (None, None)
    level: float = 0.95
    cov: np.ndarray = field(default=None, repr=False)

    @property
    def i50(self):
        """Current at which the device switches with probability 1/2."""
        return self.params["i50"]

    @property
    def sigma(self):
        """Width of the Gaussian threshold distribution."""
        return self.params["sigma"]

    def band(self, current, level=0.95):
        """Pointwise ``level`` confidence band (lo, hi) of the probit curve at ``current``.

        A Wald interval on the linear predictor mapped through Phi, so it stays inside [0, 1].
        """
        x = self.frame.x(current)
        eta = self.coef[0] + self.coef[1] * x
        sd = np.sqrt(self.cov[0, 0] + 2 * x * self.cov[0, 1] + x * x * self.cov[1, 1])
        z = stats.norm.ppf(0.5 + level / 2)
        return ndtr(eta - z * sd), ndtr(eta + z * sd)


def _design(model, x, frame):
    """The GLM's design matrix and the coefficients' (lower, upper) bounds."""
    if model == "thermal":
        # eta = c0 + d u + b2 u^2, u = x - top: d >= 0 puts Ic at or beyond the largest current,
        # b2 <= 0 keeps Delta >= 0
        u = x - frame.top
        return (np.column_stack([np.ones_like(u), u, u * u]),
                np.array([-np.inf, 0, -np.inf]), np.array([np.inf, np.inf, 0]))
    # beta = 1 / sigma >= 0: the curve may not fall
    return np.column_stack([np.ones_like(x), x]), np.array([-np.inf, 0]), np.array([np.inf, np.inf])


def _fit_glm(model, curve, design, lower, upper):
    """Maximise the binomial log-likelihood of ``P = F(design @ coef)`` (``F``: the model's link)
    within the bounds; returns (coef, log_likelihood)."""
    n, s = curve.trials, curve.switched
    f = n - s
    total = float(n.sum())  # the objective is per trial, so tolerances do not depend on data size
    link = _LINK[model]
    # empirical link values of the shrunk proportions give a starting line (the start only speeds
    # things up: the objective is concave)
    p = (s + 0.5) / (n + 1.0)
    empirical = {"logistic": np.log(p / (1 - p)),
                 "thermal": np.log(-np.log1p(-p))}.get(model, stats.norm.ppf(p))
    start, *_ = np.linalg.lstsq(design * np.sqrt(n)[:, None], empirical * np.sqrt(n), rcond=None)

    def objective(coef):
        lp, lq, dp, dq = link(design @ coef)
        return -(s @ lp + f @ lq) / total, -design.T @ (s * dp + f * dq) / total

    # SLSQP rather than L-BFGS-B: as exact here, and several times faster on these tiny problems
    result = optimize.minimize(objective, np.clip(start, lower, upper), jac=True, method="SLSQP",
                               bounds=list(zip(lower, upper, strict=True)),
                               options={"ftol": 1e-15, "maxiter": 1000})
    value, grad = objective(result.x)
    pinned = ((result.x <= lower) & (grad > 0)) | ((result.x >= upper) & (grad < 0))
    # a line-search stop at the optimum is fine; only a gradient left to follow is a failure
    if not result.success and np.max(np.abs(grad[~pinned]), initial=0) > 1e-6:
        raise InputError(f"{curve.where}: the {model} fit did not converge ({result.message})")
    return result.x, -value * total


def _model_fit(model, curve, frame, coef, log_likelihood, params=None):
    """:class:`ModelFit`'s fields: the natural parameters (``params``, default: the parametric
    models') and the goodness of fit, for fitted coefficients."""
    deviance = max(2 * (curve.saturated_log_likelihood() - log_likelihood), 0.0)
    k = len(coef)
    dof = len(curve.current) - k
    params = _natural_params(model, coef, frame) if params is None else params
    return dict(model=model, params=params, log_likelihood=float(log_likelihood),
                deviance=float(deviance), dof=dof,
                deviance_p=float(stats.chi2.sf(deviance, dof)) if dof > 0 else None,
                n_params=k, coef=coef, frame=frame)


def _natural_params(model, coef, frame):
    c, scale = frame.center, frame.scale
    coef = [float(v) for v in coef]
    if model in ("probit", "logistic"):
        alpha, beta = coef
        width = "sigma" if model == "probit" else "s"
        return {"i50": c + scale * (-alpha / beta), width: scale / beta}
    c0, d, b2 = coef
    if b2 == 0:  # linear-barrier (Sharrock) limit: Delta and Ic run to infinity
        i50 = c + scale * (frame.top + (_LN_LN_2 - c0) / d) if d > 0 else None
        return {"i50": i50, "ic": None, "delta": None,
                "ln_t_over_tau0": None, "linear_barrier_limit": True}
    u_peak = d / (-2 * b2)
    ln_rate = c0 + d * u_peak + b2 * u_peak ** 2
    ic = c + scale * (frame.top + u_peak)
    i50 = (ic - scale * math.sqrt((ln_rate - _LN_LN_2) / -b2)) if ln_rate > _LN_LN_2 else None
    return {"i50": i50, "ic": ic, "delta": -b2 * (ic / scale) ** 2, "ln_t_over_tau0": ln_rate,
            "linear_barrier_limit": False}


def _require_rising(curve, coef):
    if coef[1] <= 0:
        raise InputError(f"{curve.where}: the switching probability does not rise with the current "
                         "(the best-fitting curve is flat); check the sign of the 'current' column")


def fit_probit(curve, level=0.95):
    """Fit ``P(I) = Phi((I - I50) / sigma)`` to a :class:`Curve` by binomial maximum likelihood.

    Returns a :class:`ProbitFit` with profile-likelihood intervals at ``level`` for I50 and sigma.
    Raises :class:`InputError` when the data cannot identify the curve (see :meth:`Curve.check`) or
    do not rise with the current.
    """
    curve.check()
    frame = _Frame.of(curve)
    design, lower, upper = _design("probit", frame.x(curve.current), frame)
    coef, log_likelihood = _fit_glm("probit", curve, design, lower, upper)
    _require_rising(curve, coef)
    info = _probit_information(curve, design, coef)
    cov = np.linalg.inv(info)
    i50_ci, sigma_ci = _profile_intervals(curve, frame, coef, log_likelihood, cov, level)
    return ProbitFit(**_model_fit("probit", curve, frame, coef, log_likelihood),
                     i50_ci=i50_ci, sigma_ci=sigma_ci, level=level, cov=cov)


def fit_parametric(curve, level=0.95):
    """Fit every model in ``PARAMETRIC`` to a :class:`Curve`; returns ``{name: ModelFit}``.

    The probit entry is a :class:`ProbitFit` with confidence intervals at ``level``.
    """
    fits = {"probit": fit_probit(curve, level)}
    frame = fits["probit"].frame
    for model in PARAMETRIC[1:]:
        coef, log_likelihood = _fit_glm(model, curve, *_design(model, frame.x(curve.current), frame))
        if model == "logistic":
            _require_rising(curve, coef)
        fits[model] = ModelFit(**_model_fit(model, curve, frame, coef, log_likelihood))
    return fits


# ---------------------------------------------------------------------------------------------
# Profile likelihood for the probit


def _probit_terms(eta, s, f):
    """Log-likelihood and its first and second derivatives in eta, per current."""
    lp, lq, rp, minus_rq = _probit_link(eta)
    rq = -minus_rq  # rp = phi / Phi(eta), rq = phi / Phi(-eta)
    return (float(s @ lp + f @ lq), s * rp - f * rq, -s * rp * (eta + rp) - f * rq * (rq - eta))


def _probit_information(curve, design, coef):
    """The observed information of the coefficients of ``eta = design @ coef`` under the probit."""
    s, f = curve.switched, curve.trials - curve.switched
    _, _, h = _probit_terms(design @ coef, s, f)
    return -(design.T * h) @ design


def _maximize_concave(fun, t, lower=-np.inf):
    """Maximise a concave function of one variable by safeguarded Newton steps.

    ``fun(t)`` returns (value, first derivative, second derivative); ``t`` stays above ``lower``.
    """
    value, grad, curv = fun(t)
    for _ in range(200):
        step = -grad / curv if curv < 0 else math.copysign(1.0, grad)
        while True:
            new = t + step
            if new <= lower:  # halve the way to the bound instead of crossing it
                new = lower + (t - lower) / 2
            new_value, new_grad, new_curv = fun(new)
            if new_value >= value - 1e-13 * abs(value):
                break
            step /= 2
            if abs(step) <= 1e-15 * (1 + abs(t)):
                return t, value
        done = abs(new - t) <= 1e-12 * (1 + abs(t))
        t, value, grad, curv = new, new_value, new_grad, new_curv
        if done:
            break
    return t, value


def _profile_intervals(curve, frame, coef, log_likelihood, cov, level):
    """Profile-likelihood intervals for I50 and sigma, in the file's units."""
    x = frame.x(curve.current)
    s, f = curve.switched, curve.trials - curve.switched
    alpha, beta = coef
    warm = {"beta": beta, "mu": -alpha / beta}

    def deviance_at_mu(mu):  # maximise over beta >= 0 with the centre fixed at mu
        u = x - mu

        def fun(b):
            value, g, h = _probit_terms(b * u, s, f)
            return value, float(g @ u), float(h @ (u * u))
        warm["beta"], value = _maximize_concave(fun, warm["beta"], lower=0.0)
        return 2 * (log_likelihood - value)

    def deviance_at_log_sigma(t):  # maximise over alpha with the slope fixed at 1 / sigma
        b = math.exp(-t)

        def fun(a):
            value, g, h = _probit_terms(a + b * x, s, f)
            return value, float(g.sum()), float(h.sum())
        a, value = _maximize_concave(fun, -warm["mu"] * b)
        warm["mu"] = -a / b
        return 2 * (log_likelihood - value)

    cut = stats.chi2.ppf(level, 1)
    mu_hat, log_sigma_hat = -alpha / beta, -math.log(beta)
    se_mu = math.sqrt(max(np.array([-1 / beta, alpha / beta ** 2]) @ cov
                          @ np.array([-1 / beta, alpha / beta ** 2]), 1e-300))
    se_log_sigma = math.sqrt(max(cov[1, 1], 1e-300)) / beta
    mu_ci = [_crossing(deviance_at_mu, mu_hat, se_mu, side, cut, limit=1e3) for side in (-1, 1)]
    log_sigma_ci = [_crossing(deviance_at_log_sigma, log_sigma_hat, se_log_sigma, side, cut, limit=40)
                    for side in (-1, 1)]
    i50_ci = tuple(None if m is None else frame.center + frame.scale * m for m in mu_ci)
    sigma_ci = tuple(None if t is None else frame.scale * math.exp(t) for t in log_sigma_ci)
    return i50_ci, sigma_ci


def _crossing(deviance, t_hat, step, side, cut, limit):
    """Where the profile deviance reaches ``cut`` on one ``side`` of the optimum, or None.

    Steps out from ``t_hat`` in doubling multiples of ``step`` to bracket the crossing, then refines
    it with Brent's method; None when ``limit`` is passed first (the data leave that side open).
    """
    inner, distance = t_hat, step
    while distance <= limit:
        outer = t_hat + side * distance
        if deviance(outer) >= cut:
            return optimize.brentq(lambda t: deviance(t) - cut, min(inner, outer), max(inner, outer),
                                   xtol=1e-10, rtol=1e-12)
        inner, distance = outer, distance * 2
    return None

"""Device calibration: read switching measurements and fit the device's switching curve.

A stochastic switching device is measured by applying current pulses of amplitude ``current`` and
counting how many of the ``trials`` pulses ``switched`` it. Its switching probability rises with the
current like a Gaussian CDF, ``P(I) = Phi((I - I50) / sigma)``; this module fits that *probit* model by
binomial maximum likelihood, with profile-likelihood confidence intervals and a deviance
goodness-of-fit test, and compares it by AIC with a logistic and a thermal-activation (Neel-Brown)
curve, so that a device that is not Gaussian shows up as such. ``docs/calibration.md`` is the spec.

Every model is a binomial GLM: ``P = F(eta)`` with a linear predictor ``eta`` in standardised current
``x = (I - center) / scale`` and a log-concave link ``F`` (normal, logistic, complementary log-log), so
each log-likelihood is concave in the fitted coefficients and has one optimum, which a bounded
quasi-Newton method (SLSQP) finds from any start; the natural parameters (I50, sigma, ...) are
computed from the coefficients.

Bad input raises :class:`spinemu.host.cli.UserError` naming the file, the line and the problem.
"""

import csv
import math
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats
from scipy.special import expit, log_ndtr, ndtr, xlogy

from spinemu.host.cli import UserError

__all__ = [
    "Measurements", "Curve", "ModelFit", "ProbitFit", "DeviceFit", "Population", "Calibration",
    "MODELS", "read_measurements", "fit_probit", "fit_models", "fit_device", "fit_population",
    "calibrate", "calibration_report", "make_synthetic",
]

MODELS = ("probit", "logistic", "thermal")
FORMULAS = {
    "probit": "P(I) = Phi((I - i50) / sigma)",
    "logistic": "P(I) = 1 / (1 + exp(-(I - i50) / s))",
    "thermal": "P(I) = 1 - exp(-exp(ln_t_over_tau0 - delta * (1 - I / ic)**2)), I <= ic",
}
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LN_LN_2 = math.log(math.log(2))  # cloglog of P = 0.5
_COLUMNS_HELP = ("expected columns 'current', 'trials', 'switched' (aggregated: one row per current) "
                 "or 'current', 'switched' (raw: one 0/1 row per trial), optionally 'device'")


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Measurements:
    """Switching measurements as read from one CSV file, one entry per data row.

    ``form`` is ``"aggregated"`` (rows of ``trials`` pulses of which ``switched`` switched) or
    ``"raw"`` (one row per pulse, ``trials`` is 1). ``device`` holds the row's device label, or is
    ``None`` when the file has no ``device`` column. ``line`` is each row's line number in the file
    (the header is on line 1 unless comments precede it). ``unit`` names the current's unit.
    """

    path: str
    form: str
    current: np.ndarray
    trials: np.ndarray
    switched: np.ndarray
    line: np.ndarray
    device: tuple | None = None
    unit: str | None = None
    ignored_columns: tuple = ()

    def curves(self):
        """The data grouped by device (in order of first appearance) and current: a list of Curve."""
        if self.device is None:
            groups = [(None, np.arange(len(self.current)))]
        else:
            labels = np.array(self.device, dtype=object)
            order = dict.fromkeys(self.device)
            groups = [(label, np.flatnonzero(labels == label)) for label in order]
        curves = []
        for label, rows in groups:
            where = (f"{self.path}, " + (f"device '{label}', " if label is not None else "")
                     + f"lines {_ranges(self.line[rows])}")
            curves.append(Curve.from_counts(self.current[rows], self.trials[rows],
                                            self.switched[rows], device=label, where=where))
        return curves


def read_measurements(path, unit=None):
    """Read switching measurements from the CSV file ``path`` and check every row.

    The file has a header naming its columns (case and surrounding spaces do not matter):
    ``current``, ``trials``, ``switched`` for aggregated data or ``current``, ``switched`` (0 or 1)
    for raw data, plus an optional ``device`` label. Lines starting with ``#`` and blank lines are
    skipped; other columns are kept out of the fit and listed in ``ignored_columns``. Any bad row
    raises :class:`UserError` naming the file, the line and the problem; nothing is dropped.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            text = stream.read()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None

    records = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
               if line.strip() and not line.lstrip().startswith("#")]
    if not records:
        raise UserError(f"{path}: the file is empty; {_COLUMNS_HELP}")
    header_line, header_text = records[0]
    header = [name.strip().lower() for name in next(csv.reader([header_text]))]
    where = f"{path}, line {header_line} (header)"
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise UserError(f"{where}: column '{duplicates[0]}' appears more than once")
    form = "aggregated" if "trials" in header else "raw"
    wanted = ["current", "trials", "switched"] if form == "aggregated" else ["current", "switched"]
    missing = [name for name in wanted if name not in header]
    if missing and len(header) == 1 and any(sep in header_text for sep in ";\t"):
        raise UserError(f"{where}: the columns must be separated by commas, not by "
                        f"{'semicolons' if ';' in header_text else 'tabs'}")
    if missing:
        raise UserError(f"{where}: missing column '{missing[0]}' (found: {', '.join(header)}); "
                        f"{_COLUMNS_HELP}")
    has_device = "device" in header
    index = {name: header.index(name) for name in wanted + ["device"] * has_device}
    if len(records) == 1:
        raise UserError(f"{path}: no data rows after the header on line {header_line}")

    current, trials, switched, lines, devices = [], [], [], [], []
    for row, (number, line) in enumerate(records[1:], start=1):
        where = f"{path}, line {number} (data row {row})"
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            raise UserError(f"{where}: {len(fields)} fields, but the header names {len(header)} "
                            f"({', '.join(header)})")
        value = {name: fields[i].strip() for name, i in index.items()}
        amps = _number(value["current"], "current", where)
        hits = _count(value["switched"], "switched", where)
        if form == "aggregated":
            pulses = _count(value["trials"], "trials", where)
            if pulses == 0:
                raise UserError(f"{where}: column 'trials' is 0; every row must hold at least one trial")
            if hits > pulses:
                raise UserError(f"{where}: switched ({hits}) is greater than trials ({pulses})")
        else:
            pulses = 1
            if hits > 1:
                raise UserError(f"{where}: column 'switched' is {value['switched']}, but raw data (no "
                                "'trials' column) need 0 or 1 per trial; add a 'trials' column for counts")
        if has_device:
            if not value["device"]:
                raise UserError(f"{where}: column 'device' is empty")
            devices.append(value["device"])
        current.append(amps)
        trials.append(pulses)
        switched.append(hits)
        lines.append(number)
    ignored = tuple(name for name in header if name not in index)
    return Measurements(path=path, form=form, current=np.array(current, dtype=float),
                        trials=np.array(trials, dtype=np.int64),
                        switched=np.array(switched, dtype=np.int64), line=np.array(lines),
                        device=tuple(devices) if has_device else None, unit=unit,
                        ignored_columns=ignored)


def _number(text, column, where):
    if not text:
        raise UserError(f"{where}: column '{column}' is empty")
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: column '{column}': '{text}' is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: column '{column}' is '{text}'; it must be a finite number")
    return value


def _count(text, column, where):
    value = _number(text, column, where)
    if value < 0:
        raise UserError(f"{where}: column '{column}' is negative ({text}); counts must be >= 0")
    if value != int(value):
        raise UserError(f"{where}: column '{column}': '{text}' is not a whole number of trials")
    return int(value)


def _ranges(numbers):
    """'2-5, 9, 12-14' for line numbers; long lists are cut short."""
    spans = []
    for n in sorted(int(n) for n in numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans[:4])
    return text + (f", ... ({len(numbers)} rows)" if len(spans) > 4 else "")


# ---------------------------------------------------------------------------------------------
# One device's data


@dataclass(frozen=True)
class Curve:
    """One device's switching counts, one entry per distinct current (sorted ascending).

    ``where`` says where the data came from, for error messages (e.g. ``"data.csv, lines 2-13"``).
    Build one from arrays with :meth:`from_counts`, which merges rows with equal currents.
    """

    current: np.ndarray
    trials: np.ndarray
    switched: np.ndarray
    device: str | None = None
    where: str = "data"

    @classmethod
    def from_counts(cls, current, trials, switched, device=None, where="data"):
        """Group counts by current: ``trials`` and ``switched`` are summed over equal currents.

        Raises ValueError unless the currents are finite, ``trials`` >= 1 and 0 <= ``switched`` <=
        ``trials`` (files are checked row by row before they get here).
        """
        current = np.asarray(current, dtype=float)
        trials, switched = np.asarray(trials), np.asarray(switched)
        if not (np.all(np.isfinite(current)) and np.all(trials >= 1) and np.all(switched >= 0)
                and np.all(switched <= trials) and current.shape == trials.shape == switched.shape):
            raise ValueError("a Curve needs equal-length arrays of finite currents, trials >= 1 and "
                             "0 <= switched <= trials")
        levels, inverse = np.unique(current, return_inverse=True)
        total = np.zeros(len(levels), dtype=np.int64)
        hits = np.zeros(len(levels), dtype=np.int64)
        np.add.at(total, inverse, np.asarray(trials, dtype=np.int64))
        np.add.at(hits, inverse, np.asarray(switched, dtype=np.int64))
        return cls(levels, total, hits, device, where)

    def check(self):
        """Raise :class:`UserError` unless the data can identify both I50 and sigma.

        The maximum-likelihood sigma is 0 (no finite fit) when the data are separated: no trial
        switched below some current and every trial switched above it, with at most one current in
        between; all-0 and all-1 data are the extreme cases.
        """
        if len(self.current) < 3:
            raise UserError(f"{self.where}: only {len(self.current)} distinct current(s) "
                            f"({', '.join(f'{c:g}' for c in self.current)}); a fit of I50 and sigma "
                            "needs at least 3")
        some = self.current[self.switched > 0]
        not_all = self.current[self.switched < self.trials]
        if len(some) == 0:
            raise UserError(f"{self.where}: no trial switched at any current, so the switching curve "
                            "cannot be located; measure at higher currents")
        if len(not_all) == 0:
            raise UserError(f"{self.where}: every trial switched at every current, so the switching "
                            "curve cannot be located; measure at lower currents")
        low, high = not_all.max(), some.min()
        if low < high:
            raise UserError(f"{self.where}: no trial switched up to {low:g} and every trial switched "
                            f"from {high:g} on, so the curve's width (sigma) cannot be estimated "
                            f"(its best fit is 0); measure at currents between {low:g} and {high:g}")
        if low == high:
            raise UserError(f"{self.where}: only one current ({low:g}) gives a switching probability "
                            "between 0 and 1, so the curve's width (sigma) cannot be estimated (its best "
                            f"fit is 0); measure more currents around {low:g}")

    def saturated_log_likelihood(self):
        """The log-likelihood of the saturated model (each current its own probability)."""
        s, f, n = self.switched, self.trials - self.switched, self.trials
        return float(np.sum(xlogy(s, s / n) + xlogy(f, f / n)))


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


_CDF = {"probit": ndtr, "logistic": expit, "thermal": lambda eta: -np.expm1(-np.exp(eta))}
_LINK = {"probit": _probit_link, "logistic": _logit_link, "thermal": _cloglog_link}


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
        return _CDF[self.model](self._eta(self.frame.x(current)))

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


def _fit_glm(model, curve, frame):
    """Maximise the model's binomial log-likelihood; returns (coef, log_likelihood)."""
    x = frame.x(curve.current)
    n, s = curve.trials, curve.switched
    f = n - s
    total = float(n.sum())  # the objective is per trial, so tolerances do not depend on data size
    link = _LINK[model]
    # empirical link values of the shrunk proportions give a starting line (the start only speeds
    # things up: the objective is concave)
    p = (s + 0.5) / (n + 1.0)
    empirical = {"probit": stats.norm.ppf(p), "logistic": np.log(p / (1 - p)),
                 "thermal": np.log(-np.log1p(-p))}[model]
    if model == "thermal":
        # eta = c0 + d u + b2 u^2, u = x - top: d >= 0 puts Ic at or beyond the largest current,
        # b2 <= 0 keeps Delta >= 0
        u = x - frame.top
        design = np.column_stack([np.ones_like(u), u, u * u])
        lower, upper = np.array([-np.inf, 0, -np.inf]), np.array([np.inf, np.inf, 0])
    else:
        design = np.column_stack([np.ones_like(x), x])
        # beta = 1 / sigma >= 0: the curve may not fall
        lower, upper = np.array([-np.inf, 0]), np.array([np.inf, np.inf])
    start, *_ = np.linalg.lstsq(design * np.sqrt(n)[:, None], empirical * np.sqrt(n), rcond=None)

    def objective(coef):
        lp, lq, dp, dq = link(design @ coef)
        return -(s @ lp + f @ lq) / total, -design.T @ (s * dp + f * dq) / total

    # SLSQP rather than L-BFGS-B: as exact here, and several times faster on these tiny problems
    result = optimize.minimize(objective, np.clip(start, lower, upper), jac=True, method="SLSQP",
                               bounds=list(zip(lower, upper)), options={"ftol": 1e-15, "maxiter": 1000})
    value, grad = objective(result.x)
    pinned = ((result.x <= lower) & (grad > 0)) | ((result.x >= upper) & (grad < 0))
    # a line-search stop at the optimum is fine; only a gradient left to follow is a failure
    if not result.success and np.max(np.abs(grad[~pinned]), initial=0) > 1e-6:
        raise UserError(f"{curve.where}: the {model} fit did not converge ({result.message})")
    return result.x, -value * total


def _model_fit(model, curve, frame, coef, log_likelihood):
    """Natural parameters and goodness of fit for fitted coefficients."""
    deviance = max(2 * (curve.saturated_log_likelihood() - log_likelihood), 0.0)
    k = len(coef)
    dof = len(curve.current) - k
    params = _natural_params(model, coef, frame)
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
        raise UserError(f"{curve.where}: the switching probability does not rise with the current "
                        "(the best-fitting curve is flat); check the sign of the 'current' column")


def fit_probit(curve, level=0.95):
    """Fit ``P(I) = Phi((I - I50) / sigma)`` to a :class:`Curve` by binomial maximum likelihood.

    Returns a :class:`ProbitFit` with profile-likelihood intervals at ``level`` for I50 and sigma.
    Raises :class:`UserError` when the data cannot identify the curve (see :meth:`Curve.check`) or
    do not rise with the current.
    """
    curve.check()
    frame = _Frame.of(curve)
    coef, log_likelihood = _fit_glm("probit", curve, frame)
    _require_rising(curve, coef)
    info = _probit_information(curve, frame.x(curve.current), coef)
    cov = np.linalg.inv(info)
    i50_ci, sigma_ci = _profile_intervals(curve, frame, coef, log_likelihood, cov, level)
    return ProbitFit(**_model_fit("probit", curve, frame, coef, log_likelihood),
                     i50_ci=i50_ci, sigma_ci=sigma_ci, level=level, cov=cov)


def fit_models(curve, level=0.95):
    """Fit every model in ``MODELS`` to a :class:`Curve`; returns ``{name: ModelFit}``.

    The probit entry is a :class:`ProbitFit` with confidence intervals at ``level``.
    """
    fits = {"probit": fit_probit(curve, level)}
    frame = fits["probit"].frame
    for model in MODELS[1:]:
        coef, log_likelihood = _fit_glm(model, curve, frame)
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


def _probit_information(curve, x, coef):
    s, f = curve.switched, curve.trials - curve.switched
    _, _, h = _probit_terms(coef[0] + coef[1] * x, s, f)
    design = np.column_stack([np.ones_like(x), x])
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


# ---------------------------------------------------------------------------------------------
# Devices and populations


@dataclass(frozen=True)
class DeviceFit:
    """All model fits of one device's curve and the model its data prefer by AIC."""

    curve: Curve
    fits: dict

    @property
    def probit(self):
        """The :class:`ProbitFit`."""
        return self.fits["probit"]

    @property
    def preferred_model(self):
        """The model with the smallest AIC."""
        return min(self.fits, key=lambda name: self.fits[name].aic)


def fit_device(curve, level=0.95):
    """Fit every model to one device's :class:`Curve`; returns a :class:`DeviceFit`."""
    return DeviceFit(curve, fit_models(curve, level))


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
    """The calibration of one measurement file: per-device fits, and a population with a device column."""

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


# ---------------------------------------------------------------------------------------------
# The JSON-able report


def calibration_report(calibration):
    """The calibration as a JSON-able dict (the fields are listed in ``docs/calibration.md``).

    The top level carries the probit I50 and sigma used downstream: the device's own fit for a
    single device, the population means over the devices with a ``device`` column (``estimate`` says
    which). ``devices`` always lists each device's fits.
    """
    m = calibration.measurements
    devices = [_device_report(d) for d in calibration.devices]
    report = {"source": m.path, "unit": m.unit, "data_form": m.form, "model": "probit",
              "formula": FORMULAS["probit"]}
    population = calibration.population
    if population is None:
        report["estimate"] = "device fit"
        report.update({key: devices[0][key] for key in _SUMMARY_KEYS})
        report["ci_method"] = "profile likelihood"
    else:
        report.update(_population_summary(population))
        report["population"] = {
            "count": population.count,
            "i50_mean": population.i50_mean, "i50_std": population.i50_std,
            "sigma_mean": population.sigma_mean, "sigma_std": population.sigma_std,
            "i50_sigma_correlation": population.correlation,
            "i50_mean_ci": list(population.i50_mean_ci),
            "sigma_mean_ci": list(population.sigma_mean_ci),
            "preferred_model_counts": {model: sum(d.preferred_model == model for d in population.devices)
                                       for model in MODELS},
        }
    report["devices"] = devices
    if m.ignored_columns:
        report["ignored_columns"] = list(m.ignored_columns)
    return report


_SUMMARY_KEYS = ("i50", "sigma", "i50_ci", "sigma_ci", "ci_level", "deviance", "deviance_dof",
                 "deviance_p", "log_likelihood", "aic", "delta_aic", "preferred_model")


def _population_summary(population):
    """Top-level fields for a population: means over devices, and sums of the per-device fits."""
    fits = [d.fits for d in population.devices]
    aic = {model: sum(f[model].aic for f in fits) for model in MODELS}
    deviance = sum(f["probit"].deviance for f in fits)
    dof = sum(f["probit"].dof for f in fits)
    return {"estimate": f"population mean over {population.count} devices",
            "i50": population.i50_mean, "sigma": population.sigma_mean,
            "i50_ci": list(population.i50_mean_ci), "sigma_ci": list(population.sigma_mean_ci),
            "ci_level": population.level, "deviance": deviance, "deviance_dof": dof,
            "deviance_p": float(stats.chi2.sf(deviance, dof)),
            "log_likelihood": {model: sum(f[model].log_likelihood for f in fits) for model in MODELS},
            "aic": aic, "delta_aic": _delta(aic), "preferred_model": min(aic, key=aic.get),
            "ci_method": "t interval of the mean over devices"}


def _delta(aic):
    best = min(aic.values())
    return {model: value - best for model, value in aic.items()}


def _device_report(device):
    probit, curve = device.probit, device.curve
    aic = {model: fit.aic for model, fit in device.fits.items()}
    models = {model: {"formula": FORMULAS[model], "params": fit.params, "n_params": fit.n_params,
                      "log_likelihood": fit.log_likelihood, "deviance": fit.deviance,
                      "deviance_dof": fit.dof, "deviance_p": fit.deviance_p, "aic": fit.aic}
              for model, fit in device.fits.items()}
    return {
        "device": curve.device, "where": curve.where,
        "n_currents": len(curve.current), "n_trials": int(curve.trials.sum()),
        "i50": probit.i50, "sigma": probit.sigma,
        "i50_ci": list(probit.i50_ci), "sigma_ci": list(probit.sigma_ci),
        "ci_level": probit.level,
        "deviance": probit.deviance, "deviance_dof": probit.dof, "deviance_p": probit.deviance_p,
        "log_likelihood": {model: fit.log_likelihood for model, fit in device.fits.items()},
        "aic": aic, "delta_aic": _delta(aic), "preferred_model": device.preferred_model,
        "models": models,
        "data": {"current": curve.current.tolist(), "trials": curve.trials.tolist(),
                 "switched": curve.switched.tolist()},
    }


# ---------------------------------------------------------------------------------------------
# Synthetic data


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
                                                sigma * np.exp(rng.normal(0, sigma_spread, devices))))]
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
            for amps, k in zip(currents, hits):
                writer.writerow(([device["device"]] if devices else []) + [f"{amps:g}", trials, int(k)])
    return truth

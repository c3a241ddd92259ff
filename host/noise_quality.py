"""Quality figures of Gaussian noise codes, each with a pass limit derived from the sample size.

For ``n`` samples of a true N(0, 1), the sampling standard deviations are ``1/sqrt(n)`` (mean),
``sqrt(2/n)`` (variance), ``sqrt(6/n)`` (skewness), ``sqrt(24/n)`` (excess kurtosis) and
``1/sqrt(n)`` (a correlation coefficient). A figure passes when it is within 5 of those standard
deviations of its ideal value (a false alarm once in 1.7 million per figure). Two figures have
targets of the design instead: the KS distance must be <= 0.001, or <= 1.95/sqrt(n) (the 99.9%
point of Kolmogorov's distribution) when that is larger, since with fewer than ~4 million samples
even perfect noise cannot show 0.001; and the tail probabilities must be within 25% of the normal's,
widened by 5 binomial standard deviations of the count.

The codes lie on a lattice of step ``2`` (odd integers); the *discretized normal* they are compared
with puts on code ``c`` the mass of ``N(0, sigma^2)`` in ``(c - 1, c + 1]``.

Codes of a noise table other than the normal (``table``) are judged against that table's exact
distribution instead: the mean and the variance within 5 sampling standard deviations of the
table's (``sqrt(var / n)`` and ``sqrt((mu4 - var^2) / n)``), the KS distance to the table's CDF within
the same limit as above, and a chi-square test of the histogram (codes pooled into cells of at
least 20 expected counts) that fails below p = 1e-6; the correlations as for the normal.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.stats import chi2, norm

from spinemu.hdl.formats import NeuronFormat
from spinemu.hdl.noise_table import CODE_SIGMA, gaussian
from spinemu.sim import golden

from .errors import InputError

__all__ = ["Figure", "noise_quality", "format_report", "method_report", "read_noise",
           "write_noise", "TAIL_POINTS", "MAX_LAG"]

TAIL_POINTS = (3.0, 4.0, 4.5)
MAX_LAG = 64
KS_TARGET = 0.001
TAIL_TOLERANCE = 0.25


@dataclass(frozen=True)
class Figure:
    """One quality figure: its value, the ideal, the largest allowed deviation, and the verdict."""

    name: str
    value: float
    ideal: float
    limit: float

    @property
    def ok(self):
        return bool(abs(self.value - self.ideal) <= self.limit)


def _histogram(codes):
    """The codes' values (the odd lattice from min to max) and their counts."""
    if np.any(codes % 2 == 0):
        raise InputError("noise codes must be odd integers (the lattice of the noise blocks)")
    lo, hi = int(codes.min()), int(codes.max())
    counts = np.bincount((codes - lo) // 2, minlength=(hi - lo) // 2 + 1)
    return np.arange(lo, hi + 1, 2), counts


def _lagged_correlations(spectra, j, k, n, max_lag):
    """corr(x_j[t], x_k[t + lag]) for lag = -max_lag..max_lag, from the series' spectra."""
    full = scipy.fft.irfft(np.conj(spectra[j]) * spectra[k], workers=-1)
    lags = np.concatenate([full[-max_lag:], full[:max_lag + 1]])
    overlap = n - np.abs(np.arange(-max_lag, max_lag + 1))
    return lags / overlap


def noise_quality(codes, sigma, *, max_lag=MAX_LAG, table=None):
    """All quality figures of ``codes`` (shape ``(samples, neurons)``) with nominal ``sigma``.

    Distribution figures pool all neurons, against the normal or, with ``table`` (a
    :class:`~spinemu.hdl.noise_table.NoiseTable`), against that table's exact distribution;
    correlations are per neuron (autocorrelation at lags 1..max_lag) and per pair
    (cross-correlation at lags -max_lag..max_lag), reported as the largest magnitude. Returns a
    list of :class:`Figure`.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] < 2 * max_lag:
        raise InputError(f"need codes of shape (samples, neurons) with samples >= {2 * max_lag}, "
                         f"not {codes.shape}")
    samples, neurons = codes.shape
    # Every distribution figure comes from the histogram of the (few hundred distinct) codes.
    lattice, counts = _histogram(codes.reshape(-1).astype(np.int64))
    figures = (_normal_figures(lattice, counts, sigma) if table is None
               else _table_figures(lattice, counts, table))
    figures += _correlation_figures(codes, max_lag)
    return figures


def _normal_figures(lattice, counts, sigma):
    n = counts.sum()
    p = counts / n
    z = lattice / sigma
    mean = p @ z
    var = p @ (z - mean) ** 2
    skew = p @ (z - mean) ** 3 / var ** 1.5
    kurt = p @ (z - mean) ** 4 / var ** 2 - 3
    # Both CDFs are step functions on the same lattice, so the supremum is at a lattice point.
    ks = np.max(np.abs(np.cumsum(p) - norm.cdf((lattice + 1) / sigma)))
    figures = [
        Figure("mean", mean, 0.0, 5 / np.sqrt(n)),
        Figure("variance - 1", var - 1, 0.0, 5 * np.sqrt(2 / n)),
        Figure("skewness", skew, 0.0, 5 * np.sqrt(6 / n)),
        Figure("excess kurtosis", kurt, 0.0, 5 * np.sqrt(24 / n)),
        Figure("KS distance to discretized normal", ks, 0.0, max(KS_TARGET, 1.95 / np.sqrt(n))),
    ]
    for t in TAIL_POINTS:
        expected = 2 * norm.sf(t)
        observed = p[np.abs(lattice) > t * sigma].sum()
        slack = TAIL_TOLERANCE * expected + 5 * np.sqrt(expected * (1 - expected) / n)
        figures.append(Figure(f"P(|z|>{t:g}) / normal", observed / expected, 1.0, slack / expected))
    return figures


def _table_figures(lattice, counts, table):
    """Mean, variance, KS and chi-square against the exact distribution of ``table``'s codes."""
    n = counts.sum()
    codes, exact = table.pmf
    if lattice[0] < codes[0] or lattice[-1] > codes[-1]:
        raise InputError(f"noise codes beyond +-{codes[-1]}, the noise blocks' range")
    observed = np.zeros(len(codes))
    observed[np.searchsorted(codes, lattice)] = counts
    z = codes / CODE_SIGMA
    mean, var = exact @ z, exact @ (z - exact @ z) ** 2
    mu4 = exact @ (z - mean) ** 4
    p = observed / n
    got_mean = p @ z
    figures = [
        Figure("mean - table's", got_mean - mean, 0.0, 5 * np.sqrt(var / n)),
        Figure("variance - table's", p @ (z - got_mean) ** 2 - var, 0.0,
               5 * np.sqrt((mu4 - var ** 2) / n)),
        Figure("KS distance to the table", np.max(np.abs(np.cumsum(p) - np.cumsum(exact))), 0.0,
               max(KS_TARGET, 1.95 / np.sqrt(n))),
    ]
    if np.any(observed[exact == 0]):
        figures.append(Figure("chi-square p (table)", 0.0, 1.0, 1 - 1e-6))  # a code never drawn
        return figures
    # cells of consecutive codes with >= 20 expected counts each (the last absorbs the rest)
    expected = exact * n
    edges, run = [], 0.0
    for i, e in enumerate(expected):
        run += e
        if run >= 20:
            edges.append(i + 1)
            run = 0.0
    edges[-1] = len(expected)
    cells_o = np.add.reduceat(observed, [0] + edges[:-1])
    cells_e = np.add.reduceat(expected, [0] + edges[:-1])
    statistic = float(((cells_o - cells_e) ** 2 / cells_e).sum())
    p_value = float(chi2.sf(statistic, len(cells_e) - 1))
    figures.append(Figure("chi-square p (table)", p_value, 1.0, 1 - 1e-6))
    return figures


def _correlation_figures(codes, max_lag):
    samples, neurons = codes.shape
    figures = []
    std = (codes - codes.mean(axis=0)) / codes.std(axis=0)
    # Zero-padding to >= samples + max_lag makes the circular correlation linear at these lags.
    size = scipy.fft.next_fast_len(samples + max_lag, real=True)
    spectra = [scipy.fft.rfft(std[:, j], size, workers=-1) for j in range(neurons)]
    per_series = 5 / np.sqrt(samples)
    auto = max(np.max(np.abs(_lagged_correlations(spectra, j, j, samples, max_lag)[max_lag + 1:]))
               for j in range(neurons))
    figures.append(Figure(f"max |autocorrelation|, lags 1..{max_lag}", auto, 0.0, per_series))
    if neurons > 1:
        cross = max(np.max(np.abs(_lagged_correlations(spectra, j, k, samples, max_lag)))
                    for j in range(neurons) for k in range(j + 1, neurons))
        figures.append(Figure(f"max |cross-correlation|, lags -{max_lag}..{max_lag}", cross, 0.0,
                              per_series))
    return figures


def format_report(figures):
    """A plain-text table of the figures."""
    width = max(len(f.name) for f in figures)
    lines = [f"{'figure':<{width}}  {'value':>12}  {'ideal':>8}  {'limit':>10}  verdict"]
    for f in figures:
        lines.append(f"{f.name:<{width}}  {f.value:>12.3e}  {f.ideal:>8g}  {f.limit:>10.2e}  "
                     f"{'pass' if f.ok else 'FAIL'}")
    return "\n".join(lines)


def method_report():
    """Exact figures of the noise method itself, from the Gaussian alias table (no sampling)."""
    table = gaussian()
    codes, p = table.pmf
    codes, p = codes[p > 0], p[p > 0]
    code_sigma = float(CODE_SIGMA)
    z = codes / code_sigma
    ks = np.max(np.abs(np.cumsum(p) - norm.cdf((codes + 1) / code_sigma)))
    lines = [
        f"exact distribution of the codes (alias table, {len(codes)} codes, period 2^64-1 cycles):",
        f"  variance - 1 = {p @ z ** 2 - 1:.1e}, KS to discretized normal = {ks:.2e}, "
        f"largest |z| = {table.max_code / code_sigma:.3f}",
        "  P(|z|>t) / normal: " + ", ".join(
            f"t={t:g}: {p[np.abs(z) > t].sum() / (2 * norm.sf(t)):.4f}" for t in (3, 4, 4.5, 5)),
    ]
    fmt = NeuronFormat()
    sigma, theta = 100.0, 0.5
    a = np.arange(-6 * int(sigma), 6 * int(sigma) + 1)
    emulated = golden.switch_probability(a, fmt.theta_code(theta), fmt.sigma_code(sigma), fmt)
    error = np.max(np.abs(emulated - norm.cdf((a - theta) / sigma)))
    lines.append(f"  neuron switching curve, sigma={sigma:g}, theta={theta:g}, a in +-6 sigma: "
                 f"max |P_emulated - Phi((a-theta)/sigma)| = {error:.4f}")
    return "\n".join(lines)


def read_noise(path):
    """``(codes, sigma)`` of a file written by :func:`write_noise`; :class:`InputError` naming the
    file and the problem."""
    try:
        with np.load(path) as f:
            codes, sigma = f["noise"], float(f["sigma"])
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: not a noise file written by `spinemu noise --out` "
                         f"({error})") from None
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise InputError(f"{path}: `noise` must be an integer array of shape (samples, neurons), "
                         f"not {codes.dtype} {codes.shape}")
    return codes, sigma


def write_noise(path, codes, sigma):
    """Write ``codes`` (int, ``(samples, neurons)``) and their nominal ``sigma`` to ``path``
    (``.npz``: ``noise``, ``sigma``); :class:`InputError` if it cannot be written."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # np.savez would add ".npz" to any other name
            np.savez(f, noise=codes, sigma=sigma)
    except OSError as error:
        raise InputError(f"{path}: cannot write it ({error.strerror or error})") from None

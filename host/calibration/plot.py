"""Plots of a device calibration: measured switching curves, the fitted models and their spread.

Uses matplotlib's object API (no pyplot), so plotting never touches a global backend or window.
"""

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

__all__ = ["wilson_interval", "plot_calibration"]

_STYLE = {"logistic": dict(color="tab:orange", linestyle="--"),
          "thermal": dict(color="tab:green", linestyle=":"),
          "nonparametric": dict(color="tab:purple", linestyle=(0, (5, 1, 1, 1)))}


def wilson_interval(switched, trials, level=0.95):
    """Wilson score interval (lo, hi) of the switching probability for ``switched`` of ``trials``."""
    switched, trials = np.asarray(switched, dtype=float), np.asarray(trials, dtype=float)
    z2 = stats.norm.ppf(0.5 + level / 2) ** 2
    p = switched / trials
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = np.sqrt(z2 * p * (1 - p) / trials + z2 * z2 / (4 * trials * trials)) / (1 + z2 / trials)
    # the interval always holds p; clipping only removes rounding at p = 0 and p = 1
    return np.clip(centre - half, 0, p), np.clip(centre + half, p, 1)


def plot_calibration(calibration, path, emulated=None):
    """Plot a :class:`~spinemu.host.calibration.Calibration` to the image file ``path``.

    One device: the data with Wilson 95% error bars (binned for display when there are more than 40
    distinct currents), the probit fit with its pointwise 95% band and the other fitted models'
    curves, each labelled with its AIC difference. A population: every device's data
    and probit curve in one panel, and a scatter of (I50, sigma) with their confidence intervals.
    ``emulated`` adds curves to the (first) panel: an ``(x, p, label)`` tuple or a list of them, e.g.
    the emulated neuron's measured switching probability; a fourth element, a dict of matplotlib
    line properties, overrides the default black dash-dot line (e.g. markers for measured points).
    """
    if isinstance(emulated, tuple):
        emulated = [emulated]
    unit = calibration.measurements.unit
    xlabel = f"pulse current [{unit}]" if unit else "pulse current"
    if calibration.population is None:
        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.subplots()
        _device_panel(ax, calibration.devices[0])
    else:
        fig = Figure(figsize=(12, 4.8), layout="constrained")
        ax, scatter = fig.subplots(1, 2)
        _population_panels(ax, scatter, calibration.devices, f" [{unit}]" if unit else "")
    for x, p, label, *style in emulated or ():
        ax.plot(x, p, **{"color": "black", "linestyle": "-.", "linewidth": 1.2, **dict(*style)},
                label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("switching probability")
    ax.set_ylim(-0.03, 1.03)
    if calibration.population is None:
        ax.legend(fontsize="small", loc="upper left")
    else:  # a population's curves (and a drawn neuron's) may fill every corner: keep the legend outside
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(calibration.measurements.path, fontsize="small")
    fig.savefig(path, dpi=120)


def _grid(current):
    pad = 0.08 * (current.max() - current.min())
    return np.linspace(current.min() - pad, current.max() + pad, 400)


def _display_points(curve, bins=20):
    """(current, switched, trials, binned): the data as drawn.

    Data with more than ``2 * bins`` distinct currents (a sweep with a few trials per current) are
    shown in ``bins`` consecutive groups of about equal trials, at their trial-weighted mean current;
    the fit always uses every trial.
    """
    if len(curve.current) <= 2 * bins:
        return curve.current, curve.switched, curve.trials, False
    before = np.cumsum(curve.trials) - curve.trials
    group = (before * bins) // curve.trials.sum()
    trials = np.bincount(group, weights=curve.trials)
    return (np.bincount(group, weights=curve.trials * curve.current) / trials,
            np.bincount(group, weights=curve.switched), trials, True)


def _device_panel(ax, device):
    curve, probit = device.curve, device.probit
    current, switched, trials, binned = _display_points(curve)
    lo, hi = wilson_interval(switched, trials)
    p = switched / trials
    ax.errorbar(current, p, yerr=[p - lo, hi - p], fmt="o", color="tab:blue", markersize=4,
                capsize=2, label=f"measured{', binned' if binned else ''} (Wilson 95%)")
    grid = _grid(curve.current)
    band_lo, band_hi = probit.band(grid)
    ax.fill_between(grid, band_lo, band_hi, color="tab:red", alpha=0.2, linewidth=0)
    aic = {model: fit.aic for model, fit in device.fits.items()}
    best = min(aic.values())
    ax.plot(grid, probit.probability(grid), color="tab:red",
            label=f"probit I50={probit.i50:.4g} sigma={probit.sigma:.3g} "
                  f"(dAIC {aic['probit'] - best:+.1f}; 95% band)")
    for model, style in _STYLE.items():
        if model in device.fits:
            ax.plot(grid, device.fits[model].probability(grid), **style,
                    label=f"{model} (dAIC {aic[model] - best:+.1f})")


def _population_panels(ax, scatter, devices, unit):
    colours = [f"C{k % 10}" for k in range(len(devices))]
    for device, colour in zip(devices, colours, strict=True):
        curve = device.curve
        grid = _grid(curve.current)
        current, switched, trials, _ = _display_points(curve)
        ax.plot(current, switched / trials, "o", color=colour, markersize=3)
        ax.plot(grid, device.probit.probability(grid), color=colour, linewidth=1,
                label=str(device.curve.device))
    for device, colour in zip(devices, colours, strict=True):
        probit = device.probit
        xerr, yerr = _error_bar(probit.i50, probit.i50_ci), _error_bar(probit.sigma, probit.sigma_ci)
        scatter.errorbar([probit.i50], [probit.sigma], xerr=xerr, yerr=yerr, fmt="o", color=colour,
                         capsize=2)
        scatter.annotate(str(device.curve.device), (probit.i50, probit.sigma), fontsize="small",
                         xytext=(4, 4), textcoords="offset points")
    scatter.set_xlabel(f"I50{unit}")
    scatter.set_ylabel(f"sigma{unit}")
    scatter.set_title(f"{len(devices)} devices: probit I50 and sigma (95% CI)", fontsize="small")


def _error_bar(value, interval):
    """Matplotlib's [[below], [above]] for an interval; an end the data leave open gets no bar."""
    lo, hi = (value if end is None else end for end in interval)
    return [[value - lo], [hi - value]]

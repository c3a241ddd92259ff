"""The calibration, the mapping and the verification as the JSON-able dicts of CALIB.json.

``docs/calibration.md`` lists the fields; :mod:`spinemu.host.calibration.calib_file` writes and
reads the file.
"""

import math

import numpy as np
from scipy import stats

from .calib_file import noise_entry
from .data_check import ALPHA
from .device_fit import FORMULAS, MODELS
from .population import summed_aic
from .verification import FALSE_ALARM

__all__ = ["calibration_report", "mapping_report", "verification_report"]


def calibration_report(calibration):
    """The calibration as a JSON-able dict (the fields are listed in ``docs/calibration.md``).

    The top level carries the probit I50 and sigma: the device's own fit for a single device, the
    population means over the devices with a ``device`` column (``estimate`` says which).
    ``devices`` always lists each device's fits; ``shape`` and ``noise`` the emulated shape and its
    noise table.
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
    report["shape"] = _shape_report(calibration)
    report["noise"] = noise_entry(calibration.shape.table)
    if m.ignored_columns:
        report["ignored_columns"] = list(m.ignored_columns)
    return report


_SUMMARY_KEYS = ("i50", "sigma", "i50_ci", "sigma_ci", "ci_level", "deviance", "deviance_dof",
                 "deviance_p", "log_likelihood", "aic", "delta_aic", "preferred_model", "refused")


def _population_summary(population):
    """Top-level fields for a population: means over devices, and sums of the per-device fits."""
    devices = population.devices
    aic = summed_aic(devices)
    deviance = sum(d.probit.deviance for d in devices)
    dof = sum(d.probit.dof for d in devices)
    refused = {model: [d.curve.device for d in devices if model in d.refused]
               for model in MODELS if model not in aic}
    return {"estimate": f"population mean over {population.count} devices",
            "i50": population.i50_mean, "sigma": population.sigma_mean,
            "i50_ci": list(population.i50_mean_ci), "sigma_ci": list(population.sigma_mean_ci),
            "ci_level": population.level, "deviance": deviance, "deviance_dof": dof,
            "deviance_p": float(stats.chi2.sf(deviance, dof)),
            "log_likelihood": {model: sum(d.fits[model].log_likelihood for d in devices)
                               for model in aic},
            "aic": aic, "delta_aic": _delta(aic), "preferred_model": min(aic, key=aic.get),
            "refused": {model: f"refused on device(s) {', '.join(map(str, labels))}"
                        for model, labels in refused.items()},
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
        "refused": dict(device.refused),
        "models": models,
        "data": {"current": curve.current.tolist(), "trials": curve.trials.tolist(),
                 "switched": curve.switched.tolist()},
    }


def _shape_report(calibration):
    """The ``shape`` dict: the emulated model, why, where its table comes from, each device on it."""
    shape = calibration.shape
    reference = calibration.devices[calibration.reference]
    mean, variance, skewness, kurtosis = shape.table.moments()
    return {"model": calibration.model, "source": calibration.model_source,
            "preferred_model": calibration.preferred_model,
            "formula": "P(I) = 1 - F((mu - I) / s); F: the standardized threshold distribution",
            "reference_device": reference.curve.device,
            "table": shape.table.describe(),
            "table_moments": {"mean": mean, "variance": variance, "skewness": skewness,
                              "excess_kurtosis": kurtosis},
            "devices": [{"device": d.curve.device, "mu": mu, "s": s}
                        for d, (mu, s) in zip(calibration.devices, calibration.locations, strict=True)]}


# ---------------------------------------------------------------------------------------------
# The mapping and the verification


def _quantization(mapping):
    """Rounding errors of the codes, their largest effect on the ideal curve over the inputs, and
    the largest change of the curve over half an input step (around a rounded current)."""
    a = mapping.input_range()
    current = mapping.current_of(a)
    shape = mapping.shape
    theta_error = [(mapping.theta(n) - n.theta_exact) / mapping.scale for n in mapping.neurons]
    sigma_error = [mapping.sigma(n) / n.sigma_exact - 1 for n in mapping.neurons]
    curve_error, rounding = 0.0, 0.0
    for n, t, r in zip(mapping.neurons, theta_error, sigma_error, strict=True):
        ideal = shape.probability(current, n.mu, n.s)
        coded = shape.probability(current, n.mu + t, n.s * (1 + r))
        curve_error = max(curve_error, float(np.max(np.abs(coded - ideal))))
        # the curve's rise over half an input step, centred on a fine grid of standardized currents
        e = np.linspace(-8, 8, 16_001)
        half = 0.25 / mapping.sigma(n)
        rounding = max(rounding, float(np.max(shape.probability(n.mu + n.s * (e + half), n.mu, n.s)
                                              - shape.probability(n.mu + n.s * (e - half), n.mu, n.s))))
    return theta_error, sigma_error, curve_error, rounding


def mapping_report(mapping):
    """``(mapping, neurons, quantization)`` JSON-able dicts for CALIB.json."""
    theta_error, sigma_error, curve_error, rounding = _quantization(mapping)
    fmt = mapping.fmt
    head = {"scale": mapping.scale, "scale_source": mapping.scale_source,
            "offset": mapping.offset, "offset_source": mapping.offset_source,
            "formula": "a = round((I - offset) * scale); theta = (mu - offset) * scale; "
                       "sigma_a = s * scale",
            "shape": mapping.shape.model, "noise_hash": f"{mapping.shape.table.hash:08x}",
            "input_step": 1 / mapping.scale,
            "formats": {"a": fmt.a.describe(), "theta": fmt.theta.describe(),
                        "sigma": fmt.sigma.describe()},
            "draws": mapping.draws, "seed": mapping.seed}
    neurons = [{"index": n.index, "source": n.source, "device": n.device,
                "mu": n.mu, "s": n.s, "i50": mapping.shape.median(n.mu, n.s), "sigma": n.s,
                "theta_code": n.theta_code, "sigma_code": n.sigma_code,
                "theta": mapping.theta(n), "sigma_a": mapping.sigma(n),
                "theta_error": t, "sigma_rel_error": s}
               for n, t, s in zip(mapping.neurons, theta_error, sigma_error, strict=True)]
    quantization = {"max_theta_abs_error": max(abs(t) for t in theta_error),
                    "max_sigma_rel_error": max(abs(s) for s in sigma_error),
                    "max_curve_error": curve_error,
                    "input_step": 1 / mapping.scale,
                    "max_input_rounding_error": rounding}
    return head, neurons, quantization


def _data_report(data):
    return {"model": data.model, "preferred_model": data.preferred_model,
            "test": "binomial deviance of the measured counts against the exact emulated "
                    "probabilities at the measured currents, one dof per point",
            # infinite where a count is impossible under the emulated curve: JSON has no infinity
            "deviance": data.deviance if math.isfinite(data.deviance) else None,
            "dof": data.dof, "p": data.p, "alpha": ALPHA,
            "pass": data.passed,
            "max_abs_error": data.max_abs_error,
            "max_abs_error_against": f"each device's {data.preferred_model} fit (the preferred "
                                     "model), over every input of its measured range",
            "devices": [{"device": d.device, "current": d.current.tolist(),
                         "emulated": d.emulated.tolist(), "max_abs_error": d.max_abs_error}
                        for d in data.devices]}


def verification_report(verification):
    """The ``verification`` dict of CALIB.json."""
    v = verification
    report = {"backend": v.backend, "seed": v.seed,
              "neurons": [c.neuron.index for c in v.checks],
              "trials_per_point": v.trials, "points": v.points,
              "against": sorted({c.against for c in v.checks}),
              "max_abs_error": v.max_abs_error, "sampling_sd": v.sampling_sd,
              "exact_max_abs_error": v.exact_max_abs_error,
              "exact_points": len(v.checks[0].exact_a),
              "consistency_p": v.consistency_p, "target": v.target, "pass": v.passed,
              "rule": f"exact_max_abs_error <= target and consistency_p >= {FALSE_ALARM:g}"
                      + (f" and data.p >= {ALPHA:g}" if v.data is not None else ""),
              "seconds": v.seconds, "cycles": v.cycles,
              "per_neuron": [{"index": c.neuron.index, "against": c.against,
                              "max_abs_error": float(np.max(np.abs(c.measured - c.device))),
                              "exact_max_abs_error": float(np.max(np.abs(c.exact_all - c.device_all))),
                              "a": c.a.tolist(), "current": c.current.tolist(),
                              "switched": c.switched.tolist()}
                             for c in v.checks]}
    if v.data is not None:
        report["data"] = _data_report(v.data)
    return report

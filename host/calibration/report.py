"""The calibration, the mapping and the verification as the JSON-able dicts of CALIB.json.

``docs/calibration.md`` lists the fields; :mod:`spinemu.host.calibration.calib_file` writes and
reads the file.
"""

import numpy as np
from scipy import stats
from scipy.special import ndtr

from .fit import FORMULAS, MODELS
from .verification import FALSE_ALARM

__all__ = ["calibration_report", "mapping_report", "verification_report"]


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
# The mapping and the verification


def _quantization(mapping):
    """Rounding errors of the codes, and their largest effect on the ideal curve over the inputs."""
    a = mapping.input_range()
    theta_error = [(mapping.theta(n) - n.theta_exact) / mapping.scale for n in mapping.neurons]
    sigma_error = [mapping.sigma(n) / n.sigma_exact - 1 for n in mapping.neurons]
    curve_error = max(float(np.max(np.abs(ndtr((a - mapping.theta(n)) / mapping.sigma(n))
                                          - ndtr((a - n.theta_exact) / n.sigma_exact))))
                      for n in mapping.neurons)
    return theta_error, sigma_error, curve_error


def mapping_report(mapping):
    """``(mapping, neurons, quantization)`` JSON-able dicts for CALIB.json."""
    theta_error, sigma_error, curve_error = _quantization(mapping)
    fmt = mapping.fmt
    head = {"scale": mapping.scale, "scale_source": mapping.scale_source,
            "offset": mapping.offset, "offset_source": mapping.offset_source,
            "formula": "a = round((I - offset) * scale); theta = (I50 - offset) * scale; "
                       "sigma_a = sigma * scale",
            "input_step": 1 / mapping.scale,
            "formats": {"a": fmt.a.describe(), "theta": fmt.theta.describe(),
                        "sigma": fmt.sigma.describe()},
            "draws": mapping.draws, "seed": mapping.seed}
    neurons = [{"index": n.index, "source": n.source, "device": n.device,
                "i50": n.i50, "sigma": n.sigma,
                "theta_code": n.theta_code, "sigma_code": n.sigma_code,
                "theta": mapping.theta(n), "sigma_a": mapping.sigma(n),
                "theta_error": t, "sigma_rel_error": s}
               for n, t, s in zip(mapping.neurons, theta_error, sigma_error, strict=True)]
    # A current between two inputs is off the nearest by up to half a step, 0.5 / sigma_a device
    # sigmas; the largest change of Phi over such a step is 2 Phi(0.25 / sigma_a) - 1.
    rounding = max(2 * float(ndtr(0.25 / mapping.sigma(n))) - 1 for n in mapping.neurons)
    quantization = {"max_theta_abs_error": max(abs(t) for t in theta_error),
                    "max_sigma_rel_error": max(abs(s) for s in sigma_error),
                    "max_curve_error": curve_error,
                    "input_step": 1 / mapping.scale,
                    "max_input_rounding_error": rounding}
    return head, neurons, quantization


def verification_report(verification):
    """The ``verification`` dict of CALIB.json."""
    v = verification
    return {"backend": v.backend, "seed": v.seed,
            "neurons": [c.neuron.index for c in v.checks],
            "trials_per_point": v.trials, "points": v.points,
            "max_abs_error": v.max_abs_error, "sampling_sd": v.sampling_sd,
            "exact_max_abs_error": v.exact_max_abs_error,
            "exact_points": len(v.checks[0].exact_a),
            "consistency_p": v.consistency_p, "target": v.target, "pass": v.passed,
            "rule": f"exact_max_abs_error <= target and consistency_p >= {FALSE_ALARM:g}",
            "seconds": v.seconds, "cycles": v.cycles,
            "per_neuron": [{"index": c.neuron.index,
                            "max_abs_error": float(np.max(np.abs(c.measured - c.device))),
                            "exact_max_abs_error": float(np.max(np.abs(c.exact_all - c.device_all))),
                            "a": c.a.tolist(), "current": c.current.tolist(),
                            "switched": c.switched.tolist()}
                           for c in v.checks]}

"""Fit measured device switching curves (I50, sigma) and write them to CALIB.json.

The switching probability is fitted as P(I) = Phi((I - I50) / sigma). The CSV holds aggregated
counts (columns current, trials, switched) or raw trials (current, switched as 0/1), optionally with
a device column for a population (one fit per device). The probit fit comes with 95%
profile-likelihood intervals and a deviance test, and is compared by AIC with logistic and
thermal-activation curves. See docs/calibration.md.
"""

import json
import os

from spinemu.host.calibration import MODELS, calibrate, calibration_report, read_measurements
from spinemu.host.cli import UserError


def add_arguments(parser):
    """The command's options."""
    parser.add_argument("data", metavar="DATA.csv", help="switching measurements (CSV with a header)")
    parser.add_argument("--out", metavar="CALIB.json", required=True, help="where to write the fit")
    parser.add_argument("--plot", metavar="CURVE.png", help="also plot the data and the fitted curves")
    parser.add_argument("--unit", help="the unit of the current column, for reports (e.g. mA)")


def run(args):
    """Read, fit, write the JSON (and plot), print a summary; returns the exit status."""
    measurements = read_measurements(args.data, unit=args.unit)
    calibration = calibrate(measurements)
    report = calibration_report(calibration)
    # The mapping onto the neuron's fixed-point codes ("neurons") and the check of the emulated
    # neuron against the fitted curve ("verification") go into `report` here, before it is written.
    _write(args.out, lambda path: _dump(report, path))
    if args.plot:
        # imported here so that a run without --plot never loads matplotlib
        from spinemu.host.calibration_plot import plot_calibration
        _write(args.plot, lambda path: plot_calibration(calibration, path))
    print(summary(report))
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def _dump(report, path):
    with open(path, "w") as stream:
        json.dump(report, stream, indent=2, allow_nan=False)
        stream.write("\n")


def _write(path, write):
    folder = os.path.dirname(path)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        write(path)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None


def summary(report):
    """A few human-readable lines about a calibration report."""
    unit = f" {report['unit']}" if report["unit"] else ""
    lines = [f"{report['source']}: {report['data_form']} data, {len(report['devices'])} device(s)"]
    if "population" in report:
        lines.append(f"  {'device':>10} {'I50':>10} {'sigma':>10} {'dev. p':>7}  preferred")
        for device in report["devices"]:
            lines.append(f"  {device['device']:>10} {device['i50']:10.4g} {device['sigma']:10.4g} "
                         f"{_g(device['deviance_p']):>7}  {device['preferred_model']}")
        population = report["population"]
        lines.append(f"  population of {population['count']}: I50 mean {population['i50_mean']:.4g}"
                     f" sd {_g(population['i50_std'])}, sigma mean {population['sigma_mean']:.4g} sd "
                     f"{_g(population['sigma_std'])}, corr(I50, sigma) "
                     f"{_g(population['i50_sigma_correlation'])}")
    lines.append(f"  probit ({report['estimate']}): I50 = {report['i50']:.5g}{unit} "
                 f"[{_interval(report['i50_ci'])}], sigma = {report['sigma']:.4g}{unit} "
                 f"[{_interval(report['sigma_ci'])}] ({report['ci_level']:.0%} {report['ci_method']})")
    sparse = min(d["n_trials"] / d["n_currents"] for d in report["devices"]) < 5
    lines.append(f"  goodness of fit: deviance {report['deviance']:.2f} on {report['deviance_dof']} dof, "
                 f"p = {_g(report['deviance_p'])}"
                 + (" (few trials per current: the chi-square p is unreliable)" if sparse else ""))
    delta = report["delta_aic"]
    lines.append("  AIC differences: " + ", ".join(f"{m} {delta[m]:+.1f}" for m in MODELS)
                 + f" -> the data prefer {report['preferred_model']}"
                 + (" (not decisive: next model within 2)" if sorted(delta.values())[1] < 2 else ""))
    return "\n".join(lines)


def _g(value):
    return "n/a" if value is None else f"{value:.3g}"


def _interval(ci):
    return " .. ".join("open" if end is None else f"{end:.5g}" for end in ci)

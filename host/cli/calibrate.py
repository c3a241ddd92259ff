"""Fit device switching curves, choose their shape, map them onto spin neurons, verify, write CALIB.json.

The CSV holds aggregated counts (columns current, trials, switched) or raw trials (current,
switched as 0/1), optionally with a device column for a population (one fit per device). Each
device's curve is fitted as a probit P(I) = Phi((I - I50) / sigma), with 95% profile-likelihood
intervals and a deviance test, and compared by AIC with logistic, thermal-activation and
nonparametric (monotone spline) curves.

The preferred model's shape (or --model's) becomes the design's noise table, and each device's
threshold mean mu and standard deviation s on it are mapped onto the neuron's codes: a = round((I -
offset) * scale), theta = (mu - offset) * scale, sigma_a = s * scale (defaults: offset = mu, scale =
32 / s); with a population each neuron gets its own seeded device draw. Last, the emulated neuron is
swept over the measured currents on a backend and compared with the preferred model's curve
(target: max |P_emulated - P_device| <= 0.01), and the measured counts are tested against the
emulated probabilities; the exit status is 1 if either fails. See docs/calibration.md.

examples:
  spinemu calibrate host/data/example_switching.csv --out calib.json --plot curve.png --unit mA
  spinemu calibrate host/data/example_population.csv --out calib.json --neurons 16 --seed 3
  spinemu calibrate host/data/example_switching.csv --out calib.json --backend verilator
  spinemu calibrate thermal_device.csv --out calib.json --model thermal
"""

import sys

import numpy as np

from spinemu.host.calibration import (
    DEFAULT_TRIALS,
    FALSE_ALARM,
    MODELS,
    SIGMA_INPUT,
    calibrate,
    calibration_report,
    map_calibration,
    mapping_report,
    read_measurements,
    verification_report,
    verify,
    write_calibration,
    write_output,
)
from spinemu.sim.backends import BACKENDS

from . import UserError


def add_arguments(parser):
    """The command's options."""
    parser.add_argument("data", metavar="DATA.csv", help="switching measurements (CSV with a header)")
    parser.add_argument("--out", metavar="CALIB.json", required=True, help="where to write the fit")
    parser.add_argument("--plot", metavar="CURVE.png", help="also plot the data and the fitted curves")
    parser.add_argument("--unit", help="the unit of the current column, for reports (e.g. mA)")
    parser.add_argument("--model", choices=MODELS,
                        help="the shape to emulate (default: the one the data prefer by AIC)")
    parser.add_argument("--scale", type=float, metavar="X",
                        help="input units per current unit, e.g. a trained network's (default: "
                             f"{SIGMA_INPUT:g} / s, so s is {SIGMA_INPUT:g} input units)")
    parser.add_argument("--offset", type=float, metavar="I",
                        help="the current that maps to input 0 (default: mu, so the nominal "
                             "device has theta 0)")
    parser.add_argument("--neurons", type=int, metavar="N",
                        help="emulated neurons to map (default: 1, or the number of devices of a "
                             "population); with a population each gets its own device draw")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="seed of the population draws and of the verification's noise (default: 1)")
    parser.add_argument("--backend", choices=BACKENDS, default="golden",
                        help="where the emulated neuron is verified (default: golden)")
    parser.add_argument("--trials", type=int, metavar="T",
                        help="evaluations per swept input (default: "
                             + ", ".join(f"{b} {t}" for b, t in DEFAULT_TRIALS.items()) + ")")
    parser.add_argument("--verify", type=int, metavar="K",
                        help="verify the first K neurons (default: up to 4 on golden, 1 on the "
                             "simulators)")


def run(args):
    """Read, fit, map, verify, write the JSON (and plot), print a summary; returns the exit status.

    The status is 1 when the verification fails: the emulated curve misses its target, the backend
    disagrees with it, or the data reject the emulated shape (the files are still written).
    """
    if not 0 <= args.seed < 1 << 64:
        raise UserError(f"--seed must be 0..2^64-1, not {args.seed}")
    measurements = read_measurements(args.data, unit=args.unit)
    calibration = calibrate(measurements, model=args.model)
    report = calibration_report(calibration)
    mapping = map_calibration(calibration, neurons=args.neurons, seed=args.seed, scale=args.scale,
                              offset=args.offset)
    report["mapping"], report["neurons"], report["quantization"] = mapping_report(mapping)
    verification = verify(mapping, calibration, backend=args.backend, trials=args.trials,
                          neurons=args.verify, seed=args.seed, log=sys.stderr)
    report["verification"] = verification_report(verification)
    write_calibration(args.out, report)
    if args.plot:
        # imported here so that a run without --plot never loads matplotlib
        from spinemu.host.calibration.plot import plot_calibration
        write_output(args.plot, lambda path: plot_calibration(
            calibration, path, emulated=_emulated_curves(verification, mapping)))
    print(summary(report))
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    if not verification.passed:
        print(f"verification FAILED: {_failure(report)}")
        return 1
    return 0


def _emulated_curves(verification, mapping):
    """The plot's extra curves: the first verified neuron's measured points and exact curve, and
    for a drawn device (which has no data in the plot) that device's own curve."""
    check = verification.checks[0]
    neuron = check.neuron
    curves = [(check.current, check.measured,
               f"emulated neuron {neuron.index}, {verification.backend}, {check.trials} trials/point",
               dict(linestyle="none", marker="x", markersize=5)),
              (check.exact_current, check.exact_all, f"emulated neuron {neuron.index}, exact",
               dict(linestyle="-", linewidth=0.8))]
    if neuron.source == "population draw":
        grid = np.linspace(check.exact_current.min(), check.exact_current.max(), 400)
        curves.append((grid, mapping.device_probability(neuron, grid),
                       f"drawn device {neuron.index}: mu={neuron.mu:.4g} s={neuron.s:.3g}",
                       dict(color="gray", linestyle="--")))
    return curves


def _failure(report):
    """Why the verification failed, and what to do."""
    v, shape = report["verification"], report["shape"]
    model, preferred = shape["model"], shape["preferred_model"]
    forced = shape["source"] == "--model"
    reasons = []
    data = v.get("data")
    if data is not None and not data["pass"]:
        advice = (f"drop --model {model} or use --model {preferred}" if model != preferred else
                  "even the preferred model is rejected: no model describes these counts; check "
                  "the data for drift between currents (overdispersion)")
        reasons.append(f"the data reject the {model} shape (p = {data['p']:.2g} < {data['alpha']:g}); "
                       + advice)
    if v["exact_max_abs_error"] > v["target"]:
        if forced and model != preferred:
            advice = f"the data prefer {preferred}: drop --model {model}"
        else:
            advice = "check --scale and --offset against the formats' resolution"
        reasons.append(f"the exact emulated curve is {v['exact_max_abs_error']:.4f} from "
                       f"{' and '.join(v['against'])}, more than the target {v['target']:g}; "
                       + advice)
    if v["consistency_p"] < FALSE_ALARM:
        reasons.append(f"the {v['backend']} counts disagree with the exact emulated curve "
                       f"(consistency p = {v['consistency_p']:.2g}): the backend does not realise "
                       "the design's noise")
    return "; ".join(reasons)


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
    lines.append(f"  goodness of fit: deviance {report['deviance']:.2f} on "
                 f"{report['deviance_dof']} dof, p = {_g(report['deviance_p'])}"
                 + (" (few trials per current: the chi-square p is unreliable)" if sparse else ""))
    delta = report["delta_aic"]
    lines.append("  AIC differences: " + ", ".join(f"{m} {delta[m]:+.1f}" for m in delta)
                 + f" -> the data prefer {report['preferred_model']}"
                 + (" (not decisive: next model within 2)" if sorted(delta.values())[1] < 2 else ""))
    for model, reason in report["refused"].items():
        lines.append(f"  {model}: {reason}")
    shape, noise = report["shape"], report["noise"]
    lines.append(f"shape: {shape['model']} ({shape['source']}); noise table {noise['shape']}, hash "
                 f"{noise['hash']}"
                 + ("" if shape["reference_device"] is None else
                    f", from device {shape['reference_device']}"))
    if "mapping" in report:
        lines.extend(_mapping_lines(report, unit))
    return "\n".join(lines)


def _mapping_lines(report, unit):
    mapping, neurons, q = report["mapping"], report["neurons"], report["quantization"]
    per = f" per {unit.strip()}" if unit else " per current unit"
    lines = [f"mapping: a = round((I - {mapping['offset']:.6g}) x {mapping['scale']:.6g}{per}); "
             f"theta {mapping['formats']['theta']}, sigma {mapping['formats']['sigma']}; "
             f"{len(neurons)} neuron(s)"
             + (f", devices drawn from a {mapping['draws']} (seed {mapping['seed']})"
                if mapping["draws"] else "")]
    for n in neurons[:4]:
        lines.append(f"  neuron {n['index']}: mu {n['mu']:.5g}{unit}, s {n['s']:.4g}{unit} -> "
                     f"theta code {n['theta_code']} ({n['theta']:g} input units), sigma code "
                     f"{n['sigma_code']} ({n['sigma_a']:g} input units)")
    if len(neurons) > 4:
        lines.append(f"  ... {len(neurons) - 4} more in the JSON")
    lines.append(f"  quantization: theta within {q['max_theta_abs_error']:.2g}{unit}, sigma within "
                 f"{q['max_sigma_rel_error']:.2%}: the curve moves by at most "
                 f"{q['max_curve_error']:.2g}; input step {q['input_step']:.3g}{unit}: rounding a "
                 f"current to an input moves P by up to {q['max_input_rounding_error']:.2g}")
    v = report.get("verification")
    if v is not None:
        lines.append(
            f"verification on {v['backend']}, neuron(s) {', '.join(map(str, v['neurons']))}, "
            f"{v['points']} inputs x {v['trials_per_point']} trials, against "
            f"{' and '.join(v['against'])}: max |P_emulated - P_device| = "
            f"{v['max_abs_error']:.4f} (sampling sd {v['sampling_sd']:.4f}); exact "
            f"{v['exact_max_abs_error']:.5f} over {v['exact_points']} inputs; consistency p = "
            f"{v['consistency_p']:.2g}")
        data = v.get("data")
        if data is not None:
            lines.append(
                f"  against the data: the measured counts under the exact emulated {data['model']} "
                f"probabilities: deviance {_g(data['deviance'], '.1f', 'infinite')} on "
                f"{data['dof']} points, p = "
                f"{data['p']:.2g} (rejected below {data['alpha']:g}); exact emulated curve within "
                f"{data['max_abs_error']:.4f} of each device's {data['preferred_model']} fit")
        lines.append(f"  target {v['target']:g}: {'pass' if v['pass'] else 'FAIL'}")
    return lines


def _g(value, spec=".3g", missing="n/a"):
    return missing if value is None else f"{value:{spec}}"


def _interval(ci):
    return " .. ".join("open" if end is None else f"{end:.5g}" for end in ci)

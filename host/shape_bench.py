"""The shape bench: calibrate devices of known shape and measure the emulated neurons against the truth.

For each device of :data:`~spinemu.host.calibration.SYNTHETIC_DEVICES` (probit, logistic, thermal
activation, a two-population mixture) :func:`shape_bench` writes its data (``currents`` x
``data_trials``), calibrates it as ``spinemu calibrate`` does (the model preferred by AIC, its noise
table, the mapping, the verification on ``backend``) and measures the emulated neuron against the
device's TRUE curve: its exact curve over every input of the measured range (target
:data:`TRUE_TARGET`), and the counts of the sampled sweep (within :data:`TRUE_TARGET` plus
:data:`SAMPLING_SDS` sampling standard deviations). Last it forces the probit shape on the thermal
device, which the verification must fail. ``spinemu bench shapes`` prints the figures.
"""

import tempfile
from pathlib import Path

import numpy as np

from .calibration import (
    DEFAULT_TRIALS,
    FALSE_ALARM,
    SYNTHETIC_DEVICES,
    calibrate,
    make_shape_synthetic,
    map_calibration,
    read_measurements,
    verify,
)

__all__ = ["TRUE_TARGET", "SAMPLING_SDS", "BENCH_TRIALS", "shape_bench", "shape_statistics"]

TRUE_TARGET = 0.005   # the emulated curve's largest distance to the device's true curve
SAMPLING_SDS = 4      # the sampled curve may be off by this many sampling sds more
#: Emulation trials per input: the golden model's default; the simulators' kept modest (each
#: device is a separate Verilog build and run).
BENCH_TRIALS = {**DEFAULT_TRIALS, "verilator": 10_000, "icarus": 4_000, "amaranth": 4_000}


def _device_figures(name, device, calibration, verification):
    """The figures of one calibrated device against its true curve."""
    check = verification.checks[0]
    fit = calibration.devices[0].fits[calibration.model]
    true_all = device.probability(check.exact_current)
    true = device.probability(check.current)
    sd = verification.sampling_sd
    exact = float(np.max(np.abs(check.exact_all - true_all)))
    sampled = float(np.max(np.abs(check.measured - true)))
    return {"device": name, "description": device.description, "preferred": calibration.model,
            "correct": calibration.model == name,
            "exact_true": exact,
            "fit_true": float(np.max(np.abs(fit.probability(check.exact_current) - true_all))),
            "exact_fit": verification.exact_max_abs_error,
            "sampled_true": sampled, "sampling_sd": sd,
            "consistency_p": verification.consistency_p,
            "data_p": verification.data.p, "verified": verification.passed,
            "exact_met": exact <= TRUE_TARGET,
            "sampled_met": sampled <= TRUE_TARGET + SAMPLING_SDS * sd
            and verification.consistency_p >= FALSE_ALARM,
            "table_hash": f"{calibration.shape.table.hash:08x}",
            "points": verification.points, "seconds": verification.seconds}


def shape_bench(*, backend="golden", trials=None, currents=16, data_trials=4000, seed=2026,
                log=None):
    """Calibrate every synthetic device and measure it; returns the figures (a JSON-able dict).

    ``trials`` per swept input (default :data:`BENCH_TRIALS` for ``backend``); the data have
    ``currents`` x ``data_trials`` drawn with ``seed``. ``log`` (a file) gets a line per step.
    """
    trials = BENCH_TRIALS[backend] if trials is None else trials
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in SYNTHETIC_DEVICES:
            path = Path(folder) / f"{name}.csv"
            device = make_shape_synthetic(path, name, currents=currents, trials=data_trials, seed=seed)
            measurements = read_measurements(path, unit="mA")
            calibration = calibrate(measurements)
            verification = verify(map_calibration(calibration), calibration, backend=backend,
                                  trials=trials, neurons=1, seed=1, log=log)
            rows.append(_device_figures(name, device, calibration, verification))
        forced = calibrate(read_measurements(Path(folder) / "thermal.csv", unit="mA"), model="probit")
        verification = verify(map_calibration(forced), forced, backend="golden", trials=1000,
                              neurons=1, seed=1)
    return {"backend": backend, "trials": trials, "currents": currents, "data_trials": data_trials,
            "seed": seed, "true_target": TRUE_TARGET, "sampling_sds": SAMPLING_SDS,
            "devices": rows,
            "forced_probit_on_thermal": {"data_p": verification.data.p,
                                         "exact_max_abs_error": verification.exact_max_abs_error,
                                         "failed": not verification.passed}}


def shape_statistics(data_sets, *, currents=16, data_trials=4000, seed=2026, progress=None):
    """How often the targets hold over ``data_sets`` data sets of every synthetic device (seeds
    ``seed .. seed + data_sets - 1``): per device the fraction whose preferred model is the true
    one, the fraction whose exact emulated curve is within :data:`TRUE_TARGET` of the true curve,
    and that distance's median. Only exact curves are computed (no sampled sweep). ``progress``
    is called once per data set."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in SYNTHETIC_DEVICES:
            correct, distances = 0, []
            for k in range(data_sets):
                path = Path(folder) / f"{name}.csv"
                device = make_shape_synthetic(path, name, currents=currents, trials=data_trials,
                                              seed=seed + k)
                calibration = calibrate(read_measurements(path, unit="mA"))
                check = verify(map_calibration(calibration), calibration, backend="golden",
                               trials=1, neurons=1, seed=1).checks[0]
                correct += calibration.model == name
                distances.append(float(np.max(np.abs(
                    check.exact_all - device.probability(check.exact_current)))))
                if progress is not None:
                    progress(1)
            distances = np.array(distances)
            rows.append({"device": name, "preferred_true": correct / data_sets,
                         "within_target": float(np.mean(distances <= TRUE_TARGET)),
                         "median_exact_true": float(np.median(distances))})
    return {"data_sets": data_sets, "currents": currents, "data_trials": data_trials,
            "seed": seed, "true_target": TRUE_TARGET, "devices": rows}

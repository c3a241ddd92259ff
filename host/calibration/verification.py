"""Verify emulated neurons: sweep them on a backend and compare their spins with the device curve.

:func:`verify` sweeps the input over the measured current range on a backend (the golden model, the
Amaranth simulator, or the generated Verilog under Icarus or Verilator), counts spins, and compares
them with the device curve (the data's preferred model for a fitted device) and with the exact
curve of the emulated neuron; given the calibration, it also judges the emulated shape against the
measured counts (:mod:`.data_check`). ``docs/calibration.md`` is the spec.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from spinemu.hdl.polynomials import MAX_BLOCKS
from spinemu.host.errors import InputError, SpinemuError
from spinemu.sim import golden
from spinemu.sim.backends import BACKENDS
from spinemu.sim.rtl import BenchError

from .data_check import DataCheck, check_data
from .mapping import MappedNeuron

__all__ = ["TARGET", "FALSE_ALARM", "DEFAULT_TRIALS", "NeuronCheck", "Verification",
           "consistency_p", "verify"]

TARGET = 0.01       # largest allowed |P_emulated - P_device| over the measured current range
FALSE_ALARM = 1e-3  # a correct backend fails the consistency test at most this often
# Trials per sweep point: the golden model affords a sampling sd of 0.002 at P = 1/2 on a fine
# sweep; the simulators take the measured currents only, with what fits in about a minute.
DEFAULT_TRIALS = {"golden": 62_500, "verilator": 62_500, "icarus": 40_000, "amaranth": 40_000}
GRID_POINTS = {"golden": 41, "verilator": 0, "icarus": 0, "amaranth": 0}


@dataclass(frozen=True)
class NeuronCheck:
    """One neuron's sweep: per input ``a`` (at the current it represents exactly) the spins counted
    out of ``trials``, the exact emulated probability and the device's (the curve ``against``
    names). ``exact_a`` covers every integer input of the measured range, with the exact emulated
    and device curves there."""

    neuron: MappedNeuron
    against: str
    a: np.ndarray
    current: np.ndarray
    switched: np.ndarray
    trials: int
    exact: np.ndarray
    device: np.ndarray
    exact_a: np.ndarray = field(repr=False)
    exact_current: np.ndarray = field(repr=False)
    exact_all: np.ndarray = field(repr=False)
    device_all: np.ndarray = field(repr=False)

    @property
    def measured(self):
        """The measured switching probability per point."""
        return self.switched / self.trials


@dataclass(frozen=True)
class Verification:
    """The emulated neurons' sweeps on one backend and the figures against ``target``."""

    backend: str
    trials: int
    seed: int
    checks: list
    seconds: float
    cycles: int | None = None
    target: float = TARGET
    data: DataCheck | None = None

    @property
    def points(self):
        """Sweep points per neuron (every neuron is swept over the same inputs)."""
        return len(self.checks[0].a)

    @property
    def max_abs_error(self):
        """Largest |measured P - device P| over every point of every verified neuron."""
        return max(float(np.max(np.abs(c.measured - c.device))) for c in self.checks)

    @property
    def sampling_sd(self):
        """Largest binomial sd of a measured point, sqrt(P (1 - P) / trials) at the exact P."""
        return max(float(np.max(np.sqrt(c.exact * (1 - c.exact) / c.trials))) for c in self.checks)

    @property
    def exact_max_abs_error(self):
        """Largest |exact emulated P - device P| over every integer input of the measured range."""
        return max(float(np.max(np.abs(c.exact_all - c.device_all))) for c in self.checks)

    @property
    def consistency_p(self):
        """The counts' Bonferroni p-value under the exact emulated curve (:func:`consistency_p`)."""
        return consistency_p(np.concatenate([c.switched for c in self.checks]), self.trials,
                             np.concatenate([c.exact for c in self.checks]))

    @property
    def passed(self):
        """The exact curve meets the target, the backend's counts agree with it, and the measured
        counts do not reject the emulated shape (when :attr:`data` is there)."""
        return (self.exact_max_abs_error <= self.target and self.consistency_p >= FALSE_ALARM
                and (self.data is None or self.data.passed))


def consistency_p(switched, trials, p):
    """How likely a backend that realises probabilities ``p`` is to look this far off, or farther.

    Each count gets the two-sided binomial p-value ``min(1, 2 min(P[X <= k], P[X >= k]))`` under
    ``Binomial(trials, p)``; the result is the smallest, times the number of points (Bonferroni),
    capped at 1. A count above 0 where ``p`` is 0 (or below ``trials`` where it is 1) gives 0.
    """
    switched, p = np.asarray(switched), np.asarray(p, dtype=float)
    below = stats.binom.cdf(switched, trials, p)
    above = stats.binom.sf(switched - 1, trials, p)
    each = np.minimum(1.0, 2 * np.minimum(below, above))
    return float(min(1.0, len(each) * each.min()))


def _sweep_inputs(mapping, grid_points):
    """The sweep's inputs: the measured currents and ``grid_points`` evenly spaced over their range."""
    lo, hi = mapping.currents.min(), mapping.currents.max()
    currents = np.concatenate([mapping.currents, np.linspace(lo, hi, grid_points)])
    return np.unique(mapping.input_code(currents))


def _reference(mapping, calibration, neuron):
    """The curve (a function of the current) that ``neuron`` is compared with, and its name."""
    if calibration is not None and neuron.source == "device fit":
        preferred = calibration.preferred_model
        return (calibration.devices[0].fits[preferred].probability,
                f"the device's {preferred} fit (preferred by AIC)")
    who = "the drawn device" if neuron.source == "population draw" else "the device"
    return (lambda current: mapping.device_probability(neuron, current),
            f"{who} on the {mapping.shape.model} shape")


def verify(mapping, calibration=None, *, backend="golden", trials=None, neurons=None, seed=1,
           grid_points=None, target=TARGET, log=None):
    """Sweep the emulated neurons over the measured current range on ``backend``.

    For each of the first ``neurons`` mapped neurons (default: 4 on the golden model, 1 on the
    simulators) the sweep's inputs ``a`` are the measured currents and ``grid_points`` evenly
    spaced currents (default :data:`GRID_POINTS`), rounded to inputs; each input is evaluated
    ``trials`` times in a row (default :data:`DEFAULT_TRIALS`) by ``NoisyNeuron(index)`` with the
    mapping's noise table, loaded from job seed ``seed``, so every backend sees the same noise and
    counts the same spins. The device curve is taken at the current each ``a`` represents exactly
    (``a / scale + offset``): with ``calibration``, a fitted device's is its fit of the data's
    preferred model, and the measured counts judge the emulated shape (:func:`check_data`); a
    drawn device's (and without ``calibration`` every device's) is its curve on the mapping's
    shape. The exact emulated curve comes from the golden model's code distribution. ``log`` (a
    file) gets a line per neuron. Returns a :class:`Verification`.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    where = BACKENDS[backend]
    trials = DEFAULT_TRIALS[backend] if trials is None else trials
    if trials < 1:
        raise InputError(f"--trials must be at least 1, not {trials}")
    count = min(len(mapping.neurons), 4 if backend == "golden" else 1) if neurons is None else neurons
    if not 1 <= count <= min(len(mapping.neurons), MAX_BLOCKS):
        raise InputError(f"--verify must be 1..{min(len(mapping.neurons), MAX_BLOCKS)} (mapped neurons, "
                         f"one noise block each), not {count}")
    fmt, table = mapping.fmt, mapping.shape.table
    sweep = _sweep_inputs(mapping, GRID_POINTS[backend] if grid_points is None else grid_points)
    inputs = np.repeat(sweep, trials)  # point by point: all trials of one input, then the next
    every = mapping.input_range()
    checks, cycles, began = [], 0, time.perf_counter()
    for neuron in mapping.neurons[:count]:
        if log is not None:
            print(f"verifying neuron {neuron.index} on {backend}: {len(sweep)} inputs x {trials} "
                  "trials", file=log, flush=True)
        try:
            spins, run_cycles = where.neuron(neuron.index, neuron.theta_code, neuron.sigma_code,
                                             inputs, seed, fmt, table)
        except BenchError as error:  # a missing simulator, or a failed run with its log named
            raise SpinemuError(f"--backend {backend}: {error}") from None
        cycles += run_cycles or 0
        device, against = _reference(mapping, calibration, neuron)
        exact_all = golden.switch_probability(every, neuron.theta_code, neuron.sigma_code, fmt, table)
        checks.append(NeuronCheck(
            neuron=neuron, against=against, a=sweep, current=mapping.current_of(sweep),
            switched=spins.reshape(len(sweep), trials).sum(axis=1, dtype=np.int64), trials=trials,
            exact=exact_all[sweep - every[0]], device=device(mapping.current_of(sweep)), exact_a=every,
            exact_current=mapping.current_of(every), exact_all=exact_all,
            device_all=device(mapping.current_of(every))))
    return Verification(backend, trials, seed, checks, time.perf_counter() - began,
                        None if backend == "golden" else cycles, target,
                        None if calibration is None else check_data(calibration, mapping))

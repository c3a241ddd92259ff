"""Map a device calibration onto the spin neuron's fixed-point codes, and verify the emulated neuron.

A device switches with ``P(I) = Phi((I - I50) / sigma)`` at pulse current ``I``; the emulated neuron
fires with ``Phi((a - theta) / sigma_a)`` at integer input ``a``. The mapping is linear,

    a = (I - offset) * scale,   theta = (I50 - offset) * scale,   sigma_a = sigma * scale,

and ``theta``, ``sigma_a`` are rounded to codes of :class:`~spinemu.hdl.neuron.NeuronFormat`. The
default ``offset`` is the reference I50 (the device's, or the population mean), so the nominal device
has ``theta = 0`` as a network trained with ``Phi(a / sigma)`` assumes, and a population's thetas
are the devices' offsets from nominal in input units. The default ``scale`` makes the reference
sigma 32 input units. With a population, neuron ``k`` gets the ``k``-th device drawn (seeded) from a
bivariate normal over ``(I50, ln sigma)`` fitted to the measured devices.

:func:`verify` sweeps the input over the measured current range on a backend (the golden model, the
Amaranth simulator, or the generated Verilog under Icarus or Verilator), counts spins, and compares
them with the device curve and with the exact curve of the emulated neuron. ``docs/calibration.md``
is the spec.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import ndtr

from spinemu.hdl.neuron import NeuronFormat, NoisyNeuron
from spinemu.hdl.noise import MAX_BLOCKS
from spinemu.hdl.seeding import seed_state
from spinemu.host.cli import UserError
from spinemu.sim import golden, rtl

__all__ = [
    "TARGET", "SIGMA_INPUT", "FALSE_ALARM", "BACKENDS", "DEFAULT_TRIALS", "MappedNeuron", "Mapping",
    "NeuronCheck", "Verification", "draw_devices", "map_calibration", "map_devices", "verify", "consistency_p",
    "mapping_report", "verification_report",
]

TARGET = 0.01       # largest allowed |P_emulated - P_device| over the measured current range
SIGMA_INPUT = 32.0  # the default scale puts the reference sigma at this many input units
FALSE_ALARM = 1e-3  # a correct backend fails the consistency test at most this often
BACKENDS = ("golden", "amaranth") + rtl.SIMULATORS
# Trials per sweep point: the golden model affords a sampling sd of 0.002 at P = 1/2 on a fine
# sweep; the simulators take the measured currents only, with what fits in about a minute.
DEFAULT_TRIALS = {"golden": 62_500, "verilator": 62_500, "icarus": 40_000, "amaranth": 40_000}
GRID_POINTS = {"golden": 41, "verilator": 0, "icarus": 0, "amaranth": 0}


# ---------------------------------------------------------------------------------------------
# Mapping


@dataclass(frozen=True)
class MappedNeuron:
    """One emulated neuron: the device it stands for and its codes.

    ``source`` is ``"device fit"`` (``device`` is the fitted device's label, ``None`` without a
    ``device`` column) or ``"population draw"`` (a device drawn from the population). ``i50`` and
    ``sigma`` are that device's parameters in current units; ``theta_exact``/``sigma_exact`` are
    what they map to in input units before rounding to ``theta_code``/``sigma_code``.
    """

    index: int
    source: str
    device: str | None
    i50: float
    sigma: float
    theta_exact: float
    sigma_exact: float
    theta_code: int
    sigma_code: int


@dataclass(frozen=True)
class Mapping:
    """The current-to-input map and every emulated neuron's codes.

    ``scale`` is input units per current unit and ``offset`` the current that maps to ``a = 0``;
    ``currents`` are the distinct measured currents (all devices), the range that verification
    sweeps. ``where`` names the data for error messages.
    """

    scale: float
    offset: float
    neurons: tuple
    currents: np.ndarray
    fmt: NeuronFormat = NeuronFormat()
    unit: str | None = None
    scale_source: str = "--scale"
    offset_source: str = "--offset"
    draws: str | None = None
    seed: int | None = None
    where: str = "data"

    def theta(self, neuron):
        """The neuron's threshold in input units, as its code represents it."""
        return self.fmt.theta.from_code(neuron.theta_code)

    def sigma(self, neuron):
        """The neuron's noise standard deviation in input units, as its code represents it."""
        return self.fmt.sigma.from_code(neuron.sigma_code)

    def input_code(self, current):
        """``a = round((current - offset) * scale)``; :class:`UserError` outside the input format."""
        current = np.asarray(current, dtype=float)
        a = np.round((current - self.offset) * self.scale)
        bad = (a < self.fmt.a.min_code) | (a > self.fmt.a.max_code)
        if np.any(bad):
            worst = current[bad].flat[0]
            raise UserError(f"{self.where}: current {worst:g}{_unit(self.unit)} maps to input "
                            f"{a[bad].flat[0]:g}, outside the {self.fmt.a.describe()} input format "
                            f"({self.fmt.a.min_code} .. {self.fmt.a.max_code}); "
                            + _scale_hint([(n.i50, n.sigma) for n in self.neurons], self.currents,
                                          self.offset, self.fmt))
        return a.astype(np.int64)

    def current_of(self, a):
        """The current that input ``a`` represents exactly: ``a / scale + offset``."""
        return np.asarray(a, dtype=float) / self.scale + self.offset

    def input_range(self):
        """Every integer input from the smallest to the largest measured current."""
        lo, hi = self.input_code([self.currents.min(), self.currents.max()])
        return np.arange(lo, hi + 1)


def _unit(unit):
    return f" {unit}" if unit else ""


def _scale_limits(devices, currents, offset, fmt):
    """The (lo, hi) scales for which every (i50, sigma) device and every current fits the formats."""
    sigmas = np.array([s for _, s in devices])
    lo = fmt.sigma.from_code(1) / sigmas.min()
    hi = fmt.sigma.from_code(fmt.sigma.max_code) / sigmas.max()
    theta_reach = max(abs(i50 - offset) for i50, _ in devices)
    if theta_reach > 0:
        hi = min(hi, fmt.theta.from_code(fmt.theta.max_code) / theta_reach)
    current_reach = float(np.max(np.abs(np.asarray(currents) - offset)))
    if current_reach > 0:
        hi = min(hi, fmt.a.max_code / current_reach)
    return lo, hi


def _scale_hint(devices, currents, offset, fmt):
    """What --scale would make every (i50, sigma) device and current fit, for error messages."""
    lo, hi = _scale_limits(devices, currents, offset, fmt)
    if lo > hi:
        return (f"no --scale fits every neuron with --offset {offset:g}; "
                "choose an --offset nearer the devices' I50")
    return f"a --scale from {lo:.4g} to {hi:.4g} fits every neuron and current with --offset {offset:g}"


def map_devices(devices, currents, *, scale, offset, fmt=NeuronFormat(), unit=None, where="data",
                **info):
    """Map devices onto neuron codes; returns a :class:`Mapping`.

    ``devices`` is a list of ``(source, label, i50, sigma)``, one per neuron; ``currents`` the
    measured currents. ``info`` fills the :class:`Mapping`'s descriptive fields (``scale_source``,
    ``offset_source``, ``draws``, ``seed``). A scale, threshold or noise width that does not fit
    the formats raises :class:`UserError` naming the neuron, the value and the scales that fit.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise UserError(f"--scale must be a positive number (input units per current unit), "
                        f"not {scale:g}")
    if not math.isfinite(offset):
        raise UserError(f"--offset must be a finite current, not {offset:g}")
    hint = _scale_hint([(i50, sigma) for _, _, i50, sigma in devices], currents, offset, fmt)
    u = _unit(unit)
    neurons = []
    for index, (source, label, i50, sigma) in enumerate(devices):
        who = f"{where}: neuron {index} ({source}" + (f" '{label}'" if label is not None else "") + ")"
        theta, width = (i50 - offset) * scale, sigma * scale
        try:
            sigma_code = fmt.sigma_code(width)
        except ValueError as error:
            raise UserError(f"{who}: sigma {sigma:.4g}{u} x scale {scale:.4g} = {width:.4g} input "
                            f"units: {error}; {hint}") from None
        try:
            theta_code = fmt.theta_code(theta)
        except ValueError as error:
            raise UserError(f"{who}: (I50 {i50:.5g}{u} - offset {offset:.5g}{u}) x scale {scale:.4g} "
                            f"= {theta:.4g} input units: {error}; {hint}") from None
        neurons.append(MappedNeuron(index, source, label, float(i50), float(sigma), float(theta),
                                    float(width), theta_code, sigma_code))
    mapping = Mapping(scale=float(scale), offset=float(offset), neurons=tuple(neurons),
                      currents=np.unique(np.asarray(currents, dtype=float)), fmt=fmt, unit=unit,
                      where=where, **info)
    mapping.input_range()  # every measured current must be a valid input
    return mapping


def draw_devices(calibration, count, seed):
    """``count`` devices ``(source, label, i50, sigma)`` for the neurons of ``calibration``.

    One device (no ``device`` column, or one label): every neuron gets its fit. A population of two
    or more: ``(I50, ln sigma)`` drawn from the normal with the measured devices' mean and sample
    covariance, by ``numpy.random.default_rng(seed)``; ln sigma keeps every sigma positive and the
    covariance keeps the measured correlation of I50 and sigma.
    """
    if count < 1:
        raise UserError(f"--neurons must be at least 1, not {count}")
    fits = [d.probit for d in calibration.devices]
    if len(fits) == 1:
        return [("device fit", calibration.devices[0].curve.device, fits[0].i50, fits[0].sigma)] * count
    params = np.array([[f.i50, math.log(f.sigma)] for f in fits])
    rng = np.random.default_rng(seed)
    drawn = rng.multivariate_normal(params.mean(axis=0), np.cov(params, rowvar=False), size=count)
    return [("population draw", None, float(i50), float(math.exp(log_sigma)))
            for i50, log_sigma in drawn]


def _reference(calibration):
    """(I50, sigma) of the nominal device: the single fit, or the population means."""
    if calibration.population is None:
        probit = calibration.devices[0].probit
        return probit.i50, probit.sigma
    return calibration.population.i50_mean, calibration.population.sigma_mean


def map_calibration(calibration, *, neurons=None, seed=1, scale=None, offset=None,
                    fmt=NeuronFormat()):
    """Map a :class:`~spinemu.host.calibration.Calibration` onto ``neurons`` emulated neurons.

    ``neurons`` defaults to 1 for one device and to the number of measured devices for a
    population. ``scale`` (input units per current unit) defaults to ``SIGMA_INPUT / sigma`` and
    ``offset`` to I50, both of the reference device (the fit, or the population means).
    """
    i50_ref, sigma_ref = _reference(calibration)
    count = neurons if neurons is not None else len(calibration.devices)
    devices = draw_devices(calibration, count, seed)
    currents = np.concatenate([d.curve.current for d in calibration.devices])
    drawn = len(calibration.devices) > 1
    info = dict(scale_source="--scale" if scale is not None else
                f"default: reference sigma = {SIGMA_INPUT:g} input units",
                offset_source="--offset" if offset is not None else "default: reference I50",
                draws=f"normal over (I50, ln sigma) fitted to {len(calibration.devices)} devices"
                if drawn else None,
                seed=seed if drawn else None)
    return map_devices(devices, currents,
                       scale=SIGMA_INPUT / sigma_ref if scale is None else scale,
                       offset=i50_ref if offset is None else offset, fmt=fmt,
                       unit=calibration.measurements.unit, where=calibration.measurements.path, **info)


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
               for n, t, s in zip(mapping.neurons, theta_error, sigma_error)]
    # A current between two inputs is off the nearest by up to half a step, 0.5 / sigma_a device
    # sigmas; the largest change of Phi over such a step is 2 Phi(0.25 / sigma_a) - 1.
    rounding = max(2 * float(ndtr(0.25 / mapping.sigma(n))) - 1 for n in mapping.neurons)
    quantization = {"max_theta_abs_error": max(abs(t) for t in theta_error),
                    "max_sigma_rel_error": max(abs(s) for s in sigma_error),
                    "max_curve_error": curve_error,
                    "input_step": 1 / mapping.scale,
                    "max_input_rounding_error": rounding}
    return head, neurons, quantization


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class NeuronCheck:
    """One neuron's sweep: per input ``a`` (at the current it represents exactly) the spins counted
    out of ``trials``, the exact emulated probability and the device's. ``exact_a`` covers every
    integer input of the measured range, with the exact emulated and device curves there."""

    neuron: MappedNeuron
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
        """The exact curve meets the target and the backend's counts agree with it."""
        return self.exact_max_abs_error <= self.target and self.consistency_p >= FALSE_ALARM


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


def _spins_golden(neuron, inputs, seed, fmt):
    codes = golden.noise_codes(seed, 1, len(inputs), first=neuron.index)[:, 0]
    spins, _ = golden.neuron(inputs, neuron.theta_code, neuron.sigma_code, codes, fmt)
    return spins, None


def _payloads(dut, neuron, a):
    """Packed input words, one per distinct ``a`` (theta and sigma are fixed per neuron)."""
    return {int(x): dut.input_layout.const({"a": int(x), "theta": neuron.theta_code,
                                            "sigma": neuron.sigma_code}).as_bits()
            for x in np.unique(a)}


def _spins_cocotb(simulator, neuron, inputs, seed, fmt):
    dut = NoisyNeuron(neuron.index, fmt)
    words = _payloads(dut, neuron, inputs)
    try:
        result = rtl.run_stream_bench(dut, simulator=simulator,
                                      inputs=[words[int(x)] for x in inputs], outputs=len(inputs),
                                      load={"seed": seed_state(seed, neuron.index)})
    except rtl.BenchError as error:  # a missing simulator, or a failed run with its log named
        raise UserError(f"--backend {simulator}: {error}") from None
    spin = dut.output_layout["spin"]
    mask = (1 << spin.width) - 1
    return np.array([(w >> spin.offset) & mask for w in result.outputs], dtype=np.uint8), result.cycles


def _spins_amaranth(neuron, inputs, seed, fmt):
    from amaranth.sim import Simulator

    dut = NoisyNeuron(neuron.index, fmt)
    words = _payloads(dut, neuron, inputs)
    spins, cycles = [], [0]

    async def bench(ctx):
        ctx.set(dut.seed, seed_state(seed, neuron.index))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        ctx.set(dut.o.ready, 1)
        sent = 0
        while len(spins) < len(inputs):
            if sent < len(inputs):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.as_value(), words[int(inputs[sent])])
            else:
                ctx.set(dut.i.valid, 0)
            # values at the clock edge: a transfer happens where valid and ready were both high
            _, _, taken, valid, spin = await ctx.tick().sample(dut.i.ready, dut.o.valid,
                                                               dut.o.payload.spin)
            cycles[0] += 1
            sent += bool(taken and sent < len(inputs))
            if valid:
                spins.append(spin)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(spins, dtype=np.uint8), cycles[0]


def verify(mapping, *, backend="golden", trials=None, neurons=None, seed=1, grid_points=None,
           target=TARGET, log=None):
    """Sweep the emulated neurons over the measured current range on ``backend``.

    For each of the first ``neurons`` mapped neurons (default: 4 on the golden model, 1 on the
    simulators) the sweep's inputs ``a`` are the measured currents and ``grid_points`` evenly
    spaced currents (default :data:`GRID_POINTS`), rounded to inputs; each input is evaluated
    ``trials`` times in a row (default :data:`DEFAULT_TRIALS`) by ``NoisyNeuron(index)`` loaded from
    job seed ``seed``, so every backend sees the same noise and counts the same spins. The device
    curve is taken at the current each ``a`` represents exactly (``a / scale + offset``); the exact
    emulated curve comes from the golden model's code distribution. ``log`` (a file) gets a line
    per neuron. Returns a :class:`Verification`.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    trials = DEFAULT_TRIALS[backend] if trials is None else trials
    if trials < 1:
        raise UserError(f"--trials must be at least 1, not {trials}")
    count = min(len(mapping.neurons), 4 if backend == "golden" else 1) if neurons is None else neurons
    if not 1 <= count <= min(len(mapping.neurons), MAX_BLOCKS):
        raise UserError(f"--verify must be 1..{min(len(mapping.neurons), MAX_BLOCKS)} (mapped neurons, "
                        f"one noise block each), not {count}")
    fmt = mapping.fmt
    sweep = _sweep_inputs(mapping, GRID_POINTS[backend] if grid_points is None else grid_points)
    inputs = np.repeat(sweep, trials)  # point by point: all trials of one input, then the next
    every = mapping.input_range()
    checks, cycles, began = [], 0, time.perf_counter()
    for neuron in mapping.neurons[:count]:
        if log is not None:
            print(f"verifying neuron {neuron.index} on {backend}: {len(sweep)} inputs x {trials} "
                  "trials", file=log, flush=True)
        if backend == "golden":
            spins, run_cycles = _spins_golden(neuron, inputs, seed, fmt)
        elif backend == "amaranth":
            spins, run_cycles = _spins_amaranth(neuron, inputs, seed, fmt)
        else:
            spins, run_cycles = _spins_cocotb(backend, neuron, inputs, seed, fmt)
        cycles += run_cycles or 0

        def device(a, neuron=neuron):
            return ndtr((mapping.current_of(a) - neuron.i50) / neuron.sigma)

        exact_all = golden.switch_probability(every, neuron.theta_code, neuron.sigma_code, fmt)
        checks.append(NeuronCheck(
            neuron=neuron, a=sweep, current=mapping.current_of(sweep),
            switched=spins.reshape(len(sweep), trials).sum(axis=1, dtype=np.int64), trials=trials,
            exact=exact_all[sweep - every[0]], device=device(sweep), exact_a=every,
            exact_current=mapping.current_of(every), exact_all=exact_all, device_all=device(every)))
    return Verification(backend, trials, seed, checks, time.perf_counter() - began,
                        None if backend == "golden" else cycles, target)


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

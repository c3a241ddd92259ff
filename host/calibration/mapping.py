"""Map a device calibration onto the spin neuron's fixed-point codes.

A device whose threshold current has mean ``mu`` and standard deviation ``s`` on the design's shape
``F`` switches with ``P(I) = 1 - F((mu - I) / s)`` at pulse current ``I`` (for the probit, ``mu =
I50``, ``s = sigma`` and ``P = Phi((I - I50) / sigma)``); the emulated neuron, drawing its noise from
``F``'s table, fires with ``1 - F((theta - a) / sigma_a)`` at integer input ``a``. The mapping is
linear,

    a = (I - offset) * scale,   theta = (mu - offset) * scale,   sigma_a = s * scale,

and ``theta``, ``sigma_a`` are rounded to codes of :class:`~spinemu.hdl.formats.NeuronFormat`. The
default ``offset`` is the reference mu (the device's, or the population mean), so the nominal device
has ``theta = 0`` as a network trained with ``Phi(a / sigma)`` assumes, and a population's thetas
are the devices' offsets from nominal in input units. The default ``scale`` makes the reference
s 32 input units. With a population, neuron ``k`` gets the ``k``-th device drawn (seeded) from a
bivariate normal over ``(mu, ln s)`` fitted to the measured devices. ``docs/calibration.md``
is the spec.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from spinemu.hdl.formats import NeuronFormat
from spinemu.host.errors import InputError

from .shape import Shape, gaussian_shape

__all__ = ["SIGMA_INPUT", "MappedNeuron", "Mapping", "draw_devices", "map_calibration", "map_devices"]

SIGMA_INPUT = 32.0  # the default scale puts the reference s at this many input units


@dataclass(frozen=True)
class MappedNeuron:
    """One emulated neuron: the device it stands for and its codes.

    ``source`` is ``"device fit"`` (``device`` is the fitted device's label, ``None`` without a
    ``device`` column) or ``"population draw"`` (a device drawn from the population). ``mu`` and
    ``s`` are that device's threshold mean and standard deviation in current units;
    ``theta_exact``/``sigma_exact`` are what they map to in input units before rounding to
    ``theta_code``/``sigma_code``.
    """

    index: int
    source: str
    device: str | None
    mu: float
    s: float
    theta_exact: float
    sigma_exact: float
    theta_code: int
    sigma_code: int


@dataclass(frozen=True)
class Mapping:
    """The current-to-input map and every emulated neuron's codes.

    ``scale`` is input units per current unit and ``offset`` the current that maps to ``a = 0``;
    ``currents`` are the distinct measured currents (all devices), the range that verification
    sweeps; ``shape`` is the design's shape, whose noise table every neuron draws. ``where`` names
    the data for error messages.
    """

    scale: float
    offset: float
    neurons: tuple
    currents: np.ndarray
    fmt: NeuronFormat = NeuronFormat()
    shape: Shape = field(default_factory=gaussian_shape)
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
        """``a = round((current - offset) * scale)``; :class:`InputError` outside the input format."""
        current = np.asarray(current, dtype=float)
        a = np.round((current - self.offset) * self.scale)
        bad = (a < self.fmt.a.min_code) | (a > self.fmt.a.max_code)
        if np.any(bad):
            worst = current[bad].flat[0]
            raise InputError(f"{self.where}: current {worst:g}{_unit(self.unit)} maps to input "
                             f"{a[bad].flat[0]:g}, outside the {self.fmt.a.describe()} input format "
                             f"({self.fmt.a.min_code} .. {self.fmt.a.max_code}); "
                             + _scale_hint([(n.mu, n.s) for n in self.neurons], self.currents,
                                          self.offset, self.fmt))
        return a.astype(np.int64)

    def current_of(self, a):
        """The current that input ``a`` represents exactly: ``a / scale + offset``."""
        return np.asarray(a, dtype=float) / self.scale + self.offset

    def device_probability(self, neuron, current):
        """The switching probability of the neuron's device (its ``mu``, ``s`` on the shape)."""
        return self.shape.probability(current, neuron.mu, neuron.s)

    def input_range(self):
        """Every integer input from the smallest to the largest measured current."""
        lo, hi = self.input_code([self.currents.min(), self.currents.max()])
        return np.arange(lo, hi + 1)


def _unit(unit):
    return f" {unit}" if unit else ""


def _scale_limits(devices, currents, offset, fmt):
    """The (lo, hi) scales for which every (mu, s) device and every current fits the formats."""
    sigmas = np.array([s for _, s in devices])
    lo = fmt.sigma.from_code(1) / sigmas.min()
    hi = fmt.sigma.from_code(fmt.sigma.max_code) / sigmas.max()
    theta_reach = max(abs(mu - offset) for mu, _ in devices)
    if theta_reach > 0:
        hi = min(hi, fmt.theta.from_code(fmt.theta.max_code) / theta_reach)
    current_reach = float(np.max(np.abs(np.asarray(currents) - offset)))
    if current_reach > 0:
        hi = min(hi, fmt.a.max_code / current_reach)
    return lo, hi


def _scale_hint(devices, currents, offset, fmt):
    """What --scale would make every (mu, s) device and current fit, for error messages."""
    lo, hi = _scale_limits(devices, currents, offset, fmt)
    if lo > hi:
        return (f"no --scale fits every neuron with --offset {offset:g}; "
                "choose an --offset nearer the devices' mu")
    return f"a --scale from {lo:.4g} to {hi:.4g} fits every neuron and current with --offset {offset:g}"


def map_devices(devices, currents, *, scale, offset, fmt=NeuronFormat(), unit=None, where="data",
                shape=None, **info):
    """Map devices onto neuron codes; returns a :class:`Mapping`.

    ``devices`` is a list of ``(source, label, mu, s)``, one per neuron, on ``shape`` (default: the
    probit's, where ``mu`` is I50 and ``s`` sigma); ``currents`` the measured currents. ``info``
    fills the :class:`Mapping`'s descriptive fields (``scale_source``, ``offset_source``, ``draws``,
    ``seed``). A scale, threshold or noise width that does not fit the formats raises
    :class:`InputError` naming the neuron, the value and the scales that fit.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"--scale must be a positive number (input units per current unit), "
                         f"not {scale:g}")
    if not math.isfinite(offset):
        raise InputError(f"--offset must be a finite current, not {offset:g}")
    hint = _scale_hint([(mu, s) for _, _, mu, s in devices], currents, offset, fmt)
    u = _unit(unit)
    neurons = []
    for index, (source, label, mu, s) in enumerate(devices):
        who = f"{where}: neuron {index} ({source}" + (f" '{label}'" if label is not None else "") + ")"
        theta, width = (mu - offset) * scale, s * scale
        try:
            sigma_code = fmt.sigma_code(width)
        except ValueError as error:
            raise InputError(f"{who}: s {s:.4g}{u} x scale {scale:.4g} = {width:.4g} input "
                             f"units: {error}; {hint}") from None
        try:
            theta_code = fmt.theta_code(theta)
        except ValueError as error:
            raise InputError(f"{who}: (mu {mu:.5g}{u} - offset {offset:.5g}{u}) x scale {scale:.4g} "
                             f"= {theta:.4g} input units: {error}; {hint}") from None
        neurons.append(MappedNeuron(index, source, label, float(mu), float(s), float(theta),
                                    float(width), theta_code, sigma_code))
    mapping = Mapping(scale=float(scale), offset=float(offset), neurons=tuple(neurons),
                      currents=np.unique(np.asarray(currents, dtype=float)), fmt=fmt, unit=unit,
                      shape=gaussian_shape() if shape is None else shape, where=where, **info)
    mapping.input_range()  # every measured current must be a valid input
    return mapping


def draw_devices(calibration, count, seed):
    """``count`` devices ``(source, label, mu, s)`` on the calibration's shape for its neurons.

    One device (no ``device`` column, or one label): every neuron gets its fit. A population of two
    or more: ``(mu, ln s)`` drawn from the normal with the measured devices' mean and sample
    covariance, by ``numpy.random.default_rng(seed)``; ln s keeps every s positive and the
    covariance keeps the measured correlation of mu and s.
    """
    if count < 1:
        raise InputError(f"--neurons must be at least 1, not {count}")
    if len(calibration.devices) == 1:
        mu, s = calibration.locations[0]
        return [("device fit", calibration.devices[0].curve.device, mu, s)] * count
    params = np.array([[mu, math.log(s)] for mu, s in calibration.locations])
    rng = np.random.default_rng(seed)
    drawn = rng.multivariate_normal(params.mean(axis=0), np.cov(params, rowvar=False), size=count)
    return [("population draw", None, float(mu), float(math.exp(log_s))) for mu, log_s in drawn]


def map_calibration(calibration, *, neurons=None, seed=1, scale=None, offset=None,
                    fmt=NeuronFormat()):
    """Map a :class:`~spinemu.host.calibration.Calibration` onto ``neurons`` emulated neurons.

    ``neurons`` defaults to 1 for one device and to the number of measured devices for a
    population. ``scale`` (input units per current unit) defaults to ``SIGMA_INPUT / s`` and
    ``offset`` to ``mu``, both of the reference device: the device's, or the means over a
    population's devices (for the probit, I50 and sigma).
    """
    mu_ref, s_ref = np.mean(calibration.locations, axis=0)
    count = neurons if neurons is not None else len(calibration.devices)
    devices = draw_devices(calibration, count, seed)
    currents = np.concatenate([d.curve.current for d in calibration.devices])
    drawn = len(calibration.devices) > 1
    info = dict(scale_source="--scale" if scale is not None else
                f"default: reference s = {SIGMA_INPUT:g} input units",
                offset_source="--offset" if offset is not None else "default: reference mu",
                draws=f"normal over (mu, ln s) fitted to {len(calibration.devices)} devices"
                if drawn else None,
                seed=seed if drawn else None)
    return map_devices(devices, currents,
                       scale=SIGMA_INPUT / float(s_ref) if scale is None else scale,
                       offset=float(mu_ref) if offset is None else offset, fmt=fmt,
                       unit=calibration.measurements.unit, where=calibration.measurements.path,
                       shape=calibration.shape, **info)

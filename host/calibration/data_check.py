"""Judge the emulated shape against the data: the measured counts and the data's preferred model.

Every measured device is mapped onto the design's shape with its own ``(mu, s)``, and its emulated
neuron's exact switching probability (the golden model's, with the design's noise table) is taken at
every measured current: at the current exactly, the fraction of an input step it lies past an input
going into the threshold's fraction bits. The measured counts are then tested against those
probabilities by their binomial deviance, with one degree of freedom per point; a p-value below
:data:`ALPHA` means the data reject the shape. The exact emulated curve is also compared with each
device's fit of the preferred model over every input of its measured range. ``docs/calibration.md``
is the spec.
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats

from spinemu.sim import golden

from .mapping import map_devices

__all__ = ["ALPHA", "GROUPS", "DeviceData", "DataCheck", "check_data", "emulated_probability"]

ALPHA = 1e-3   # a shape the data fit is rejected at most this often (less: see the dof)
GROUPS = 20    # a device with more than twice as many currents is tested in this many groups


@dataclass(frozen=True)
class DeviceData:
    """One measured device: its counts per ``current``, its emulated neuron's exact probability
    there (``emulated``), and ``max_abs_error``, the largest |exact emulated P - preferred model's
    P| over every input of its measured range."""

    device: str | None
    current: np.ndarray
    trials: np.ndarray
    switched: np.ndarray
    emulated: np.ndarray
    max_abs_error: float

    def groups(self):
        """``(trials, switched, emulated P)`` as tested: per current, or, for more than ``2 *
        GROUPS`` currents (e.g. raw trials at scattered currents), in ``GROUPS`` consecutive groups
        of about equal trials with the trials' mean emulated P."""
        if len(self.current) <= 2 * GROUPS:
            return self.trials, self.switched, self.emulated
        before = np.cumsum(self.trials) - self.trials
        group = (before * GROUPS) // self.trials.sum()
        trials = np.bincount(group, weights=self.trials)
        return (trials, np.bincount(group, weights=self.switched),
                np.bincount(group, weights=self.trials * self.emulated) / trials)


@dataclass(frozen=True)
class DataCheck:
    """The emulated shape (``model``) against every measured device (``devices``), and against
    the data's ``preferred_model``."""

    model: str
    preferred_model: str
    devices: list

    @property
    def deviance(self):
        """``2 sum [k ln(k / (n P)) + (n - k) ln((n - k) / (n (1 - P)))]`` over the tested points
        (infinite where a count is impossible under P)."""
        return sum(_deviance(*device.groups()) for device in self.devices)

    @property
    def dof(self):
        """The tested points: the fitted parameters are not taken off, which makes the test a
        little conservative."""
        return sum(len(device.groups()[0]) for device in self.devices)

    @property
    def p(self):
        """The deviance's chi-square upper tail."""
        return float(stats.chi2.sf(self.deviance, self.dof))

    @property
    def max_abs_error(self):
        """The largest |exact emulated P - preferred model's P| over the devices' measured ranges."""
        return max(device.max_abs_error for device in self.devices)

    @property
    def passed(self):
        """The data do not reject the emulated shape: ``p >= ALPHA``."""
        return self.p >= ALPHA


def _deviance(n, k, p):
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(k > 0, k * np.log(k / (n * p)), 0.0)
        down = np.where(k < n, (n - k) * np.log((n - k) / (n * (1 - p))), 0.0)
    return float(2 * np.sum(up + down))


def emulated_probability(mapping, neuron, current):
    """The exact switching probability of ``neuron`` (its codes, the mapping's noise table) at the
    input ``(current - offset) * scale``, the fraction of an input step past ``floor`` of it taken
    off the threshold (to the threshold's resolution)."""
    fmt = mapping.fmt
    steps = np.round((np.asarray(current, dtype=float) - mapping.offset) * mapping.scale
                     * (1 << fmt.theta_frac)).astype(np.int64)
    a = steps >> fmt.theta_frac
    rest = steps - (a << fmt.theta_frac)
    return golden.switch_probability(a, (neuron.theta_code - rest)[:, None], neuron.sigma_code, fmt,
                                     mapping.shape.table)


def check_data(calibration, mapping):
    """Every measured device of ``calibration`` emulated with ``mapping``'s scale, offset and shape,
    against its counts and its fit of the preferred model; returns a :class:`DataCheck`."""
    devices = [("device fit", d.curve.device, mu, s)
               for d, (mu, s) in zip(calibration.devices, calibration.locations, strict=True)]
    measured = map_devices(devices, mapping.currents, scale=mapping.scale, offset=mapping.offset,
                           fmt=mapping.fmt, unit=mapping.unit, where=mapping.where,
                           shape=mapping.shape)
    preferred = calibration.preferred_model
    results = []
    for device, neuron in zip(calibration.devices, measured.neurons, strict=True):
        curve = device.curve
        every = np.arange(*(mapping.input_code([curve.current.min(), curve.current.max()])
                            + np.array([0, 1])))
        exact = golden.switch_probability(every, neuron.theta_code, neuron.sigma_code, mapping.fmt,
                                          mapping.shape.table)
        error = float(np.max(np.abs(exact - device.fits[preferred].probability(
            mapping.current_of(every)))))
        results.append(DeviceData(curve.device, curve.current, curve.trials, curve.switched,
                                  emulated_probability(mapping, neuron, curve.current), error))
    return DataCheck(calibration.model, preferred, results)

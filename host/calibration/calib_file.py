"""CALIB.json: what ``spinemu calibrate --out`` writes and ``spinemu train --calibration`` reads.

Its fields are listed in ``docs/calibration.md`` (:mod:`spinemu.host.calibration.report` makes the
dicts). This module is the file's only writer and reader; problems raise
:class:`~spinemu.host.errors.InputError` naming the file.
"""

import json
import os
from pathlib import Path

import numpy as np

from spinemu.host.errors import InputError

__all__ = ["write_calibration", "write_output", "read_neuron_codes"]


def write_calibration(path, report):
    """Write the calibration ``report`` (a JSON-able dict) to ``path`` as CALIB.json."""
    write_output(path, lambda path: _dump(report, path))


def _dump(report, path):
    with open(path, "w") as stream:
        json.dump(report, stream, indent=2, allow_nan=False)
        stream.write("\n")


def write_output(path, write):
    """Make ``path``'s folder and call ``write(path)``; InputError naming ``path`` if either fails.

    ``spinemu calibrate`` writes CALIB.json and its figure through it.
    """
    folder = os.path.dirname(path)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        write(path)
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None


def read_neuron_codes(path, fmt):
    """The emulated neurons' ``(theta, sigma)`` codes (int64 arrays) from the CALIB.json at ``path``.

    The file's ``neurons`` list holds each neuron's ``theta_code`` and ``sigma_code``, integers in
    the neuron format ``fmt``, whose fraction bits ``mapping.formats`` must name. InputError
    naming the file and the problem otherwise.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the calibration ({error})") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON ({error})") from None
    neurons = data.get("neurons") if isinstance(data, dict) else None
    if not isinstance(neurons, list) or not neurons:
        raise InputError(f"{path}: no 'neurons' list; write the file with `spinemu calibrate`")
    formats = (data.get("mapping") or {}).get("formats") or {}
    for name, frac in (("theta", fmt.theta_frac), ("sigma", fmt.sigma_frac)):
        text = formats.get(name)
        if text is None:
            raise InputError(f"{path}: mapping.formats.{name} is missing")
        try:
            got = _format_fracs(text)[2]
        except ValueError:
            raise InputError(f"{path}: mapping.formats.{name} is {text!r}, not a Q format") from None
        if got != frac:
            raise InputError(f"{path}: {name} codes have {got} fraction bits ({text}); the design "
                             f"format has {frac}")
    theta, sigma = [], []
    for i, neuron in enumerate(neurons):
        try:
            t, s = neuron["theta_code"], neuron["sigma_code"]
        except (KeyError, TypeError):
            raise InputError(f"{path}: neurons[{i}] has no theta_code and sigma_code") from None
        if not (isinstance(t, int) and isinstance(s, int)):
            raise InputError(f"{path}: neurons[{i}]: codes must be integers")
        if not fmt.theta.min_code <= t <= fmt.theta.max_code:
            raise InputError(f"{path}: neurons[{i}]: theta_code {t} outside {fmt.theta.describe()}")
        if not 1 <= s <= fmt.sigma.max_code:
            raise InputError(f"{path}: neurons[{i}]: sigma_code {s} outside 1..{fmt.sigma.max_code}")
        theta.append(t)
        sigma.append(s)
    theta, sigma = np.array(theta, np.int64), np.array(sigma, np.int64)
    return theta, sigma


def _format_fracs(text):
    """``"UQ8.8"`` / ``"Q16.8"`` -> (signed, integer bits, fraction bits)."""
    signed = not text.startswith("U")
    whole, frac = text.lstrip("UQ").split(".")
    return signed, int(whole), int(frac)

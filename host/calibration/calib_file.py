"""CALIB.json: what ``spinemu calibrate --out`` writes and ``spinemu train --calibration`` reads.

Its fields are listed in ``docs/calibration.md`` (:mod:`spinemu.host.calibration.report` makes the
dicts). This module is the file's only writer and reader; problems raise
:class:`~spinemu.host.errors.InputError` naming the file.
"""

import json
import os
from pathlib import Path

import numpy as np

from spinemu.hdl.noise_table import NoiseTable, TableError, gaussian
from spinemu.host.errors import InputError

__all__ = ["write_calibration", "write_output", "read_neuron_codes", "noise_entry",
           "noise_from_entry", "read_noise_table"]


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
    data = _read(path)
    neurons = data.get("neurons")
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


def noise_entry(table):
    """CALIB.json's ``noise`` field for a noise table: its shape's name, its hash (8 hex digits)
    and its 1024 bytes (:meth:`~spinemu.hdl.noise_table.NoiseTable.to_bytes`) in hex."""
    return {"shape": table.name, "hash": f"{table.hash:08x}", "table": table.to_bytes().hex()}


def read_noise_table(path):
    """The noise table the CALIB.json at ``path`` maps its neurons with (the Gaussian when the
    file has no ``noise`` field, as files written before noise tables did not). InputError naming
    the file when the field is malformed or its hash is not its table's."""
    path = Path(path)
    return noise_from_entry(_read(path).get("noise"), str(path))


def noise_from_entry(entry, where):
    """The table of a :func:`noise_entry` (``None``: the Gaussian, for files written before noise
    tables); InputError naming ``where`` when the entry is malformed or its hash is not its
    table's."""
    if entry is None:
        return gaussian()
    try:
        table = NoiseTable.from_bytes(bytes.fromhex(entry["table"]), str(entry["shape"]),
                                      source=f"{where}: noise.table")
        recorded = int(entry["hash"], 16)
    except TableError as error:
        raise InputError(str(error)) from None
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: 'noise' needs 'shape', 'hash' (hex) and 'table' (hex bytes); "
                         "write the file with spinemu") from None
    if recorded != table.hash:
        raise InputError(f"{where}: the noise table's hash is {table.hash:08x}, not the recorded "
                         f"{recorded:08x}: the file was changed by hand")
    return table


def _read(path):
    """The JSON object in ``path``; InputError naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the calibration ({error})") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a calibration (a JSON object); write it with `spinemu "
                         "calibrate`")
    return data


def _format_fracs(text):
    """``"UQ8.8"`` / ``"Q16.8"`` -> (signed, integer bits, fraction bits)."""
    signed = not text.startswith("U")
    whole, frac = text.lstrip("UQ").split(".")
    return signed, int(whole), int(frac)

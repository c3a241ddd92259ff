"""Switching measurements: read a CSV file, check every row, and group the counts by device.

A stochastic switching device is measured by applying current pulses of amplitude ``current`` and
counting how many of the ``trials`` pulses ``switched`` it; ``docs/calibration.md`` is the spec of
the file. Bad input raises :class:`~spinemu.host.errors.InputError` naming the file, the line and
the problem.
"""

import csv
import math
import os
from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from spinemu.host.errors import InputError

__all__ = ["Measurements", "Curve", "read_measurements"]

_COLUMNS_HELP = ("expected columns 'current', 'trials', 'switched' (aggregated: one row per current) "
                 "or 'current', 'switched' (raw: one 0/1 row per trial), optionally 'device'")


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Measurements:
    """Switching measurements as read from one CSV file, one entry per data row.

    ``form`` is ``"aggregated"`` (rows of ``trials`` pulses of which ``switched`` switched) or
    ``"raw"`` (one row per pulse, ``trials`` is 1). ``device`` holds the row's device label, or is
    ``None`` when the file has no ``device`` column. ``line`` is each row's line number in the file
    (the header is on line 1 unless comments precede it). ``unit`` names the current's unit.
    """

    path: str
    form: str
    current: np.ndarray
    trials: np.ndarray
    switched: np.ndarray
    line: np.ndarray
    device: tuple | None = None
    unit: str | None = None
    ignored_columns: tuple = ()

    def curves(self):
        """The data grouped by device (in order of first appearance) and current: a list of Curve."""
        if self.device is None:
            groups = [(None, np.arange(len(self.current)))]
        else:
            labels = np.array(self.device, dtype=object)
            order = dict.fromkeys(self.device)
            groups = [(label, np.flatnonzero(labels == label)) for label in order]
        curves = []
        for label, rows in groups:
            where = (f"{self.path}, " + (f"device '{label}', " if label is not None else "")
                     + f"lines {_ranges(self.line[rows])}")
            curves.append(Curve.from_counts(self.current[rows], self.trials[rows],
                                            self.switched[rows], device=label, where=where))
        return curves


def read_measurements(path, unit=None):
    """Read switching measurements from the CSV file ``path`` and check every row.

    The file has a header naming its columns (case and surrounding spaces do not matter):
    ``current``, ``trials``, ``switched`` for aggregated data or ``current``, ``switched`` (0 or 1)
    for raw data, plus an optional ``device`` label. Lines starting with ``#`` and blank lines are
    skipped; other columns are kept out of the fit and listed in ``ignored_columns``. Any bad row
    raises :class:`InputError` naming the file, the line and the problem; nothing is dropped.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            text = stream.read()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a UTF-8 text file ({error.reason} at byte "
                         f"{error.start})") from None

    records = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
               if line.strip() and not line.lstrip().startswith("#")]
    if not records:
        raise InputError(f"{path}: the file is empty; {_COLUMNS_HELP}")
    header_line, header_text = records[0]
    header = [name.strip().lower() for name in next(csv.reader([header_text]))]
    where = f"{path}, line {header_line} (header)"
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise InputError(f"{where}: column '{duplicates[0]}' appears more than once")
    form = "aggregated" if "trials" in header else "raw"
    wanted = ["current", "trials", "switched"] if form == "aggregated" else ["current", "switched"]
    missing = [name for name in wanted if name not in header]
    if missing and len(header) == 1 and any(sep in header_text for sep in ";\t"):
        raise InputError(f"{where}: the columns must be separated by commas, not by "
                         f"{'semicolons' if ';' in header_text else 'tabs'}")
    if missing:
        raise InputError(f"{where}: missing column '{missing[0]}' (found: {', '.join(header)}); "
                         f"{_COLUMNS_HELP}")
    has_device = "device" in header
    index = {name: header.index(name) for name in wanted + ["device"] * has_device}
    if len(records) == 1:
        raise InputError(f"{path}: no data rows after the header on line {header_line}")

    current, trials, switched, lines, devices = [], [], [], [], []
    for row, (number, line) in enumerate(records[1:], start=1):
        where = f"{path}, line {number} (data row {row})"
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            raise InputError(f"{where}: {len(fields)} fields, but the header names {len(header)} "
                             f"({', '.join(header)})")
        value = {name: fields[i].strip() for name, i in index.items()}
        amps = _number(value["current"], "current", where)
        hits = _count(value["switched"], "switched", where)
        if form == "aggregated":
            pulses = _count(value["trials"], "trials", where)
            if pulses == 0:
                raise InputError(f"{where}: column 'trials' is 0; every row must hold at least "
                                 "one trial")
            if hits > pulses:
                raise InputError(f"{where}: switched ({hits}) is greater than trials ({pulses})")
        else:
            pulses = 1
            if hits > 1:
                raise InputError(f"{where}: column 'switched' is {value['switched']}, but raw data "
                                 "(no 'trials' column) need 0 or 1 per trial; add a 'trials' "
                                 "column for counts")
        if has_device:
            if not value["device"]:
                raise InputError(f"{where}: column 'device' is empty")
            devices.append(value["device"])
        current.append(amps)
        trials.append(pulses)
        switched.append(hits)
        lines.append(number)
    ignored = tuple(name for name in header if name not in index)
    return Measurements(path=path, form=form, current=np.array(current, dtype=float),
                        trials=np.array(trials, dtype=np.int64),
                        switched=np.array(switched, dtype=np.int64), line=np.array(lines),
                        device=tuple(devices) if has_device else None, unit=unit,
                        ignored_columns=ignored)


def _number(text, column, where):
    if not text:
        raise InputError(f"{where}: column '{column}' is empty")
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: column '{column}': '{text}' is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: column '{column}' is '{text}'; it must be a finite number")
    return value


def _count(text, column, where):
    value = _number(text, column, where)
    if value < 0:
        raise InputError(f"{where}: column '{column}' is negative ({text}); counts must be >= 0")
    if value != int(value):
        raise InputError(f"{where}: column '{column}': '{text}' is not a whole number of trials")
    return int(value)


def _ranges(numbers):
    """'2-5, 9, 12-14' for line numbers; long lists are cut short."""
    spans = []
    for n in sorted(int(n) for n in numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans[:4])
    return text + (f", ... ({len(numbers)} rows)" if len(spans) > 4 else "")


# ---------------------------------------------------------------------------------------------
# One device's data


@dataclass(frozen=True)
class Curve:
    """One device's switching counts, one entry per distinct current (sorted ascending).

    ``where`` says where the data came from, for error messages (e.g. ``"data.csv, lines 2-13"``).
    Build one from arrays with :meth:`from_counts`, which merges rows with equal currents.
    """

    current: np.ndarray
    trials: np.ndarray
    switched: np.ndarray
    device: str | None = None
    where: str = "data"

    @classmethod
    def from_counts(cls, current, trials, switched, device=None, where="data"):
        """Group counts by current: ``trials`` and ``switched`` are summed over equal currents.

        Raises ValueError unless the currents are finite, ``trials`` >= 1 and 0 <= ``switched`` <=
        ``trials`` (files are checked row by row before they get here).
        """
        current = np.asarray(current, dtype=float)
        trials, switched = np.asarray(trials), np.asarray(switched)
        if not (np.all(np.isfinite(current)) and np.all(trials >= 1) and np.all(switched >= 0)
                and np.all(switched <= trials) and current.shape == trials.shape == switched.shape):
            raise ValueError("a Curve needs equal-length arrays of finite currents, trials >= 1 and "
                             "0 <= switched <= trials")
        levels, inverse = np.unique(current, return_inverse=True)
        total = np.zeros(len(levels), dtype=np.int64)
        hits = np.zeros(len(levels), dtype=np.int64)
        np.add.at(total, inverse, np.asarray(trials, dtype=np.int64))
        np.add.at(hits, inverse, np.asarray(switched, dtype=np.int64))
        return cls(levels, total, hits, device, where)

    def check(self):
        """Raise :class:`InputError` unless the data can identify both I50 and sigma.

        The maximum-likelihood sigma is 0 (no finite fit) when the data are separated: no trial
        switched below some current and every trial switched above it, with at most one current in
        between; all-0 and all-1 data are the extreme cases.
        """
        if len(self.current) < 3:
            raise InputError(f"{self.where}: only {len(self.current)} distinct current(s) "
                             f"({', '.join(f'{c:g}' for c in self.current)}); a fit of I50 and sigma "
                             "needs at least 3")
        some = self.current[self.switched > 0]
        not_all = self.current[self.switched < self.trials]
        if len(some) == 0:
            raise InputError(f"{self.where}: no trial switched at any current, so the switching curve "
                             "cannot be located; measure at higher currents")
        if len(not_all) == 0:
            raise InputError(f"{self.where}: every trial switched at every current, so the switching "
                             "curve cannot be located; measure at lower currents")
        low, high = not_all.max(), some.min()
        if low < high:
            raise InputError(f"{self.where}: no trial switched up to {low:g} and every trial switched "
                             f"from {high:g} on, so the curve's width (sigma) cannot be estimated "
                             f"(its best fit is 0); measure at currents between {low:g} and {high:g}")
        if low == high:
            raise InputError(f"{self.where}: only one current ({low:g}) gives a switching "
                             "probability between 0 and 1, so the curve's width (sigma) cannot be "
                             f"estimated (its best fit is 0); measure more currents around {low:g}")

    def saturated_log_likelihood(self):
        """The log-likelihood of the saturated model (each current its own probability)."""
        s, f, n = self.switched, self.trials - self.switched, self.trials
        return float(np.sum(xlogy(s, s / n) + xlogy(f, f / n)))

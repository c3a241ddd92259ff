"""Device calibration: fit measured switching curves, map them onto spin neurons, verify those.

``spinemu calibrate`` runs the modules in order; ``docs/calibration.md`` is the spec.

- :mod:`.measurements`: read a switching CSV, check every row, group the counts by device
- :mod:`.fit`: one device's probit, logistic and thermal fits, with profile-likelihood intervals
- :mod:`.nonparametric`: its shape-free fit (a monotone spline in probit space)
- :mod:`.device_fit`: all of one device's fits and the model its data prefer by AIC
- :mod:`.population`: a file's calibration: the spread of I50 and sigma over its devices, the
  design's shape and every device's place on it
- :mod:`.shape`: shapes, their noise tables, and devices' locations on them
- :mod:`.mapping`: devices onto the spin neuron's theta and sigma codes
- :mod:`.verification`: emulated neurons swept on a backend against the device curve
- :mod:`.data_check`: the emulated shape against the measured counts
- :mod:`.report`: the JSON-able dicts of CALIB.json; :mod:`.calib_file` writes and reads the file
- :mod:`.synthetic`: SYNTHETIC data: from the probit model, and from devices of known shape
- :mod:`.plot`: the figure

Callers import the names below from the package; :mod:`.plot` alone is imported from its module,
so that only a plot loads matplotlib.
"""

from .calib_file import (
    noise_entry,
    noise_from_entry,
    read_neuron_codes,
    read_noise_table,
    write_calibration,
    write_output,
)
from .data_check import ALPHA, DataCheck, check_data
from .device_fit import FORMULAS, MODELS, DeviceFit, fit_device, fit_models
from .fit import ModelFit, ProbitFit, fit_probit
from .mapping import SIGMA_INPUT, MappedNeuron, Mapping, draw_devices, map_calibration, map_devices
from .measurements import Curve, Measurements, read_measurements
from .nonparametric import NonparametricFit, fit_nonparametric
from .population import Calibration, Population, calibrate, fit_population
from .report import calibration_report, mapping_report, verification_report
from .shape import Shape, locate, shape_of
from .synthetic import SYNTHETIC_DEVICES, SyntheticDevice, make_shape_synthetic, make_synthetic
from .verification import (
                         DEFAULT_TRIALS,
                         FALSE_ALARM,
                         TARGET,
                         NeuronCheck,
                         Verification,
                         consistency_p,
                         verify,
)

__all__ = [
    "Measurements", "Curve", "read_measurements",
    "MODELS", "FORMULAS", "ModelFit", "ProbitFit", "NonparametricFit", "DeviceFit", "fit_probit",
    "fit_nonparametric", "fit_models", "fit_device",
    "Population", "Calibration", "fit_population", "calibrate", "Shape", "shape_of", "locate",
    "SIGMA_INPUT", "MappedNeuron", "Mapping", "draw_devices", "map_devices", "map_calibration",
    "TARGET", "FALSE_ALARM", "DEFAULT_TRIALS", "NeuronCheck", "Verification",
    "consistency_p", "verify", "ALPHA", "DataCheck", "check_data",
    "calibration_report", "mapping_report", "verification_report",
    "write_calibration", "write_output", "read_neuron_codes", "noise_entry", "noise_from_entry",
    "read_noise_table",
    "make_synthetic", "make_shape_synthetic", "SYNTHETIC_DEVICES", "SyntheticDevice",
]

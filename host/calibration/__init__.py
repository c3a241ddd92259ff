"""Device calibration: fit measured switching curves, map them onto spin neurons, verify those.

``spinemu calibrate`` runs the modules in order; ``docs/calibration.md`` is the spec.

- :mod:`.measurements`: read a switching CSV, check every row, group the counts by device
- :mod:`.fit`: one device's probit, logistic and thermal fits, with profile-likelihood intervals
- :mod:`.population`: a file's calibration, with the spread of I50 and sigma over its devices
- :mod:`.mapping`: devices onto the spin neuron's theta and sigma codes
- :mod:`.verification`: emulated neurons swept on a backend against the device curve
- :mod:`.report`: the JSON-able dicts of CALIB.json; :mod:`.calib_file` writes and reads the file
- :mod:`.synthetic`: SYNTHETIC data drawn from the probit model
- :mod:`.plot`: the figure

Callers import the names below from the package; :mod:`.plot` alone is imported from its module,
so that only a plot loads matplotlib.
"""

from .calib_file import read_neuron_codes, write_calibration, write_output
from .fit import MODELS, DeviceFit, ModelFit, ProbitFit, fit_device, fit_models, fit_probit
from .mapping import SIGMA_INPUT, MappedNeuron, Mapping, draw_devices, map_calibration, map_devices
from .measurements import Curve, Measurements, read_measurements
from .population import Calibration, Population, calibrate, fit_population
from .report import calibration_report, mapping_report, verification_report
from .synthetic import make_synthetic
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
    "MODELS", "ModelFit", "ProbitFit", "DeviceFit", "fit_probit", "fit_models", "fit_device",
    "Population", "Calibration", "fit_population", "calibrate",
    "SIGMA_INPUT", "MappedNeuron", "Mapping", "draw_devices", "map_devices", "map_calibration",
    "TARGET", "FALSE_ALARM", "DEFAULT_TRIALS", "NeuronCheck", "Verification",
    "consistency_p", "verify",
    "calibration_report", "mapping_report", "verification_report",
    "write_calibration", "write_output", "read_neuron_codes",
    "make_synthetic",
]

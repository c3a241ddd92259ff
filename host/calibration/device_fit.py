"""One device's fits of every model, and the model its data prefer by AIC."""

from dataclasses import dataclass, field

from spinemu.host.errors import InputError

from . import fit, nonparametric
from .measurements import Curve

__all__ = ["MODELS", "FORMULAS", "DeviceFit", "fit_models", "fit_device"]

MODELS = (*fit.PARAMETRIC, "nonparametric")
FORMULAS = {**fit.FORMULAS, "nonparametric": nonparametric.FORMULA}


@dataclass(frozen=True)
class DeviceFit:
    """All model fits of one device's curve. ``refused`` holds, for a model that the data cannot
    identify (only the nonparametric shape can be refused alone), the reason."""

    curve: Curve
    fits: dict
    refused: dict = field(default_factory=dict)

    @property
    def probit(self):
        """The :class:`~spinemu.host.calibration.ProbitFit`."""
        return self.fits["probit"]

    @property
    def preferred_model(self):
        """The fitted model with the smallest AIC."""
        return min(self.fits, key=lambda name: self.fits[name].aic)


def fit_device(curve, level=0.95):
    """Fit every model in ``MODELS`` to one device's :class:`Curve`; returns a :class:`DeviceFit`.

    The probit is a :class:`~spinemu.host.calibration.ProbitFit` with intervals at ``level``. Data
    that cannot identify a nonparametric shape get its refusal (the reason) in ``refused``; data
    that no model can fit raise :class:`InputError`.
    """
    fits = fit.fit_parametric(curve, level)
    try:
        fits["nonparametric"] = nonparametric.fit_nonparametric(curve)
    except InputError as error:
        return DeviceFit(curve, fits, {"nonparametric": str(error)})
    return DeviceFit(curve, fits)


def fit_models(curve, level=0.95):
    """``{name: ModelFit}`` of every model of ``MODELS`` that the data identify (:func:`fit_device`)."""
    return fit_device(curve, level).fits

"""Mapping a device calibration onto neuron codes, and verifying the emulated neuron against it."""

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

from spinemu.host import calibration as cal
from spinemu.host.cli import calibrate as calibrate_cmd
from spinemu.host.cli import main
from spinemu.host.errors import InputError
from spinemu.sim import golden

DATA = Path(cal.__file__).parents[1] / "data"
SINGLE = DATA / "example_switching.csv"
POPULATION = DATA / "example_population.csv"


@pytest.fixture(scope="module")
def single():
    return cal.calibrate(cal.read_measurements(SINGLE, unit="mA"))


@pytest.fixture(scope="module")
def population():
    return cal.calibrate(cal.read_measurements(POPULATION, unit="mA"))


def _wrong_sigma(mapping, factor):
    """The mapping with every neuron's sigma code off by ``factor`` (a deliberately wrong mapping)."""
    return dataclasses.replace(mapping, neurons=tuple(
        dataclasses.replace(n, sigma_code=round(n.sigma_code * factor)) for n in mapping.neurons))


# ---------------------------------------------------------------------------------------------
# Mapping


def test_mapping_arithmetic_on_a_known_case():
    """theta = (I50 - offset) * scale and sigma * scale, rounded to Q16.8 / UQ8.8 codes."""
    mapping = cal.map_devices([("device fit", "X", 1.20001, 0.0801)], [1.0, 1.1, 1.4],
                             scale=400.0, offset=1.1, unit="mA")
    (n,) = mapping.neurons
    # theta = 0.10001 * 400 = 40.004 -> code round(40.004 * 256) = 10241; sigma = 32.04 -> 8202
    assert (n.theta_code, n.sigma_code) == (10241, 8202)
    assert n.theta_exact == pytest.approx(40.004) and n.sigma_exact == pytest.approx(32.04)
    assert mapping.theta(n) == 10241 / 256 and mapping.sigma(n) == 8202 / 256
    np.testing.assert_array_equal(mapping.input_code([1.0, 1.1, 1.2, 1.40124]), [-40, 0, 40, 120])
    assert mapping.current_of(40) == pytest.approx(1.2)
    np.testing.assert_array_equal(mapping.input_range(), np.arange(-40, 121))

    head, neurons, q = cal.mapping_report(mapping)
    assert head["scale"] == 400.0 and head["offset"] == 1.1 and head["formats"]["sigma"] == "UQ8.8"
    assert neurons[0]["theta_error"] == pytest.approx((10241 / 256 - 40.004) / 400)  # in mA
    assert neurons[0]["sigma_rel_error"] == pytest.approx(8202 / 256 / 32.04 - 1)
    assert q["max_theta_abs_error"] == pytest.approx(abs(10241 / 256 - 40.004) / 400)
    assert q["input_step"] == 1 / 400
    assert q["max_input_rounding_error"] == pytest.approx(2 * ndtr(0.25 / (8202 / 256)) - 1)
    a = np.arange(-40, 121)
    assert q["max_curve_error"] == pytest.approx(np.max(np.abs(
        ndtr((a - 10241 / 256) / (8202 / 256)) - ndtr((a - 40.004) / 32.04))))


def test_default_mapping_puts_the_nominal_device_at_theta_0_and_sigma_32(single):
    fit = single.devices[0].probit
    mapping = cal.map_calibration(single)
    assert mapping.offset == fit.i50 and mapping.scale == pytest.approx(32 / fit.sigma)
    assert [(n.theta_code, n.sigma_code) for n in mapping.neurons] == [(0, 32 * 256)]
    # without a population every neuron is the one fitted device
    mapping = cal.map_calibration(single, neurons=5, scale=500.0, offset=1.0)
    codes = {(n.theta_code, n.sigma_code) for n in mapping.neurons}
    assert codes == {(round((fit.i50 - 1.0) * 500 * 256), round(fit.sigma * 500 * 256))}


def test_out_of_range_values_are_clear_errors(single, tmp_path, capsys):
    with pytest.raises(InputError) as caught:
        cal.map_calibration(single, scale=10_000.0)
    message = str(caught.value)
    assert str(SINGLE) in message and "neuron 0 (device fit)" in message, message
    assert "= 805.4 input units" in message and "outside the UQ8.8 format" in message, message
    lo, hi = map(float, re.search(r"a --scale from (\S+) to (\S+) fits", message).groups())
    # the suggested scales really fit, and just beyond them they do not
    cal.map_calibration(single, scale=hi * 0.999)
    cal.map_calibration(single, scale=lo * 1.001)
    with pytest.raises(InputError):
        cal.map_calibration(single, scale=hi * 1.01)
    # an offset far from the device pushes its threshold, or the currents, out of the formats
    with pytest.raises(InputError, match=r"\(mu 1.2055 mA - offset -40 mA\) x scale 1000 = 4.121e\+04 "
                                        r"input units: theta = .* outside the Q16.8 format"):
        cal.map_calibration(single, scale=1000.0, offset=-40.0)
    with pytest.raises(InputError, match=r"current 1.4 mA maps to input 32800, outside the Q16.0 input"):
        cal.map_calibration(single, scale=1000.0, offset=-31.4)
    for option, problem in [(["--scale", "0"], "--scale must be a positive number"),
                            (["--scale", "nan"], "--scale must be a positive number"),
                            (["--seed", "-1"], "--seed must be 0..2^64-1"),
                            (["--neurons", "0"], "--neurons must be at least 1"),
                            (["--verify", "2"], "--verify must be 1..1"),
                            (["--trials", "0"], "--trials must be at least 1")]:
        assert main(["calibrate", str(SINGLE), "--out", str(tmp_path / "c.json"), *option]) == 2
        assert f"spinemu calibrate: error: {problem}" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_population_draws_are_seeded_and_carry_the_population_spread(population):
    fits = [d.probit for d in population.devices]
    draws = cal.draw_devices(population, 4000, seed=5)
    assert draws == cal.draw_devices(population, 4000, seed=5)
    assert draws != cal.draw_devices(population, 4000, seed=6)
    assert {source for source, *_ in draws} == {"population draw"}
    i50 = np.array([d[2] for d in draws])
    log_sigma = np.log([d[3] for d in draws])
    measured_i50 = np.array([f.i50 for f in fits])
    measured_log_sigma = np.log([f.sigma for f in fits])
    # the draws' mean and spread are the measured devices' (4000 draws: well within 5%)
    assert abs(i50.mean() - measured_i50.mean()) < 4 * measured_i50.std(ddof=1) / math.sqrt(4000)
    assert i50.std() == pytest.approx(measured_i50.std(ddof=1), rel=0.05)
    assert log_sigma.std() == pytest.approx(measured_log_sigma.std(ddof=1), rel=0.05)
    assert np.corrcoef(i50, log_sigma)[0, 1] == pytest.approx(
        np.corrcoef(measured_i50, measured_log_sigma)[0, 1], abs=0.05)
    # so an emulated array carries device-to-device variation in its codes
    mapping = cal.map_calibration(population, neurons=50, seed=5)
    thetas = np.array([mapping.theta(n) for n in mapping.neurons])
    assert len({n.theta_code for n in mapping.neurons}) == 50
    assert thetas.std() == pytest.approx(measured_i50.std(ddof=1) * mapping.scale, rel=0.35)
    default = cal.map_calibration(population)
    assert default.neurons == cal.map_calibration(population, neurons=8, seed=1).neurons


# ---------------------------------------------------------------------------------------------
# Verification


def test_golden_verification_meets_the_target_on_the_shipped_examples(single, population):
    v = cal.verify(cal.map_calibration(single))
    assert v.backend == "golden" and v.trials == 62_500 and v.points >= 41
    assert v.sampling_sd <= 0.002
    assert v.max_abs_error <= cal.TARGET and v.exact_max_abs_error <= 0.001
    assert v.consistency_p >= 0.001 and v.passed
    # the device curve is taken at the current each input represents exactly
    check = v.checks[0]
    fit = single.devices[0].probit
    np.testing.assert_allclose(check.device, ndtr(check.a / v.checks[0].neuron.sigma_exact))
    np.testing.assert_allclose(check.device, fit.probability(check.current), atol=1e-12)
    # a population: the first 4 neurons, each against its own drawn device
    v = cal.verify(cal.map_calibration(population, neurons=6))
    assert [c.neuron.index for c in v.checks] == [0, 1, 2, 3] and v.passed
    assert v.max_abs_error <= cal.TARGET


@pytest.mark.parametrize("factor", [1.3, 1 / 1.3])
def test_verification_fails_for_a_wrong_mapping(single, factor):
    """A sigma off by 30% is caught by the exact curve and plainly by the measured one."""
    v = cal.verify(_wrong_sigma(cal.map_calibration(single), factor), trials=10_000)
    assert not v.passed
    assert v.exact_max_abs_error > 0.04 and v.max_abs_error > 0.04


def test_consistency_catches_a_backend_that_is_off(single):
    """Counts from a neuron whose sigma is 5% off the design's fail against the design's exact curve."""
    mapping = cal.map_calibration(single)
    right = cal.verify(mapping)
    off = cal.verify(_wrong_sigma(mapping, 1.05))
    assert right.passed and right.consistency_p > 0.01
    swapped = dataclasses.replace(right, checks=[
        dataclasses.replace(right.checks[0], switched=off.checks[0].switched)])
    assert swapped.exact_max_abs_error == right.exact_max_abs_error
    assert swapped.consistency_p < 1e-6 and not swapped.passed
    # the test itself: an impossible count is p = 0, an exact count is p = 1
    assert cal.consistency_p([1], 100, [0.0]) == 0 and cal.consistency_p([50], 100, [0.5]) == 1


@pytest.mark.parametrize("backend", [
    "amaranth", "icarus",
    pytest.param("verilator", marks=pytest.mark.slow)])  # a first Verilator build takes 13-30 s
def test_rtl_backends_count_the_golden_models_spins(population, backend):
    """Same seed, same noise: the simulated design switches exactly as the golden model says."""
    mapping = cal.map_calibration(population, neurons=3, seed=4)
    kwargs = dict(trials=300, neurons=1, seed=77, grid_points=5)
    rtl = cal.verify(mapping, backend=backend, **kwargs)
    reference = cal.verify(mapping, backend="golden", **kwargs)
    np.testing.assert_array_equal(rtl.checks[0].a, reference.checks[0].a)
    np.testing.assert_array_equal(rtl.checks[0].switched, reference.checks[0].switched)
    assert rtl.cycles >= len(rtl.checks[0].a) * 300
    assert 0 < rtl.checks[0].switched.sum() < len(rtl.checks[0].a) * 300


# ---------------------------------------------------------------------------------------------
# The command


def test_cli_maps_verifies_and_plots(tmp_path, capsys):
    out, plot = tmp_path / "calib.json", tmp_path / "curve.png"
    assert main(["calibrate", str(SINGLE), "--out", str(out), "--plot", str(plot), "--unit", "mA",
                 "--trials", "20000"]) == 0
    report = json.loads(out.read_text())
    assert report["mapping"]["offset"] == report["i50"]
    assert report["mapping"]["scale"] == pytest.approx(32 / report["sigma"])
    (neuron,) = report["neurons"]
    assert (neuron["theta_code"], neuron["sigma_code"]) == (0, 8192) and neuron["sigma_a"] == 32
    assert set(report["quantization"]) >= {"max_theta_abs_error", "max_sigma_rel_error",
                                           "input_step", "max_input_rounding_error"}
    v = report["verification"]
    assert v["backend"] == "golden" and v["trials_per_point"] == 20000 and v["pass"] is True
    assert v["max_abs_error"] <= v["target"] == 0.01 and v["exact_max_abs_error"] < 0.001
    assert v["sampling_sd"] == pytest.approx(0.5 / math.sqrt(20000), rel=0.01)
    assert len(v["per_neuron"][0]["switched"]) == v["points"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "verification on golden" in printed and "target 0.01: pass" in printed

    assert main(["calibrate", str(POPULATION), "--out", str(out), "--neurons", "6", "--seed", "9",
                 "--trials", "5000", "--verify", "2"]) == 0
    report = json.loads(out.read_text())
    assert [n["index"] for n in report["neurons"]] == list(range(6))
    assert {n["source"] for n in report["neurons"]} == {"population draw"}
    assert report["mapping"]["seed"] == 9 and report["verification"]["neurons"] == [0, 1]
    mapping = cal.map_calibration(cal.calibrate(cal.read_measurements(POPULATION)), neurons=6, seed=9)
    assert [n["theta_code"] for n in report["neurons"]] == [n.theta_code for n in mapping.neurons]


def test_cli_exits_1_when_the_verification_fails(tmp_path, capsys, monkeypatch):
    def wrong(*args, **kwargs):
        return _wrong_sigma(cal.map_calibration(*args, **kwargs), 1.3)
    monkeypatch.setattr(calibrate_cmd, "map_calibration", wrong)
    out = tmp_path / "calib.json"
    assert main(["calibrate", str(SINGLE), "--out", str(out), "--trials", "2000"]) == 1
    assert json.loads(out.read_text())["verification"]["pass"] is False
    printed = capsys.readouterr().out
    assert "verification FAILED: the exact emulated curve is" in printed


def test_exact_curve_is_the_golden_models(single):
    """The exact emulated curve is golden.switch_probability at every input of the measured range."""
    mapping = cal.map_calibration(single, scale=300.0, offset=1.25)
    check = cal.verify(mapping, trials=10).checks[0]
    n = mapping.neurons[0]
    np.testing.assert_array_equal(check.exact_a, np.arange(-75, 46))
    exact = golden.switch_probability(check.exact_a, n.theta_code, n.sigma_code, mapping.fmt)
    np.testing.assert_array_equal(check.exact_all, exact)

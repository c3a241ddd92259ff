"""Training: determinism, the integer export (equal to the quantized network and to the golden
model), calibrations, neurons with a non-Gaussian noise table, the command, and the shipped default
model."""

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from noise_schedule import schedule
from spinemu.hdl.memory_map import NOISE_STREAMS, EngineConfig, check_fits
from spinemu.hdl.model_image import ModelImage
from spinemu.hdl.noise_table import from_cdf, gaussian
from spinemu.host.calibration import noise_entry, read_noise_table
from spinemu.host.cli import main
from spinemu.host.datasets import load_digits
from spinemu.host.errors import InputError
from spinemu.host.models import DEFAULT_MODEL
from spinemu.host.train import (
    DENSITY_FLOOR,
    FORMAT,
    FloatNetwork,
    NoiseShape,
    TrainConfig,
    _Net,
    companion_path,
    export,
    float_noise,
    load_calibration,
    load_companion,
    sample_counts,
    save_companion,
    train,
)
from spinemu.sim import golden
from spinemu.sim.engine_model import run_jobs

TINY = TrainConfig(hidden=(12, 10), epochs=2, batch=128, samples=2, classifier_epochs=1)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _random_net(sizes, seed, codes=None):
    import torch
    generator = torch.Generator().manual_seed(seed)
    input_scale = np.r_[np.full(sizes[0] // 2, 1 / 16), np.ones(sizes[0] - sizes[0] // 2)]
    net = _Net(sizes, input_scale, codes, FORMAT, 8, generator)
    with torch.no_grad():
        for b in net.biases:
            b.copy_(torch.randn(b.shape, generator=generator))
    return net


def _calibration_file(path, neurons, formats=None, noise=None):
    data = {"mapping": {"formats": formats or {"a": "Q16.0", "theta": "Q16.8", "sigma": "UQ8.8"}},
            "neurons": [{"index": i, "theta_code": t, "sigma_code": s}
                        for i, (t, s) in enumerate(neurons)]}
    if noise is not None:
        data["noise"] = noise_entry(noise)
    path.write_text(json.dumps(data))
    return path


@functools.cache
def _thermal():
    """A thermal-activation-like shape: the minimum-Gumbel law standardized to mean 0, variance 1,
    ``F(z) = 1 - exp(-exp(z pi / sqrt 6 - gamma))``: skewed, with a short right tail (no code
    above z = 2.75) and a long left one."""
    gamma, scale = 0.5772156649015329, math.pi / math.sqrt(6)
    return from_cdf("thermal", lambda z: -np.expm1(-np.exp(np.asarray(z) * scale - gamma)))


def _population(count=50, seed=5):
    rng = np.random.default_rng(seed)
    return [(int(t), int(s)) for t, s in zip(rng.integers(-5000, 5000, count),
                                             rng.integers(6000, 10000, count), strict=True)]


# ---------------------------------------------------------------------------------------------
# Determinism


def test_training_is_deterministic(digits):
    a = train(digits, TINY, progress=False)
    b = train(digits, TINY, progress=False)
    c = train(digits, TrainConfig(**{**TINY.__dict__, "seed": 1}), progress=False)
    assert a.model.to_bytes() == b.model.to_bytes() != c.model.to_bytes()
    assert np.array_equal(a.history["loss"], b.history["loss"])
    assert a.model.sizes == (128, 12, 10, 64) and a.model.fmt == EngineConfig().fmt
    assert a.model.input_bits == 5 and a.model.weight_bits == 8


def test_train_command_writes_model_companion_and_curve(tmp_path, capsys):
    out = tmp_path / "m.bin"
    args = ["train", "--out", str(out), "--hidden", "8", "--epochs", "2", "--batch", "256",
            "--train-samples", "1", "--classifier-epochs", "1", "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "128 -> 8 -> 64" in text and f"wrote {out}" in text
    data = out.read_bytes()
    companion = load_companion(companion_path(out), data)
    assert companion.meta["sizes"] == [128, 8, 64] and companion.meta["dataset"] == "digits"
    assert len(companion.history["loss"]) == 2
    assert (tmp_path / "m.png").stat().st_size > 1000
    assert main(args[:2] + [str(tmp_path / "m2.bin")] + args[3:]) == 0
    assert (tmp_path / "m2.bin").read_bytes() == data           # same arguments, same bytes
    # an evaluation of the little model runs end to end on the float model
    assert main(["evaluate", "--model", str(out), "--backend", "float", "--count", "10",
                 "--samples", "2"]) == 0
    # a companion written for another model is refused
    (tmp_path / "m2.npz").write_bytes(companion_path(DEFAULT_MODEL).read_bytes())
    assert main(["evaluate", "--model", str(tmp_path / "m2.bin"), "--count", "5"]) == 2
    assert "written for another model image" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--hidden", "8,x"], "--hidden must be one or more layer sizes"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--weight-bits", "9"], "--weight-bits must be 2..8"),
    (["--qat-fraction", "1.5"], "--qat-fraction must be 0..1"),
])
def test_train_command_refuses_bad_options(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "m.bin"), "--quiet", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.bin").exists()


# ---------------------------------------------------------------------------------------------
# The integer export


@pytest.mark.parametrize("calibrated", [False, True])
def test_export_equals_the_quantized_network(tmp_path, calibrated):
    """(W x + B - theta) / sigma of the exported integers is the quantized forward pass's u."""
    import torch
    sizes = (128, 24, 16, 64)
    codes = None
    if calibrated:
        neurons = [(int(t), int(s)) for t, s in zip(np.arange(-7, 8) * 300, 6000 + 317 *
                                                    np.arange(15), strict=True)]
        codes = load_calibration(_calibration_file(tmp_path / "c.json", neurons), sizes)
    net = _random_net(sizes, seed=4, codes=codes)
    model = export(net, sizes, 5, 8)
    rng = np.random.default_rng(0)
    for l in range(len(sizes) - 1):
        x = rng.integers(0, 17 if l == 0 else 2, size=(50, sizes[l]))
        if l == 0:
            x[:, 64:] = rng.integers(0, 2, size=(50, 64))
        with torch.no_grad():
            w, b = net.layer(l, quantize=True)
            u = (torch.tensor(x, dtype=torch.float32) @ w.T + b).double().numpy()
        a = x @ model.weights[l].T + model.bias[l]
        u_int = (a - model.theta[l] / 256) / (model.sigma[l] / 256)
        assert np.allclose(u, u_int, rtol=1e-5, atol=1e-4)
        if calibrated:
            assert np.array_equal(model.theta[l], codes.theta[l])
            assert np.array_equal(model.sigma[l], codes.sigma[l])
        else:
            assert np.all(model.theta[l] == 0)
            # every neuron's largest weight uses the whole 8-bit range (or sigma is at its top)
            top = np.abs(model.weights[l]).max(axis=1)
            assert np.all((top >= 126) | (model.sigma[l] == FORMAT.sigma.max_code))


@pytest.mark.parametrize("shape", ["gaussian", "thermal"])
def test_integer_model_with_the_design_noise_is_the_golden_model(digits, tmp_path, shape):
    """The float sampling procedure, run on the exported integers with the design's noise codes
    (its documented schedule, drawn from the image's table), counts exactly the golden model's
    spins."""
    calibration = None
    if shape == "thermal":
        calibration = _calibration_file(tmp_path / "c.json", _population(), noise=_thermal())
    model = train(digits, TINY, calibration, progress=False).model
    assert model.noise == (gaussian() if calibration is None else _thermal())
    rng = np.random.default_rng(2)
    jobs, samples, streams = 12, 9, NOISE_STREAMS
    inputs = np.c_[rng.integers(0, 17, size=(jobs, 64)), rng.integers(0, 2, size=(jobs, 64))]
    seeds = [int(s) for s in rng.integers(0, 1 << 63, size=jobs)]
    sizes = model.sizes
    per_job = [schedule(seed, streams, sizes[1:], samples, model.noise) for seed in seeds]
    layers = len(sizes) - 1
    noise = [np.array([[codes[s * layers + l] for s in range(samples)] for codes in per_job]) / 256
             for l in range(layers)]                       # (jobs, samples, N_l) a layer
    theta = [t / 256 for t in model.theta]
    sigma = [g / 256 for g in model.sigma]
    mine = sample_counts(model.weights, model.bias, theta, sigma, inputs, noise)
    assert np.array_equal(mine, run_jobs(model, inputs, seeds, samples))
    assert 0 < mine.sum() < jobs * samples * sizes[-1]


# ---------------------------------------------------------------------------------------------
# Calibrations


def test_calibration_neurons_are_dealt_in_order(tmp_path):
    path = _calibration_file(tmp_path / "c.json", [(10, 8000), (-20, 9000), (30, 10000)])
    codes = load_calibration(path, (128, 4, 2))
    assert codes.theta[0].tolist() == [10, -20, 30, 10] and codes.theta[1].tolist() == [-20, 30]
    assert codes.sigma[0].tolist() == [8000, 9000, 10000, 8000]
    assert codes.sigma[1].tolist() == [9000, 10000] and codes.device_neurons == 3


def test_training_with_a_calibration_loads_its_codes(tmp_path, digits):
    sizes = (128, 12, 10, 64)
    path = _calibration_file(tmp_path / "c.json", _population())
    trained = train(digits, TINY, path, progress=False)
    codes = load_calibration(path, sizes)
    for l in range(3):
        assert np.array_equal(trained.model.theta[l], codes.theta[l])
        assert np.array_equal(trained.model.sigma[l], codes.sigma[l])
    assert trained.meta["calibration"]["device_neurons"] == 50
    assert codes.noise == trained.model.noise == gaussian()
    # a calibration that names the Gaussian table trains exactly as one without a table
    named = _calibration_file(tmp_path / "g.json", _population(), noise=gaussian())
    assert train(digits, TINY, named, progress=False).model.to_bytes() == trained.model.to_bytes()


def test_a_calibrate_file_is_accepted(tmp_path):
    calib = tmp_path / "pop.json"
    csv = Path(__file__).resolve().parents[1] / "host" / "data" / "example_population.csv"
    assert main(["calibrate", str(csv), "--unit", "mA", "--neurons",
                 "20", "--verify", "1", "--trials", "2000", "--out", str(calib)]) in (0, 1)
    codes = load_calibration(calib, (128, 16, 64))
    data = json.loads(calib.read_text())["neurons"]
    assert codes.sigma[0].tolist() == [n["sigma_code"] for n in data[:16]]
    assert codes.theta[1].tolist() == [data[(16 + i) % 20]["theta_code"] for i in range(64)]


@pytest.mark.parametrize("content,message", [
    ("{", "not JSON"),
    ("{}", "no 'neurons' list"),
    ('{"neurons": [{"theta_code": 0, "sigma_code": 1}]}', "mapping.formats.theta is missing"),
    ('{"mapping": {"formats": {"theta": "Q16.4", "sigma": "UQ8.8"}}, '
     '"neurons": [{"theta_code": 0, "sigma_code": 1}]}', "theta codes have 4 fraction bits"),
    ('{"mapping": {"formats": {"theta": "Q16.8", "sigma": "UQ8.8"}}, '
     '"neurons": [{"theta_code": 0, "sigma_code": 0}]}', "sigma_code 0 outside 1..65535"),
    ('{"mapping": {"formats": {"theta": "Q16.8", "sigma": "UQ8.8"}}, '
     '"neurons": [{"theta": 0}]}', "neurons[0] has no theta_code and sigma_code"),
])
def test_bad_calibrations_are_refused(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        load_calibration(path, (128, 4, 64))
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match="no such calibration file"):
        load_calibration(tmp_path / "none.json", (128, 4, 64))


# ---------------------------------------------------------------------------------------------
# Neurons with a non-Gaussian noise table


def test_shaped_expectation_is_the_cell_cdf_and_its_slope_the_density():
    """1 - F(-u) of the table's cell distribution forward, its density f(-u) backward (a finite
    difference inside each cell), floored where the density is tiny or zero."""
    import torch
    table = _thermal()
    shape = NoiseShape(table)
    edges, cdf = table.cell_cdf()
    step = edges[1] - edges[0]
    h = 1e-4 * step
    # points inside cells (away from the edges, where the density jumps), beyond the grid too
    u = (np.floor(np.random.default_rng(3).uniform(-9, 9, 4000) / step) + 0.5) * step
    u += np.random.default_rng(4).uniform(-0.4, 0.4, len(u)) * step
    x = torch.tensor(u, requires_grad=True)
    p = shape.expectation(x)
    p.sum().backward()
    assert np.allclose(p.detach().numpy(), 1 - np.interp(-u, edges, cdf), rtol=0, atol=1e-12)
    with torch.no_grad():
        fd = ((shape.expectation(torch.tensor(u + h)) - shape.expectation(torch.tensor(u - h)))
              / (2 * h)).numpy()
    cell = np.clip(np.floor((-u - edges[0]) / step).astype(int), 0, len(edges) - 2)
    density = np.where(np.abs(u) < 8, np.diff(cdf)[cell] / step, 0.0)
    grad = x.grad.numpy()
    body = density >= DENSITY_FLOOR
    assert np.allclose(fd[body], density[body], rtol=1e-6, atol=0)
    assert np.allclose(grad[body], density[body], rtol=1e-12, atol=0)
    assert np.all(grad[~body] == DENSITY_FLOOR)
    # the floor matters: no code lies above z = 2.75, so every u below -2.75 never fires
    assert np.all(p.detach().numpy()[u < -2.76] == 0) and np.any(u < -3)
    # float32, as in training, agrees; the sampled spin has the same backward pass
    x32 = torch.tensor(u, dtype=torch.float32, requires_grad=True)
    p32 = shape.expectation(x32)
    assert np.allclose(p32.detach().numpy(), p.detach().numpy(), atol=1e-6)
    spins = shape.spins(x32, torch.Generator().manual_seed(0))
    spins.sum().backward()
    assert np.allclose(x32.grad.numpy(), grad, rtol=1e-5)


def test_shaped_expectation_is_the_designs_switching_probability():
    """The training's 1 - F(-u) is the emulated neuron's exact P(spin) for a = sigma u + theta,
    within one code's mass (the cell distribution spreads each code over its cell); with the
    table's skew, F(u) instead of 1 - F(-u) would be far off."""
    import torch
    table = _thermal()
    codes, mass = table.pmf
    a = np.arange(-2000, 2001, 7)
    theta, sigma = 300 * 256 + 77, 255 * 256 // 3       # Q20.8 and UQ8.8 codes
    u = (a - theta / 256) / (sigma / 256)
    exact = golden.switch_probability(a, theta, sigma, FORMAT, table)
    trained = NoiseShape(table).expectation(torch.tensor(u)).numpy()
    assert np.abs(exact - trained).max() <= mass.max()
    flipped = np.interp(u, *table.cell_cdf())
    assert np.abs(exact - flipped).max() > 0.1


def test_shaped_noise_follows_the_table():
    """The float model's draws (and the training's sampled spins) follow the table's F: a
    Kolmogorov-Smirnov test at a 1e-3 false alarm rate; the Gaussian's draws stay numpy's normals."""
    import torch
    table = _thermal()
    edges, cdf = table.cell_cdf()
    seeds, sizes, samples = [11, 12, 13], (8, 300, 200, 500), 40
    draws = float_noise(seeds, sizes, samples, table)
    assert [d.shape for d in draws] == [(3, samples, n) for n in sizes[1:]]
    z = np.sort(np.concatenate([d.ravel() for d in draws]))
    n = len(z)
    ks = max(np.max(np.arange(1, n + 1) / n - np.interp(z, edges, cdf)),
             np.max(np.interp(z, edges, cdf) - np.arange(n) / n))
    assert ks < math.sqrt(-math.log(1e-3 / 2) / (2 * n))
    assert (z.min() * 256 >= table.min_code - 1) and (z.max() * 256 <= table.max_code + 1)
    for gauss in (None, gaussian()):
        normal = float_noise(seeds, sizes, samples, gauss)
        first = np.random.default_rng(11).standard_normal((samples, 1000))
        assert np.array_equal(np.concatenate([d[0] for d in normal], axis=1), first)
    # the training's spins at fixed u fire with 1 - F(-u), within 4.5 standard errors
    shape = NoiseShape(table)
    u = torch.linspace(-3, 3, 25, dtype=torch.float32).repeat(20000, 1)
    fired = shape.spins(u, torch.Generator().manual_seed(1)).mean(dim=0).numpy()
    expect = shape.expectation(u[0].double()).numpy()
    assert np.all(np.abs(fired - expect) <= 4.5 * np.sqrt(expect * (1 - expect) / 20000) + 1e-9)


def test_float_model_with_the_table_counts_like_the_golden_model(digits, tmp_path):
    """The float model on a thermal image's integers (u = (W x + B - theta) / sigma), drawing from
    the image's table, fires like the golden model: per-job mean differences of the output
    fractions average to zero (|t| < 4.5 over independent jobs); drawing Gaussian noise they do not."""
    calibration = _calibration_file(tmp_path / "c.json", _population(), noise=_thermal())
    model = train(digits, TINY, calibration, progress=False).model
    rng = np.random.default_rng(8)
    jobs, samples = 200, 64
    inputs = np.c_[rng.integers(0, 17, size=(jobs, 64)), rng.integers(0, 2, size=(jobs, 64))]
    seeds = [int(s) for s in rng.integers(0, 1 << 63, size=jobs)]
    weights = [w / (s[:, None] / 256) for w, s in zip(model.weights, model.sigma, strict=True)]
    bias = [(b - t / 256) / (s / 256)
            for b, t, s in zip(model.bias, model.theta, model.sigma, strict=True)]
    hardware = run_jobs(model, inputs, seeds, samples) / samples

    def t_statistic(noise):
        fired = FloatNetwork(weights, bias, noise).counts(inputs, seeds, samples) / samples
        per_job = (hardware - fired).mean(axis=1)
        return per_job.mean() / (per_job.std(ddof=1) / math.sqrt(jobs))

    assert abs(t_statistic(model.noise)) < 4.5
    assert abs(t_statistic(gaussian())) > 10


def test_training_with_a_shaped_calibration_exports_its_table(tmp_path, digits, capsys):
    """`spinemu train --calibration` with a thermal table: the image, its companion and the float
    model carry the calibration's table; the golden model and the float model run it."""
    calibration = _calibration_file(tmp_path / "c.json", _population(), noise=_thermal())
    table = read_noise_table(calibration)
    out = tmp_path / "m.bin"
    assert main(["train", "--out", str(out), "--hidden", "12,10", "--epochs", "2", "--batch",
                 "128", "--train-samples", "2", "--classifier-epochs", "1", "--quiet",
                 "--calibration", str(calibration)]) == 0
    assert f"noise table thermal (hash {table.hash:08x})" in capsys.readouterr().out
    data = out.read_bytes()
    model = ModelImage.from_bytes(data)
    assert model.noise.hash == table.hash and model.noise == _thermal()
    companion = load_companion(companion_path(out), data)
    assert companion.network.noise == table
    assert companion.meta["noise"]["shape"] == "thermal"
    assert companion.meta["noise"]["hash"] == f"{table.hash:08x}"
    # the same arguments give the same bytes; the library's train agrees with the command
    trained = train(digits, TINY, calibration, progress=False)
    assert trained.model.to_bytes() == data
    # a companion whose table was changed is refused
    save_companion(tmp_path / "bad.npz", trained, data)
    with np.load(tmp_path / "bad.npz") as f:
        arrays = dict(f)
    meta = json.loads(arrays["meta"].tobytes())
    meta["noise"]["hash"] = "00000000"
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez_compressed(f, **arrays)
    with pytest.raises(InputError, match="noise table's hash"):
        load_companion(tmp_path / "bad.npz")
    # the benchmark runs it on the golden model, the float model beside it
    assert main(["evaluate", "--model", str(out), "--count", "5", "--samples", "2"]) == 0


# ---------------------------------------------------------------------------------------------
# The shipped model


def test_shipped_model_fits_the_default_design_and_the_boards():
    data = DEFAULT_MODEL.read_bytes()
    model = ModelImage.from_bytes(data)
    assert model.sizes == (128, 256, 192, 64) and model.fmt == EngineConfig().fmt
    companion = load_companion(companion_path(DEFAULT_MODEL), data)
    assert companion.meta["config"] == {**TrainConfig().__dict__, "hidden": [256, 192]}
    assert companion.meta["calibration"] is None
    from spinemu.firmware.boards import BOARDS
    check_fits(model, BOARDS["ulx3s"].config)
    check_fits(model, BOARDS["icebreaker"].config)      # 1 lane of 8 inputs a cycle
    assert len(data) < 110_000 and companion_path(DEFAULT_MODEL).stat().st_size < 500_000


def test_shipped_float_model_is_the_integer_model_before_rounding():
    """The companion's float weights, put on each neuron's integer grid, give the image's (up to
    float32 rounding of values that lie on a half step)."""
    data = DEFAULT_MODEL.read_bytes()
    model = ModelImage.from_bytes(data)
    net = load_companion(companion_path(DEFAULT_MODEL), data).network
    for l in range(model.layers):
        s = model.sigma[l][:, None] / 256
        diff = np.clip(np.round(net.weights[l] * s), -128, 127) - model.weights[l]
        assert np.abs(diff).max() <= 1 and np.mean(diff != 0) < 1e-3


def test_cifar10_trains_and_evaluates_at_the_digits_engine_size(tmp_path):
    # A tiny archive in the real cifar-10-batches-py format, block-averaged to 8 x 8 at 16 levels:
    # the digits engine's 64 pixels + 64 mask bits; at 32 x 32 x 256 the pre-activations overflow.
    from spinemu.hdl.memory_map import EngineConfig, check_fits
    from spinemu.hdl.model_image import ModelImage
    from spinemu.host.cli import main
    from test_datasets import write_cifar

    data = tmp_path / "cifar-10-batches-py"
    write_cifar(data, per_batch=12, test=12)
    model = tmp_path / "m.bin"
    common = ["--dataset", "cifar10", "--data-dir", str(data), "--size", "8", "--levels", "16"]
    assert main(["train", *common, "--out", str(model), "--epochs", "1", "--hidden", "16",
                 "--classifier-epochs", "1", "--quiet"]) == 0
    image = ModelImage.from_bytes(model.read_bytes())
    assert image.sizes[0] == 128 and image.sizes[-1] == 64 and image.input_bits == 4  # 0..15
    check_fits(image, EngineConfig())  # runs on the default design
    report = tmp_path / "r.json"
    assert main(["evaluate", *common, "--model", str(model), "--samples", "2",
                 "--report", str(report)]) == 0
    assert report.exists()

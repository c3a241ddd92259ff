"""`spinemu model` and `spinemu reconstruct` end to end: files, backends agreeing, clear errors."""

import numpy as np
import pytest

from spinemu.hdl.memory_map import EngineConfig, job_cycles, job_inputs
from spinemu.hdl.model_image import ModelImage
from spinemu.host.cli import main
from spinemu.host.datasets import load_digits, split
from spinemu.host.jobs import job_seed
from spinemu.sim.engine_model import run_jobs

SHAPE = (128, 16, 64)  # digits: 64 pixels + 64 mask bits in, 64 pixels out


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.bin"
    assert main(["model", "random", "--shape", ",".join(map(str, SHAPE)), "--seed", "5",
                 "--out", str(path)]) == 0
    return path


def _reconstruct(model_file, out, *args):
    assert main(["reconstruct", "--model", str(model_file), "--out", str(out), *args]) == 0
    with np.load(out) as f:
        return dict(f)


def test_model_random_and_info(tmp_path, capsys):
    path = tmp_path / "sub" / "m.bin"
    assert main(["model", "random", "--shape", "20,12,6", "--seed", "3", "--input-bits", "4",
                 "--weight-bits", "6", "--out", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    model = ModelImage.from_bytes(path.read_bytes())
    assert model.sizes == (20, 12, 6) and model.input_bits == 4 and model.weight_bits == 6
    assert main(["model", "info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "20 -> 12 -> 6" in text and "4-bit unsigned" in text and "6-bit signed" in text
    assert f"MACs:          240 once per job (layer 1) + {12 * 6} per sample" in text
    assert f"size:          {path.stat().st_size:,} bytes" in text
    assert f"a Q{model.fmt.a_width}.0" in text and "sigma UQ8.8" in text


def test_model_random_is_reproducible(tmp_path):
    a, b, c = (tmp_path / f"{n}.bin" for n in "abc")
    for path, seed in ((a, "1"), (b, "1"), (c, "2")):
        main(["model", "random", "--shape", "8,4", "--seed", seed, "--out", str(path)])
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("shape", ["128", "128,x", "128,,64", "0,4", "4,70000", ""])
def test_bad_shapes_are_refused(shape, tmp_path, capsys):
    assert main(["model", "random", "--shape", shape, "--out", str(tmp_path / "m.bin")]) == 2
    err = capsys.readouterr().err
    assert "--shape must be two or more layer sizes" in err and repr(shape) in err
    assert not (tmp_path / "m.bin").exists()


@pytest.mark.parametrize("content,message", [
    (None, "no such model file"),
    (b"hello, not a model", "not a spinemu model image"),
])
def test_bad_model_files_are_named(content, message, tmp_path, capsys):
    path = tmp_path / "bad.bin"
    if content is not None:
        path.write_bytes(content)
    assert main(["model", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {message}" in err and "Traceback" not in err


def test_damaged_model_file_is_refused(model_file, tmp_path, capsys):
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(model_file.read_bytes()[:-10])
    assert main(["model", "info", str(damaged)]) == 2
    assert f"{damaged}: CRC mismatch" in capsys.readouterr().err


def test_golden_reconstruction(model_file, tmp_path):
    r = _reconstruct(model_file, tmp_path / "g.npz", "--count", "30", "--samples", "8",
                     "--seed", "7")
    digits = load_digits()
    indices = split(digits)[1][:30]
    np.testing.assert_array_equal(r["indices"], indices)
    images, mask = digits.images[indices], r["mask"]
    assert mask.shape == (30, 8, 8) and (mask[:, :4] == 1).all() and (mask[:, 4:] == 0).all()
    rec = r["reconstructed"]
    assert rec.dtype == np.float64 and rec.shape == (30, 8, 8)
    assert rec.min() >= 0 and rec.max() <= 1
    np.testing.assert_array_equal(rec[mask == 1], images[mask == 1] / 16)
    # Hidden pixels are the fraction of samples their spin fired, from the golden model.
    model = ModelImage.from_bytes(model_file.read_bytes())
    seeds = [job_seed(7, k) for k in range(30)]
    counts = run_jobs(model, job_inputs(images, mask), seeds, 8)
    np.testing.assert_array_equal(r["counts"], counts)
    np.testing.assert_array_equal(rec[mask == 0], (counts.reshape(30, 8, 8) / 8)[mask == 0])
    assert 0 < rec[mask == 0].mean() < 1
    np.testing.assert_array_equal(r["seeds"], seeds)
    assert r["samples"] == 8 and r["lanes"] == 4 and "cycles" not in r


def test_images_do_not_depend_on_count(model_file, tmp_path):
    args = ["--occlusion", "random", "--samples", "4", "--seed", "2"]
    few = _reconstruct(model_file, tmp_path / "few.npz", "--count", "3", *args)
    many = _reconstruct(model_file, tmp_path / "many.npz", "--count", "10", *args)
    for key in ("mask", "reconstructed", "counts"):
        np.testing.assert_array_equal(few[key], many[key][:3])
    assert (few["mask"].reshape(3, -1).sum(axis=1) == 32).all()
    assert len({m.tobytes() for m in many["mask"]}) > 1  # a fresh random mask per image


def test_amaranth_and_golden_reconstruct_the_same(model_file, tmp_path):
    args = ["--count", "3", "--samples", "5", "--occlusion", "left", "--seed", "11",
            "--lanes", "8"]
    golden = _reconstruct(model_file, tmp_path / "g.npz", *args)
    sim = _reconstruct(model_file, tmp_path / "a.npz", "--backend", "amaranth", *args)
    for key in ("indices", "mask", "reconstructed", "counts", "seeds"):
        np.testing.assert_array_equal(sim[key], golden[key])
    np.testing.assert_array_equal(sim["cycles"], [job_cycles(SHAPE, EngineConfig(lanes=8), 5)] * 3)
    assert sim["lanes"] == 8


def test_icarus_and_golden_reconstruct_the_same(model_file, tmp_path, capsys):
    args = ["--count", "2", "--samples", "2", "--occlusion", "top"]
    golden = _reconstruct(model_file, tmp_path / "g.npz", *args)
    rtl = _reconstruct(model_file, tmp_path / "i.npz", "--backend", "icarus", *args)
    np.testing.assert_array_equal(rtl["reconstructed"], golden["reconstructed"])
    np.testing.assert_array_equal(rtl["cycles"], [job_cycles(SHAPE, EngineConfig(lanes=4), 2)] * 2)
    captured = capsys.readouterr()
    assert f"wrote {tmp_path / 'i.npz'}" in captured.out
    assert "engine cycles per image" in captured.err


def test_model_that_does_not_fit_the_dataset(tmp_path, capsys):
    model = tmp_path / "small.bin"
    main(["model", "random", "--shape", "64,16,64", "--out", str(model)])
    assert main(["reconstruct", "--model", str(model), "--out", str(tmp_path / "r.npz")]) == 2
    err = capsys.readouterr().err
    assert f"{model}: the model has 64 inputs and 64 outputs (sizes 64-16-64)" in err
    assert "need 128 inputs" in err and not (tmp_path / "r.npz").exists()


@pytest.mark.parametrize("args,message", [
    (["--model", "/nonexistent/m.bin"], "/nonexistent/m.bin: no such model file"),
    (["--count", "0"], "--count must be 1..540"),
    (["--count", "541"], "--count must be 1..540"),
    (["--samples", "0"], "--samples must be 1..65535"),
    (["--lanes", "3"], "--lanes: lanes must be a power of two"),
    (["--seed", "-1"], "--seed must be 0..2^64-1"),
])
def test_bad_arguments_are_refused_clearly(args, message, model_file, tmp_path, capsys):
    argv = ["reconstruct", "--model", str(model_file), "--out", str(tmp_path / "r.npz"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_occlusion_is_refused(model_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reconstruct", "--model", str(model_file), "--out", str(tmp_path / "r.npz"),
              "--occlusion", "diagonal"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--occlusion: invalid choice: 'diagonal'" in err and "bottom" in err

"""`spinemu noise` end to end: files, backends, report, plot, and clear errors."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from spinemu.hdl.model_image import random_model
from spinemu.hdl.noise_table import logistic, thermal
from spinemu.host.cli import main
from spinemu.sim import golden


def test_golden_writes_codes_and_sigma(tmp_path):
    out = tmp_path / "n.npz"
    assert main(["noise", "--neurons", "3", "--samples", "5000", "--seed", "11",
                 "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["noise"].shape == (5000, 3) and np.issubdtype(f["noise"].dtype, np.integer)
        assert float(f["sigma"]) == 256.0
        np.testing.assert_array_equal(f["noise"], golden.noise_codes(11, 3, 5000))


def test_amaranth_backend_gives_the_golden_codes(tmp_path):
    out = tmp_path / "a.npz"
    assert main(["noise", "--backend", "amaranth", "--neurons", "2", "--samples", "1500",
                 "--seed", "4", "--ready", "0.5", "--out", str(out)]) == 0
    with np.load(out) as f:
        np.testing.assert_array_equal(f["noise"], golden.noise_codes(4, 2, 1500))


def test_report_and_plot_on_a_saved_file(tmp_path, capsys):
    out, png = tmp_path / "n.npz", tmp_path / "n.png"
    main(["noise", "--neurons", "2", "--samples", "200000", "--out", str(out)])
    capsys.readouterr()
    assert main(["noise", "--report", "--in", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "KS distance to discretized normal" in text and "all figures pass" in text
    assert "max |cross-correlation|" in text and "switching curve" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_fails_on_bad_noise(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    rng = np.random.default_rng(0)
    z = rng.random((200000, 1)) * 2 - 1  # uniform, not Gaussian
    np.savez(bad, noise=(2 * np.floor(z * 256 * 1.7 / 2) + 1).astype(int), sigma=256.0)
    assert main(["noise", "--report", "--in", str(bad)]) == 1
    assert "FAILED:" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--neurons", "0"], "--neurons must be 1..256, not 0"),
    (["--neurons", "300"], "--neurons must be 1..256, not 300"),
    (["--samples", "0"], "--samples must be at least 1"),
    (["--seed", "-3"], "seed must be an integer 0..2^64-1"),
    (["--report", "--in", "/nonexistent/x.npz"], "/nonexistent/x.npz: no such file"),
])
def test_bad_arguments_are_refused_clearly(args, message, capsys):
    assert main(["noise", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_not_a_noise_file(tmp_path, capsys):
    wrong = tmp_path / "w.npz"
    np.savez(wrong, other=np.zeros(3))
    assert main(["noise", "--report", "--in", str(wrong)]) == 2
    assert f"{wrong}: not a noise file" in capsys.readouterr().err


def test_module_entry_point_and_help():
    done = subprocess.run([sys.executable, "-m", "spinemu", "noise", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--backend {golden,amaranth,icarus,verilator}" in done.stdout
    done = subprocess.run([sys.executable, "-m", "spinemu", "--help"],
                          capture_output=True, text=True, check=True)
    assert "noise" in done.stdout


def test_a_table_by_name_or_file_draws_its_codes_and_is_judged_against_them(tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert main(["noise", "--table", "thermal", "--neurons", "2", "--samples", "300000",
                 "--report", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "KS distance to the table" in text and "all figures pass" in text
    with np.load(out) as f:
        np.testing.assert_array_equal(f["noise"], golden.noise_codes(1, 2, 300000, table=thermal()))
    # The same codes judged as the normal's fail (they are skewed), and as the logistic's too.
    assert main(["noise", "--report", "--in", str(out)]) == 1
    assert "FAILED" in capsys.readouterr().out
    image = tmp_path / "m.bin"
    image.write_bytes(dataclasses.replace(random_model((3, 2), seed=1),
                                          noise=logistic()).to_bytes())
    assert main(["noise", "--report", "--in", str(out), "--table", str(image)]) == 1
    assert "against the logistic table" in capsys.readouterr().out


def test_a_table_that_names_nothing_is_a_one_line_error(tmp_path, capsys):
    assert main(["noise", "--table", "gumbel"]) == 2
    assert "gumbel: neither a noise shape (gaussian, logistic, thermal) nor a file" in (
        capsys.readouterr().err)
    text = tmp_path / "x.txt"
    text.write_text("hello")
    assert main(["noise", "--table", str(text)]) == 2
    assert "not a CALIB.json or a model image" in capsys.readouterr().err

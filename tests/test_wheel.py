"""A built wheel carries every file the commands read: installed from it (not editable) into a fresh
environment, `spinemu demo` runs."""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # from a copy of the tree, so that setuptools' build/ stays out of the checkout
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "out", "*.egg-info", "__pycache__", ".pytest_cache"))
    # the test environment's setuptools builds it: nothing is downloaded
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--wheel-dir", str(out), str(source)])
    (path,) = out.glob("spinemu-*.whl")
    return path


def test_wheel_holds_the_data_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("spinemu/host/data/digits_model.bin", "spinemu/host/data/digits_model.npz",
                 "spinemu/sim/board/native/serve_main.cpp", "spinemu/sim/benches/engine_bench.py",
                 "spinemu/host/cli/__init__.py"):
        assert name in names, name


@pytest.mark.slow
def test_demo_runs_from_a_regular_install(wheel, tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
                .stdout.strip())
    # The test environment's packages, behind the fresh environment's own: a path in a .pth file
    # is searched, but the .pth files there (the editable spinemu's among them) are not run.
    (site / "test_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
          str(wheel)])
    where = _run([str(python), "-c", "import spinemu; print(spinemu.__file__)"],
                 cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(site), where
    env = {**os.environ, "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    result = _run([str(python), "-m", "spinemu", "demo", "--count", "2", "--samples", "2",
                   "--out", str(tmp_path / "demo")], cwd=tmp_path, env=env, timeout=900)
    assert "bit-exact: yes" in result.stdout
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 0

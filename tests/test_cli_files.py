"""What the commands read and write: a file that cannot be written, a model file whose header is
bad, and the formats of `model random` against the designs a user serves."""

import struct
import zlib

import pytest

from spinemu.firmware.boards import board
from spinemu.hdl.memory_map import check_fits
from spinemu.hdl.model_image import ModelError, ModelImage, random_model
from spinemu.host.cli import main
from spinemu.host.models import DEFAULT_MODEL


@pytest.fixture
def blocked(tmp_path):
    """A folder path that cannot be made: a regular file stands where its parent should be."""
    (tmp_path / "file").write_text("not a folder")
    return tmp_path / "file" / "sub"


@pytest.mark.parametrize("command", [
    ["reconstruct", "--model", "default", "--count", "2", "--samples", "2", "--out", "{}/r.npz"],
    ["evaluate", "--count", "2", "--samples", "2", "--report", "{}/r.json"],
    ["model", "random", "--shape", "8,4", "--out", "{}/m.bin"],
    ["noise", "--samples", "200", "--out", "{}/n.npz"],
])
def test_an_output_that_cannot_be_written_is_one_line(blocked, capsys, command):
    argv = [part.replace("{}", str(blocked)) for part in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"spinemu {argv[0]}: error: {blocked}") and "cannot write" in err


def test_a_bad_header_field_names_the_file(tmp_path, capsys):
    data = bytearray(DEFAULT_MODEL.read_bytes()[:-4])
    data[8] = 0                                    # input_bits, after magic, version and layers
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(data) + struct.pack("<I", zlib.crc32(data)))
    with pytest.raises(ModelError, match=f"^{path}: input_bits must be 1..16"):
        ModelImage.read(path)
    assert main(["model", "info", str(path)]) == 2
    assert f"{path}: input_bits must be 1..16" in capsys.readouterr().err


def test_random_models_have_the_served_designs_formats(tmp_path):
    """`spinemu serve` without --model serves the iCEBreaker's configuration: a random model of a
    shape it holds, made with the default arguments, must fit it."""
    path = tmp_path / "m.bin"
    assert main(["model", "random", "--shape", "128,128,64", "--out", str(path)]) == 0
    check_fits(ModelImage.read(path), board("icebreaker").config)


def test_a_random_model_too_wide_for_its_format_is_refused(capsys):
    with pytest.raises(ModelError):
        random_model((4096, 4), seed=1, fmt=board("icebreaker").config.fmt)
    assert main(["model", "random", "--shape", "4096,4", "--a-width", "16", "--out",
                 "unused.bin"]) == 2
    assert "--a-width" in capsys.readouterr().err

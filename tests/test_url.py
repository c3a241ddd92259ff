"""`spinemu reconstruct --url` and `spinemu evaluate --url`: the jobs through the host client on a
served design give what the golden model gives for the same arguments; nothing answering, a dropped
link and a design too small for the model are clear errors naming the URL."""

import json
import re
import socket

import numpy as np
import pytest

from protocol_traffic import CONFIG
from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import fitted_config, job_cycles, model_writes
from spinemu.hdl.model_image import ModelImage
from spinemu.hdl.protocol import write_bodies
from spinemu.host.cli import main
from spinemu.host.cli.demo import DEFAULT_INPUTS_PER_CYCLE
from spinemu.host.models import DEFAULT_MODEL
from spinemu.sim.board import ServeError, start_server

MODEL = ModelImage.read(DEFAULT_MODEL)       # the shipped digits model: 128-256-192-64
LANES = 4
ARGS = ["--count", "4", "--samples", "4", "--occlusion", "random", "--seed", "3"]
KEYS = ("indices", "mask", "reconstructed", "counts", "seeds", "samples", "lanes")


@pytest.fixture(scope="module")
def served():
    with start_server("golden", fitted_config(MODEL, LANES), MAX_PAYLOAD) as server:
        yield server


def _npz(command, out, *args):
    assert main([command, "--model", "default", "--out", str(out), *args]) == 0
    with np.load(out) as f:
        return dict(f)


def _fail(capsys, command, out, *args):
    assert main([command, "--model", "default", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not out.exists()
    return err


def _free_url():
    with socket.create_server(("127.0.0.1", 0)) as s:
        return f"socket://127.0.0.1:{s.getsockname()[1]}"


def test_reconstruct_on_a_served_design_equals_golden(served, tmp_path, capsys):
    golden = _npz("reconstruct", tmp_path / "g.npz", *ARGS)
    remote = _npz("reconstruct", tmp_path / "u.npz", "--url", served.url, *ARGS)
    for key in KEYS:
        assert np.array_equal(remote[key], golden[key]), key
    assert 0 < remote["reconstructed"][remote["mask"] == 0].mean() < 1
    # the cycles the design reported with each job
    np.testing.assert_array_equal(remote["cycles"],
                                  [job_cycles(MODEL.sizes, fitted_config(MODEL, LANES), 4)] * 4)
    assert f"on the design at {served.url}: 4 samples, 4 lanes" in capsys.readouterr().err


def test_evaluate_on_a_served_design_equals_golden(served, tmp_path):
    report = tmp_path / "u.json"
    golden = _npz("evaluate", tmp_path / "g.npz", *ARGS)
    remote = _npz("evaluate", tmp_path / "u.npz", "--url", served.url, "--report", str(report),
                  *ARGS)
    for key in KEYS + ("predicted",):
        assert np.array_equal(remote[key], golden[key]), key
    figures = json.loads(report.read_text())
    assert figures["backend"] == "url" and figures["url"] == served.url
    assert figures["lanes"] == LANES and "float_model" in figures


@pytest.mark.parametrize("command", ["reconstruct", "evaluate"])
def test_lanes_must_be_the_designs(command, served, tmp_path, capsys):
    err = _fail(capsys, command, tmp_path / "r.npz", "--url", served.url, "--lanes", "8", *ARGS)
    assert f"--lanes 8: the design at {served.url} has 4 lanes" in err


@pytest.mark.parametrize("command", ["reconstruct", "evaluate"])
def test_nothing_listening_is_a_clear_error(command, tmp_path, capsys):
    url = _free_url()
    err = _fail(capsys, command, tmp_path / "r.npz", "--url", url, *ARGS)
    assert f"cannot open {url}" in err and "is `spinemu serve` running" in err


def test_a_design_too_small_for_the_model_is_refused_with_the_reason(tmp_path, capsys):
    with start_server("golden", CONFIG, MAX_PAYLOAD) as server:
        err = _fail(capsys, "reconstruct", tmp_path / "r.npz", "--url", server.url, *ARGS)
    assert f"{server.url}: {DEFAULT_MODEL}: the model does not fit this design" in err
    assert "128 inputs, the design takes at most 16" in err


def test_a_dropped_link_is_a_clear_error(tmp_path, capsys):
    config = fitted_config(MODEL, LANES)
    server = start_server("golden", config, MAX_PAYLOAD)
    feed, answered = server.board.feed, [0]
    # ABORT, IDENTIFY, the model's WRITE frames and IDENTIFY (the noise table's hash) are answered,
    # each a frame; the board dies as the jobs come, and its socket closes
    last = 1 + 1 + len(write_bodies(model_writes(MODEL, config), config, MAX_PAYLOAD)) + 1

    def dying(data):
        if answered[0] >= last:
            raise ConnectionAbortedError("the board died")
        answer = feed(data)
        answered[0] += answer.count(0)
        return answer

    server.board.feed = dying
    try:
        err = _fail(capsys, "reconstruct", tmp_path / "r.npz", "--url", server.url, *ARGS)
    finally:
        with pytest.raises(ServeError, match="the board died"):
            server.stop()
    # the jobs are pipelined, so the break shows on whichever JOB was in hand: sent or awaited
    assert re.search(rf"the link to {re.escape(server.url)} failed while "
                     r"(sending|waiting for the answer to) JOB of job \d+", err), err


@pytest.mark.parametrize("command", ["reconstruct", "evaluate"])
def test_url_and_backend_are_exclusive(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--model", "default", "--out", str(tmp_path / "r.npz"),
              "--backend", "golden", "--url", "socket://127.0.0.1:1"])
    assert exit_.value.code == 2
    assert "argument --url: not allowed with argument --backend" in capsys.readouterr().err


@pytest.mark.slow
def test_reconstruct_on_the_native_verilator_board_equals_golden(tmp_path):
    # the demo's configuration (16 lanes), so the suite builds it once
    config = fitted_config(MODEL, 16, DEFAULT_INPUTS_PER_CYCLE)
    with start_server("verilator", config, MAX_PAYLOAD) as server:
        remote = _npz("reconstruct", tmp_path / "v.npz", "--url", server.url, *ARGS)
    golden = _npz("reconstruct", tmp_path / "g.npz", "--lanes", "16", *ARGS)
    for key in KEYS:
        assert np.array_equal(remote[key], golden[key]), key
    np.testing.assert_array_equal(remote["cycles"], [job_cycles(MODEL.sizes, config, 4)] * 4)

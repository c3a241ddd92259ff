"""The simulated board: the client end to end against the generated Verilog under Verilator (the
native board) and Icarus (the cocotb bench) and against the Amaranth simulation (counts equal to the
golden model), `spinemu serve` starting, printing its URL and stopping cleanly, and `spinemu
program` finding its tool or saying what to install."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from protocol_traffic import CONFIG, MAX_PAYLOAD
from spinemu.hdl.memory_map import job_cycles
from spinemu.hdl.model_image import random_model
from spinemu.host.cli import main
from spinemu.host.client import Client, LinkError
from spinemu.sim.board import start_server
from spinemu.sim.board.cocotb import RTLServer
from spinemu.sim.board.native import NativeServer
from spinemu.sim.engine_model import run_jobs

MODEL = random_model((7, 9, 4), seed=3, fmt=CONFIG.fmt)
SPINEMU = [sys.executable, "-m", "spinemu"]


def _end_to_end(server, jobs=8, samples=4, **options):
    rng = np.random.default_rng(jobs)
    x = rng.integers(0, 32, (jobs, 7))
    seeds = [int(s) for s in rng.integers(0, 2 ** 64, jobs, np.uint64)]
    with Client.connect(server.url, **options) as dev:
        assert dev.info.config == CONFIG and dev.info.hash_matches
        dev.load_model(MODEL)
        result = dev.run(x, seeds, samples)
        status = dev.status()
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, samples, CONFIG.lanes))
    assert (result.cycles == job_cycles(MODEL.sizes, CONFIG.lanes, samples)).all()
    assert result.link.resends == 0
    assert status.jobs == jobs and status.crc_errors == status.bad_requests == 0
    return result


def _rtl_board(simulator, kind):
    began = time.monotonic()
    server = start_server(simulator, CONFIG, MAX_PAYLOAD)
    assert isinstance(server, kind)
    try:
        _end_to_end(server, min_clock_hz=1000)
        # The design keeps its model between connections, as a board does; a second client works.
        with Client.connect(server.url) as dev:
            assert dev.status().jobs == 8
        # Stopping while a client is connected ends the simulator cleanly.
        dev = Client.connect(server.url, timeout=0.5, retries=0)
        server.stop(timeout=10)
        assert server.wait(0) and not server.running()
        with pytest.raises(LinkError):
            dev.status()
        dev.close()
    finally:
        server.stop()
    stats = server.stats()
    assert stats["connections"] == 3 and stats["bytes_out"] > 0
    return time.monotonic() - began


@pytest.mark.slow
def test_verilator_board_end_to_end():
    _rtl_board("verilator", NativeServer)


def test_icarus_board_end_to_end():
    _rtl_board("icarus", RTLServer)


def test_amaranth_board_end_to_end():
    with start_server("amaranth", CONFIG, MAX_PAYLOAD) as server:
        _end_to_end(server, jobs=3, samples=2, min_clock_hz=100)


def test_golden_board_once_stops_when_the_client_leaves():
    server = start_server("golden", CONFIG, MAX_PAYLOAD, once=True)
    with Client.connect(server.url) as dev:
        dev.identify()
    assert server.wait(5)
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=1).close()


def _spawn(*args):
    process = subprocess.Popen(SPINEMU + ["serve", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"connect to (socket://\S+)", line)
        if match:
            return process, match.group(1), lines
    process.kill()
    raise AssertionError("spinemu serve printed no URL:\n" + "".join(lines))


def test_serve_command_prints_the_url_and_stops_after_the_client_with_once():
    process, url, _ = _spawn("--backend", "golden", "--port", "0", "--once", "--network",
                             "7,9,4", "--lanes", "2")
    try:
        with Client.connect(url) as dev:
            assert dev.info.config.max_inputs == 7 and dev.info.config.lanes == 2
        out, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "stopped (the client disconnected)" in out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_command_stops_cleanly_on_a_signal(signum):
    process, url, _ = _spawn("--backend", "golden", "--port", "0")
    try:
        with Client.connect(url) as dev:
            dev.status()
        process.send_signal(signum)
        out, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "stopped (asked to stop)" in out


@pytest.mark.slow
def test_serve_command_runs_the_native_verilator_board_and_stops_it_on_ctrl_c():
    # Ctrl-C in a terminal signals the whole process group: spinemu and the simulator.
    process = subprocess.Popen(SPINEMU + ["serve", "--backend", "verilator", "--port", "0",
                                          "--network", "7,9,4", "--lanes", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        url, lines = None, []
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            lines.append(process.stdout.readline())
            assert lines[-1], "spinemu serve ended before printing its URL"
            match = re.search(r"connect to (socket://\S+)", lines[-1])
            url = match and match.group(1)
        assert "spinemu serve: native Verilator board, sized for 7-9-4" in lines[0]
        x, seeds = np.arange(14).reshape(2, 7), [5, 6]
        with Client.connect(url) as dev:
            assert dev.status().jobs == 0
            dev.load_model(MODEL)
            counts = dev.run(x, seeds, 3).counts
        np.testing.assert_array_equal(counts, run_jobs(MODEL, x, seeds, 3, 2))
        os.killpg(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, out
    assert "stopped (asked to stop)" in out


def test_serve_command_refuses_bad_options(capsys):
    assert main(["serve", "--backend", "golden", "--port", "70000"]) == 2
    assert main(["serve", "--backend", "golden", "--network", "7"]) == 2
    assert main(["serve", "--backend", "golden", "--board", "nosuchboard"]) == 2
    err = capsys.readouterr().err
    assert "--port must be 0..65535" in err and "--network" in err and "nosuchboard" in err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        assert main(["serve", "--backend", "golden", "--port", port, "--network", "7,4"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


# ---- spinemu program ---------------------------------------------------------------------------

def _fake_tool(folder, name):
    tool = folder / name
    tool.write_text(f'#!/bin/sh\necho "$0 $@" > "{folder}/called"\n')
    tool.chmod(0o755)
    return tool


def test_program_runs_the_programmer(tmp_path, monkeypatch, capsys):
    build = tmp_path / "build"
    build.mkdir()
    (build / "top.bin").write_bytes(b"bitstream")
    (build / "report.json").write_text('{"build_hash": "0x12345678"}')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "iceprog")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert main(["program", "--board", "icebreaker", "--bitstream", str(build), "--sram"]) == 0
    assert (bin_dir / "called").read_text().split()[1:] == ["-S", str(build / "top.bin")]
    assert "0x12345678" in capsys.readouterr().out
    _fake_tool(bin_dir, "openFPGALoader")            # preferred when both are there
    assert main(["program", "--board", "icebreaker", "--bitstream", str(build / "top.bin")]) == 0
    assert (bin_dir / "called").read_text().split()[1:] == ["-b", "icebreaker", "-f",
                                                            str(build / "top.bin")]


def test_program_without_a_programmer_says_what_to_install(tmp_path, monkeypatch, capsys):
    (tmp_path / "top.bit").write_bytes(b"bitstream")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["program", "--board", "ulx3s", "--bitstream", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "install openFPGALoader" in err and "iceprog" not in err
    assert str((tmp_path / "top.bit").resolve()) in err


def test_program_without_a_bitstream_says_how_to_build_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["program", "--board", "icebreaker"]) == 2
    err = capsys.readouterr().err
    assert "no bitstream at build/icebreaker/top.bin" in err
    assert "spinemu build --board icebreaker --out build/icebreaker" in err

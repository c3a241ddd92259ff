"""The simulated board: the client end to end against the generated Verilog under Verilator (the
native board) and Icarus (the cocotb bench) and against the Amaranth simulation (counts equal to the
golden model); on every backend a second client told at once that the board is in use, and a client
that leaves mid-job, with requests in flight behind the job and mid-frame, or right after an ABORT
of its own, leaving nothing for the next one (the board's flush: ABORT, ``sim/board/base.py``),
checked by a bare socket that sends no ABORT of its own and by the client; `spinemu serve`
starting, printing its URL and stopping cleanly, and `spinemu program` finding its tool or saying
what to install."""

import contextlib
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
from spinemu.firmware.boards import BOARDS
from spinemu.hdl.framing import DELIMITER, decode_frame, encode_frame
from spinemu.hdl.memory_map import (
    Region,
    fitted_config,
    input_writes,
    job_cycles,
    model_writes,
)
from spinemu.hdl.model_image import ModelImage, random_model
from spinemu.hdl.protocol import (
    ABORT_FRAME,
    RESPONSE_HEADER,
    STATUS_RESPONSE,
    WINDOW,
    Opcode,
    Status,
    job_body,
    job_input_bytes,
    nbytes,
    pack,
    read_body,
    request,
    run_body,
    unpack,
    write_bodies,
    write_body,
)
from spinemu.host.cli import main
from spinemu.host.client import Client, LinkError
from spinemu.host.models import DEFAULT_MODEL
from spinemu.sim.board import ServeError, base, start_server
from spinemu.sim.board.cocotb import RTLServer
from spinemu.sim.board.native import NativeServer
from spinemu.sim.engine_model import run_jobs

MODEL = random_model((7, 9, 4), seed=3, fmt=CONFIG.fmt)
SPINEMU = [sys.executable, "-m", "spinemu"]
#: Samples of the job a departed client leaves running: with LONG_MODEL, 12 x 10^6 cycles, about
#: 2 s on Verilator (the client leaves within a second) and hours on the other simulators unless
#: the flush's ABORT stops it.
LONG = 65535
LONG_MODEL = random_model((16, 16, 16), seed=4, fmt=CONFIG.fmt)


def _read_frame(sock):
    """The next frame from ``sock`` (with its delimiter), or what came before it closed."""
    got = b""
    while not got.endswith(bytes([DELIMITER])):
        chunk = sock.recv(1)
        if not chunk:
            break
        got += chunk
    return got


def _refused(server, speak=True):
    """A second client is told at once that the board is in use (within a chunk of simulated
    cycles), and its connection closed; ``speak``: a raw client sends a request first (else it is
    told after a second)."""
    began = time.monotonic()
    with pytest.raises(LinkError, match=f"the board at {re.escape(server.url)} is in use by "
                                        f"another client"):
        Client.connect(server.url)
    assert time.monotonic() - began < 3
    began = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        if speak:
            s.sendall(encode_frame(request(0, Opcode.IDENTIFY), MAX_PAYLOAD))
        assert _read_frame(s) == base.BUSY_ANSWER
        assert s.recv(1) == b""
    assert time.monotonic() - began < 3


def _status_of(answer):
    """The STATUS counters in ``answer`` (a frame), which must be OK."""
    payload = decode_frame(answer[:-1], MAX_PAYLOAD)
    assert payload[1] == Status.OK.value, payload.hex()
    return unpack(STATUS_RESPONSE, payload[nbytes(RESPONSE_HEADER):])


@contextlib.contextmanager
def _mid_job(server, model=LONG_MODEL, config=CONFIG, samples=LONG):
    """A client that loads ``model`` and an input and starts a RUN of ``samples``, then sends
    requests back to back behind it without reading their answers (RUNs, a JOB where one fits a
    frame, STATUS, IDENTIFY, READ, a WRITE of the layer count), within the window; on leaving the
    block, it sends half a frame and leaves while the job runs (the design holds the rest in its
    window). Yields ``(jobs, queued)``: the design's STATUS jobs count before the RUN, and the jobs
    it was sent (the RUN's and those queued behind it)."""
    x = np.arange(model.sizes[0]) % (1 << model.input_bits)
    bodies = write_bodies(model_writes(model, config) + input_writes(x), config, MAX_PAYLOAD)
    with socket.create_connection((server.host, server.port), timeout=60) as s:
        s.sendall(encode_frame(request(1, Opcode.STATUS), MAX_PAYLOAD))
        jobs = _status_of(_read_frame(s))["jobs"]
        for i, body in enumerate(bodies, 1):
            s.sendall(encode_frame(request(i % 200 + 1, Opcode.WRITE, body), MAX_PAYLOAD))
            _read_frame(s)
        queue = [request(201, Opcode.RUN, run_body(1, samples)),
                 request(202, Opcode.RUN, run_body(2, 2)), request(203, Opcode.STATUS),
                 request(204, Opcode.IDENTIFY), request(205, Opcode.READ, read_body(0, 1))]
        queued = 2
        if 2 + 10 + job_input_bytes(model.sizes[0], config.input_bits) <= MAX_PAYLOAD:
            queue.append(request(206, Opcode.JOB, job_body(3, 2, x, config.input_bits)))
            queued += 1
        queue.append(request(207, Opcode.WRITE, write_body(Region.CONFIG, 0, [1], config)))
        frames = b"".join(encode_frame(p, MAX_PAYLOAD) for p in queue)
        assert len(frames) <= WINDOW
        s.sendall(frames)
        time.sleep(0.2)                                     # the job runs
        yield jobs, queued
        s.sendall(encode_frame(request(208, Opcode.STATUS), MAX_PAYLOAD)[:3])
        time.sleep(0.1)


def _full_window(server):
    """A bare client that sends a window's worth of requests at once (SYNCs, STATUS last), then
    reads: every one answered, in order, none lost to the window."""
    seqs = [k % 250 + 1 for k in range((WINDOW - 6) // 6)]
    frames = [encode_frame(request(seq, Opcode.SYNC), MAX_PAYLOAD) for seq in seqs]
    frames.append(encode_frame(request(0xF0, Opcode.STATUS), MAX_PAYLOAD))
    data = b"".join(frames)
    assert WINDOW - 12 < len(data) <= WINDOW
    with socket.create_connection((server.host, server.port), timeout=30) as s:
        s.sendall(data)
        answers = [_read_frame(s) for _ in frames]
    got = [decode_frame(a[:-1], MAX_PAYLOAD)[:2] for a in answers]
    assert got[:-1] == [bytes([seq, Status.OK.value]) for seq in seqs]
    assert got[-1] == bytes([0xF0, Status.OK.value]) and _status_of(answers[-1])["overflows"] == 0


def _leave_after_abort(server):
    """A client that sends ABORT and leaves at once, its ABORTED unread."""
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(bytes([DELIMITER]) + ABORT_FRAME)


def _clean(server, jobs):
    """A bare client (no ABORT of its own): the first frame it gets is the answer to its STATUS,
    with ``jobs`` jobs and no overflow; within seconds. Returns those seconds."""
    began = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(encode_frame(request(0x42, Opcode.STATUS), MAX_PAYLOAD))
        answer = _read_frame(s)
    assert decode_frame(answer[:-1], MAX_PAYLOAD)[0] == 0x42, answer.hex()
    status = _status_of(answer)
    assert (status["jobs"], status["overflows"]) == (jobs, 0)
    return time.monotonic() - began


def _next_client(server, jobs, model=MODEL, config=CONFIG, samples=4, timeout=5, **options):
    """After :func:`_mid_job`: the next client's first answer (its ABORT's, then IDENTIFY's, which
    waits for the design to hash the noise table the departed client wrote) comes within
    ``timeout`` seconds with nothing stale before it, the job left running never finished, and
    jobs give the golden model's counts. Returns the seconds to the first answer."""
    began = time.monotonic()
    with Client.connect(server.url, timeout=timeout, **options) as dev:
        first = time.monotonic() - began
        assert (dev.stats.stale, dev.stats.unreadable, dev.stats.damaged, dev.stats.resends,
                dev.stats.overflows) == (0, 0, 0, 0, 0)
        status = dev.status()
        assert (status.jobs, status.overflows) == (jobs, 0)
        dev.load_model(model)
        x = np.arange(2 * model.sizes[0]).reshape(2, -1) % (1 << model.input_bits)
        counts = dev.run(x, [5, 6], samples).counts
    np.testing.assert_array_equal(counts, run_jobs(model, x, [5, 6], samples))
    assert first < timeout
    return first


def _end_to_end(server, jobs=8, samples=4, **options):
    rng = np.random.default_rng(jobs)
    x = rng.integers(0, 32, (jobs, 7))
    seeds = [int(s) for s in rng.integers(0, 2 ** 64, jobs, np.uint64)]
    with Client.connect(server.url, **options) as dev:
        assert dev.info.config == CONFIG and dev.info.hash_matches
        dev.load_model(MODEL)
        result = dev.run(x, seeds, samples)
        status = dev.status()
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, samples))
    assert (result.cycles == job_cycles(MODEL.sizes, CONFIG, samples)).all()
    assert result.link.resends == result.link.overflows == 0
    assert status.jobs == jobs and status.crc_errors == status.bad_requests == status.overflows == 0
    return result


def _rtl_board(simulator, kind):
    began = time.monotonic()
    server = start_server(simulator, CONFIG, MAX_PAYLOAD)
    assert isinstance(server, kind)
    try:
        _end_to_end(server, min_clock_hz=1000)
        # The design keeps its model between connections, as a board does; a second client works,
        # and a third one meanwhile is told the board is in use.
        with Client.connect(server.url) as dev:
            assert dev.status().jobs == 8
            _refused(server)
            assert dev.status().jobs == 8
        _full_window(server)
        # A client leaves mid-job, requests in flight behind the job, mid-frame: the next one
        # finds nothing of it; nor after a client that leaves right after its own ABORT.
        with _mid_job(server) as (jobs, _):
            _refused(server)                            # told while the design computes
        _clean(server, jobs)
        _leave_after_abort(server)
        _clean(server, jobs)
        _next_client(server, jobs, min_clock_hz=1000)
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
    assert stats["connections"] == 9 and stats["refused"] == 4 and stats["bytes_out"] > 0
    return time.monotonic() - began


@pytest.mark.slow
def test_verilator_board_end_to_end():
    _rtl_board("verilator", NativeServer)


@pytest.mark.slow
def test_native_board_refuses_during_a_long_job_and_aborts_it_for_the_next_client(capsys):
    # The shipped digits model on the demo's configuration (16 lanes; built once for the suite):
    # S = 65535 takes minutes of simulation unless the flush aborts it.
    model = ModelImage.read(DEFAULT_MODEL)
    config = fitted_config(model, 16)
    with start_server("verilator", config, MAX_PAYLOAD) as server:
        with _mid_job(server, model, config) as (jobs, _):
            _refused(server, speak=False)               # told while the design computes
        first = _next_client(server, jobs, model, config)
        stats = server.stats()
    assert stats["refused"] == 2 and stats["flushes"] >= 1
    with capsys.disabled():
        print(f"\nnative board: the next client's first answer {first * 1000:.0f} ms after a "
              f"client left a {LONG}-sample job ({job_cycles(model.sizes, config, LONG)} cycles)")


@pytest.mark.slow
def test_native_board_fails_when_its_design_does_not_answer_the_flush(monkeypatch):
    never = base.Flush.of(CONFIG, MAX_PAYLOAD)
    monkeypatch.setattr(base.Flush, "of", classmethod(
        lambda cls, config, max_payload, window=WINDOW: cls(never.request, never.answer[1:],
                                                            never.cycles, never.settle)))
    with pytest.raises(ServeError, match="did not answer the flush after a client left .*see "
                                         ".*sim.log"):
        with start_server("verilator", CONFIG, MAX_PAYLOAD) as server:
            with Client.connect(server.url) as dev:
                dev.status()
            server.wait(20)


def test_icarus_board_end_to_end():
    _rtl_board("icarus", RTLServer)


def test_amaranth_board_end_to_end():
    with start_server("amaranth", CONFIG, MAX_PAYLOAD) as server:
        _end_to_end(server, jobs=3, samples=2, min_clock_hz=100)
        _full_window(server)
        with _mid_job(server) as (jobs, _):
            _refused(server)
        _clean(server, jobs)
        # The Amaranth simulator takes about 5 s to hash the noise table for IDENTIFY.
        _next_client(server, jobs, samples=2, timeout=20, min_clock_hz=100)


def test_golden_board_refuses_a_second_client_and_flushes_after_one_leaves():
    with start_server("golden", CONFIG, MAX_PAYLOAD) as server:
        with Client.connect(server.url) as dev:
            _refused(server, speak=False)
            dev.load_model(MODEL)
        _full_window(server)
        before = server.board.counters.copy()
        with _mid_job(server) as (jobs, queued):
            pass
        # No clock and no queue: the jobs finished as their requests came.
        _clean(server, jobs + queued)
        # The flush ended the half frame the client left: one frame error, no bad request.
        errors = [server.board.counters[k] - before[k]
                  for k in ("cobs_errors", "length_errors", "crc_errors", "bad_requests")]
        assert sum(errors[:3]) == 1 and errors[3] == 0
        _leave_after_abort(server)
        _next_client(server, jobs + queued)


def test_the_flush_is_abort_answered_aborted_then_silence():
    """The flush: a delimiter and ABORT; done once ABORTED has come (not the tail of a frame that
    was being sent when the client left) and the design has been silent for the settle cycles
    since, so a second ABORTED (the answer to the client's own last ABORT) is dropped too; within
    the documented bound."""
    flush = base.Flush.of(CONFIG, MAX_PAYLOAD)
    assert flush.request == bytes([DELIMITER]) + ABORT_FRAME
    assert decode_frame(flush.answer[:-1], MAX_PAYLOAD) == pack(
        RESPONSE_HEADER, seq=0, status=Status.ABORTED.value)
    largest = (CONFIG.max_inputs,) + (CONFIG.max_width,) * CONFIG.max_layers
    handled = base.quiet_cycles(MAX_PAYLOAD) + job_cycles(largest, CONFIG, 1)
    assert flush.settle == base.settle_cycles(WINDOW) > WINDOW
    assert flush.cycles > 4 * (handled + WINDOW) + flush.settle

    watch, now = flush.watch(last_out=0x33), 0     # the design was in the middle of a frame

    def out(data, gap=0):
        nonlocal now
        now += gap
        for byte in data:
            now += 1
            watch.take(byte, now)

    out(flush.answer)               # looks like ABORTED, but is the tail of that frame
    out(encode_frame(pack(RESPONSE_HEADER, seq=9, status=Status.OK.value), MAX_PAYLOAD), 40)
    assert not watch.answered and watch.wait(now) == flush.cycles - now
    out(flush.answer, 100)
    assert watch.answered and not watch.done(now) and watch.wait(now) == flush.settle
    out(flush.answer, flush.settle - 1)             # a second ABORTED, in the settle
    assert not watch.done(now + flush.settle - 1) and watch.done(now + flush.settle)
    assert not watch.late(now + flush.settle)
    silent = flush.watch(last_out=DELIMITER)
    assert not silent.late(flush.cycles - 1) and silent.late(flush.cycles)


def test_a_design_that_does_not_answer_the_flush_fails_the_server():
    server = start_server("golden", CONFIG, MAX_PAYLOAD)
    with Client.connect(server.url):
        server.board.feed = lambda data: b""            # a design that has stopped answering
    with pytest.raises(ServeError, match="did not answer the flush after a client left"):
        assert server.wait(10)


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


def test_serve_command_simulates_a_boards_build_with_its_window():
    # what `spinemu build --board ulx3s` builds: its configuration and its 8 KiB window
    process, url, lines = _spawn("--backend", "golden", "--port", "0", "--once", "--board",
                                 "ulx3s")
    board = BOARDS["ulx3s"]
    try:
        with Client.connect(url) as dev:
            assert dev.info.window == board.window == 8192
            assert dev.info.config == board.config and dev.info.hash_matches
        process.communicate(timeout=20)
    finally:
        process.kill()
    assert "a receive window of 8192 bytes" in "".join(lines)


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
        np.testing.assert_array_equal(counts, run_jobs(MODEL, x, seeds, 3))
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

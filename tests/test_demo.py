"""The native simulated board (spinemu.sim.board.native) and `spinemu demo`."""

import json
import socket

import pytest

from protocol_traffic import CONFIG, MAX_PAYLOAD, bad_traffic, golden_answers, good_traffic
from spinemu.hdl.protocol import WINDOW
from spinemu.host.cli import main


def _exchange_bursts(sock, requests, answers):
    """Send each of ``requests`` and read as many bytes as its answer in ``answers`` has."""
    got = []
    for request, expected in zip(requests, answers, strict=True):
        sock.sendall(request)
        buf = b""
        while len(buf) < len(expected):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        got.append(buf)
    return got


def _exchange(url_host, port, requests, answers, timeout=20.0):
    with socket.create_connection((url_host, port), timeout=timeout) as s:
        return _exchange_bursts(s, requests, answers)


@pytest.mark.slow
def test_native_board_answers_like_the_golden_board():
    from spinemu.sim.board.native import start_native_server

    traffic = [good_traffic(seed) for seed in (1, 2)]
    # One golden board for both: the design keeps its state (counters) between connections.
    answers, _ = golden_answers(traffic[0] + traffic[1])
    split = len(traffic[0])
    with start_native_server(CONFIG, MAX_PAYLOAD) as board:
        got = _exchange(board.host, board.port, traffic[0], answers[:split])
        got += _exchange(board.host, board.port, traffic[1], answers[split:])
        assert got == answers
        stats = board.stats()
    assert stats["connections"] == 2


def _bursts(requests):
    """``(start, end)`` of bursts of consecutive requests, each within the design's window."""
    bursts, start, size = [], 0, 0
    for i, r in enumerate(requests):
        if size + len(r) > WINDOW:
            bursts.append((start, i))
            start, size = i, 0
        size += len(r)
    return bursts + [(start, len(requests))]


def _within_window(requests):
    """The requests a host within its credits can send: none longer than the window (the native
    board feeds bytes one a cycle, faster than a UART: ``test_rtl_system`` sends longer frames on a
    paced line)."""
    return [r for r in requests if len(r) <= WINDOW]


@pytest.mark.slow
def test_native_board_streams_pipelined_requests_and_stops_once():
    """Requests sent in bursts (bytes back to back, jobs and the frames behind them queued in the
    design's window), each burst within the window, and --once ends the server."""
    from spinemu.sim.board.native import start_native_server

    requests = good_traffic(3)
    answers, _ = golden_answers(requests)
    bursts = _bursts(requests)
    assert len(bursts) < len(requests) / 4          # many requests in flight at once
    with start_native_server(CONFIG, MAX_PAYLOAD, once=True) as board:
        with socket.create_connection((board.host, board.port), timeout=20.0) as s:
            got = _exchange_bursts(s, [b"".join(requests[a:b]) for a, b in bursts],
                                   [b"".join(answers[a:b]) for a, b in bursts])
        assert b"".join(got) == b"".join(answers)
        assert board.wait(10.0)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--count", "5", "--samples", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bit-exact: yes" in text
    assert "16 lanes" in text
    assert (out / "demo.png").stat().st_size > 0
    report = json.loads((out / "demo.json").read_text())
    assert report["bit_exact"] is True and report["images"] == 5
    assert report["mismatched_images"] == 0 and report["cycles_match_model"]
    assert 0 <= report["accuracy"]["reconstructed"] <= 1


@pytest.mark.slow
def test_native_board_answers_bad_traffic_like_the_golden_board():
    from spinemu.sim.board.native import start_native_server

    requests = _within_window(bad_traffic())
    answers, _ = golden_answers(requests)
    with start_native_server(CONFIG, MAX_PAYLOAD) as board:
        got = _exchange(board.host, board.port, requests, answers)
        # Stopping while a client is connected ends the process cleanly.
        client = socket.create_connection((board.host, board.port), timeout=5.0)
        board.stop(timeout=10.0)
        assert not board.running()
        client.close()
    assert got == answers


@pytest.mark.slow
def test_native_board_says_why_it_cannot_start():
    from spinemu.sim.board import ServeError
    from spinemu.sim.board.native import start_native_server
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            start_native_server(CONFIG, MAX_PAYLOAD, port=port)

"""The native simulated board (spinemu.sim.board.native) and `spinemu demo`."""

import json
import socket

import pytest

from protocol_traffic import CONFIG, MAX_PAYLOAD, bad_traffic, golden_answers, good_traffic
from spinemu.host.cli import main


def _exchange(url_host, port, requests, answers, timeout=20.0):
    got = []
    with socket.create_connection((url_host, port), timeout=timeout) as s:
        for request, expected in zip(requests, answers, strict=True):
            s.sendall(request)
            buf = b""
            while len(buf) < len(expected):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            got.append(buf)
    return got


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


@pytest.mark.slow
def test_native_board_streams_pipelined_requests_and_stops_once():
    """All requests sent at once (bytes back to back), and --once ends the server."""
    from spinemu.sim.board.native import start_native_server

    requests = good_traffic(3)
    answers, _ = golden_answers(requests)
    with start_native_server(CONFIG, MAX_PAYLOAD, once=True) as board:
        with socket.create_connection((board.host, board.port), timeout=20.0) as s:
            s.sendall(b"".join(requests))
            want, buf = b"".join(answers), b""
            while len(buf) < len(want):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        assert buf == want
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

    requests = bad_traffic()
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

"""Stateful fuzzing: random request sequences (``request_fuzz``) answered by the generated Verilog
of the whole design exactly as by the golden board, each within its bound of cycles (liveness),
under random idle cycles and back-pressure on both byte streams; sent in a window of requests in
flight to the Amaranth simulation; and through the simulated boards themselves, with clients that
leave and come back."""

import random
import socket
from collections import Counter

import pytest

from protocol_traffic import CONFIG, MAX_PAYLOAD, exchange_window, frames_of
from request_fuzz import READY_P, VALID_P, fuzz_traffic, golden_run
from spinemu.hdl.framing import decode_frame
from spinemu.hdl.protocol import Status
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.sim.board import start_server
from spinemu.sim.board.model import GoldenBoard
from spinemu.sim.rtl import run_link_bench

#: What every fuzz run must reach, so that a fuzzer that lost its way fails instead of passing.
REACHED = {Status.OK, Status.BAD_LENGTH, Status.OUT_OF_RANGE, Status.BAD_CONFIG,
           Status.BAD_FRAME, Status.BAD_OPCODE, Status.BAD_VERSION}


def statuses(answers):
    return Counter(Status(decode_frame(a[:-1], MAX_PAYLOAD)[1]) for a in answers)


def check_against_golden(simulator, seed, count):
    requests, expect, limits, _ = golden_run(fuzz_traffic(seed, count))
    got, cycles = run_link_bench(ProtocolEngine(CONFIG, MAX_PAYLOAD), simulator=simulator,
                                 requests=requests, valid_p=VALID_P, ready_p=READY_P,
                                 stall_seed=seed, limits=limits)
    for i, (g, e) in enumerate(zip(got, expect, strict=True)):
        assert g == e, (f"request {i} of seed {seed} ({requests[i].hex()}): {g.hex()} != golden "
                        f"{e.hex()}; the requests before it: "
                        f"{[r.hex() for r in requests[max(0, i - 5):i]]}")
    return statuses(expect), max(cycles), max(c / n for c, n in zip(cycles, limits, strict=True))


def test_golden_board_answers_every_sequence():
    """The golden board never fails (the golden server died on a layer count without sizes)."""
    seen = Counter()
    for seed in range(40):
        _, answers, _, _ = golden_run(fuzz_traffic(seed, 500))
        seen += statuses(answers)
    assert REACHED <= set(seen), seen


@pytest.mark.parametrize("simulator, seeds, count", [("verilator", (1, 2, 3), 400),
                                                     ("icarus", (4,), 300)])
def test_design_answers_sequences_like_the_golden_board(simulator, seeds, count):
    seen = Counter()
    for seed in seeds:
        found, _, _ = check_against_golden(simulator, seed, count)
        seen += found
    assert REACHED <= set(seen), seen


@pytest.mark.parametrize("seed, window", [(11, 1024), (12, 128)])
def test_sequences_in_a_window_are_answered_like_the_golden_board(seed, window):
    """The same kind of sequences, sent back to back within the window's credits to the Amaranth
    simulation: every answer the golden board's, in order."""
    requests = fuzz_traffic(seed, 150)
    answers = exchange_window(CONFIG, MAX_PAYLOAD, requests, window=window, stall_seed=seed,
                              max_cycles=5_000_000)
    board = GoldenBoard(CONFIG, MAX_PAYLOAD, window)
    expect = [a for r in requests for a in frames_of(board.feed(r))]
    for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
        assert g == e, f"answer {i} of seed {seed}: {g.hex()} != golden {e.hex()}"
    assert {Status.OK, Status.BAD_FRAME} <= set(statuses(expect))


@pytest.mark.slow
def test_soak_on_verilator():
    """A longer run: many more sequences on Verilator (its figures go into the closing note via
    `pytest -s`)."""
    seen, longest, closest = Counter(), 0, 0.0
    for seed in range(100, 110):
        found, most, ratio = check_against_golden("verilator", seed, 2000)
        seen, longest, closest = seen + found, max(longest, most), max(closest, ratio)
    print(f"soak: {sum(seen.values())} requests, statuses {dict(seen)}, longest answer "
          f"{longest} cycles, at most {closest:.0%} of its bound")
    assert REACHED <= set(seen), seen


def _answer(conn):
    """One answer frame from a simulated board's socket (up to its delimiter)."""
    data = b""
    while not data.endswith(b"\0"):
        chunk = conn.recv(65536)
        assert chunk, "the board closed the connection"
        data += chunk
    return data


def test_boards_answer_sequences_with_reconnects_alike():
    """The same random sequences through the golden and the native Verilator board, with clients
    that leave at random, some in the middle of a frame: every answer equal on both, so what a
    departed client left changes nothing but what the flush defines."""
    rng = random.Random(7)
    frames = fuzz_traffic(8, 600, reconnects=False)
    with start_server("golden", CONFIG, MAX_PAYLOAD) as golden, \
            start_server("verilator", CONFIG, MAX_PAYLOAD) as native:
        boards, conns, answered, reconnects = (golden, native), None, 0, 0
        for frame in frames:
            if conns is None:
                conns = [socket.create_connection((b.host, b.port), timeout=10) for b in boards]
            if rng.random() < 0.04:      # leave, now and then in the middle of this frame
                cut = frame[:rng.randint(0, len(frame) - 1)]
                for conn in conns:
                    conn.sendall(cut)
                    conn.close()
                conns, reconnects = None, reconnects + 1
                continue
            for conn in conns:
                conn.sendall(frame)
            got = [_answer(conn) for conn in conns]
            assert got[0] == got[1], f"after {answered} answers: {frame.hex()}: {got[1].hex()} " \
                                     f"!= golden {got[0].hex()}"
            answered += 1
        for conn in conns or ():
            conn.close()
    print(f"boards: {answered} answers alike over {reconnects} reconnects")
    assert reconnects >= 10 and answered >= 500

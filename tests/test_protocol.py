"""The whole design behind its byte stream (Amaranth simulator) against the golden board, byte for
byte: good requests, every kind of bad frame and bad request, and good jobs after them."""

import pytest

from protocol_traffic import (
    BAD_STATUSES,
    CONFIG,
    MAX_PAYLOAD,
    TAIL_STATUSES,
    WIDE_CONFIG,
    Status,
    bad_traffic,
    golden_answers,
    good_traffic,
    status_of,
)
from spinemu.sim.protocol_sim import exchange_amaranth


def _check(requests, seed, config=CONFIG):
    expect, board = golden_answers(requests, config)
    got = exchange_amaranth(config, MAX_PAYLOAD, requests, stall_seed=seed)
    for i, (g, e) in enumerate(zip(got, expect, strict=True)):
        assert g == e, f"answer {i} to {requests[i].hex()}: {g.hex()} != golden {e.hex()}"
    return expect, board


@pytest.mark.parametrize("config", [CONFIG, WIDE_CONFIG], ids=["2-lanes", "4-lanes-wide-params"])
def test_jobs_end_to_end(config):
    answers, board = _check(good_traffic(seed=3, config=config), seed=1, config=config)
    assert all(status_of(a) == Status.OK.value for a in answers)
    assert board.counters["jobs"] == 3 and sum(board.results) > 0


def test_every_bad_frame_and_request_is_answered_and_the_engine_goes_on():
    answers, board = _check(bad_traffic(), seed=2)
    statuses = [status_of(a) for a in answers]
    assert statuses[:4] == [Status.BAD_FRAME.value] * 3 + [Status.OK.value]
    assert statuses[4:4 + len(BAD_STATUSES)] == [s.value for s in BAD_STATUSES]
    assert statuses[-len(TAIL_STATUSES):] == [s.value for s in TAIL_STATUSES]
    assert board.counters == {"cobs_errors": 1, "length_errors": 1, "crc_errors": 1,
                              "bad_requests": len(BAD_STATUSES) + 3, "uart_frame_errors": 0,
                              "uart_overruns": 0, "jobs": 1}

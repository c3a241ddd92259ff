"""The whole design behind its byte stream (Amaranth simulator) against the golden board, byte for
byte: good requests, every kind of bad frame and bad request, and good jobs after them."""

import numpy as np
import pytest

from spinemu.hdl.engine import EngineConfig, Region, input_writes, model_writes
from spinemu.hdl.framing import cobs_encode, encode_frame
from spinemu.hdl.model_image import random_model
from spinemu.hdl.protocol import (Opcode, Status, read_body, request, run_body, write_body,
                                  write_bodies)
from spinemu.sim.board_model import GoldenBoard
from spinemu.sim.protocol_sim import exchange_amaranth

CONFIG = EngineConfig(lanes=2, max_layers=3, max_inputs=16, max_width=16, weight_depth=256,
                      param_depth=32)
MAX_PAYLOAD = 64


def _frames(payloads):
    return [encode_frame(p, MAX_PAYLOAD) for p in payloads]


def _load(model, x, seq=10):
    bodies = write_bodies(model_writes(model, CONFIG) + input_writes(x), CONFIG, MAX_PAYLOAD)
    return [request(seq + i, Opcode.WRITE, b) for i, b in enumerate(bodies)]


def _check(frames, seed=0):
    golden = GoldenBoard(CONFIG, MAX_PAYLOAD)
    expect = [golden.feed(f) for f in frames]
    got = exchange_amaranth(CONFIG, MAX_PAYLOAD, frames, stall_seed=seed)
    for i, (g, e) in enumerate(zip(got, expect)):
        assert g == e, f"answer {i} to {frames[i].hex()}: {g.hex()} != golden {e.hex()}"
    return golden, expect


def _status(answer):
    from spinemu.hdl.framing import decode_frame
    return decode_frame(answer[:-1], MAX_PAYLOAD)[1]


def test_jobs_end_to_end():
    model = random_model((7, 9, 4), seed=3, fmt=CONFIG.fmt)
    rng = np.random.default_rng(0)
    payloads = [request(1, Opcode.IDENTIFY)] + _load(model, rng.integers(0, 32, 7))
    payloads += [request(50, Opcode.RUN, run_body(42, 3)), request(51, Opcode.READ, read_body(0, 4)),
                 request(52, Opcode.READ, read_body(1, 2)), request(53, Opcode.STATUS)]
    payloads += _load(model, rng.integers(0, 32, 7), seq=60)
    payloads += [request(90, Opcode.RUN, run_body(2 ** 64 - 1, 5)),
                 request(91, Opcode.READ, read_body(0, 4))]
    golden, answers = _check(_frames(payloads), seed=1)
    assert all(_status(a) == Status.OK.value for a in answers)
    assert golden.counters["jobs"] == 2 and sum(golden.results) > 0


def test_every_bad_frame_and_request_is_answered_and_the_engine_goes_on():
    model = random_model((7, 9, 4), seed=5, fmt=CONFIG.fmt)
    good = encode_frame(request(7, Opcode.STATUS), MAX_PAYLOAD)
    corrupt_crc = bytearray(good)
    corrupt_crc[2] ^= 0x40
    bad_cobs = bytes([5, 1, 2]) + b"\0"                       # a code byte past the end
    too_long = cobs_encode(bytes(range(1, 120))) + b"\0"      # longer than the payload limit
    raw = [
        bytes(corrupt_crc), bad_cobs, too_long,
        b"\0" + good,                                         # an empty frame is skipped
    ]
    payloads = [
        bytes([3]),                                           # no opcode
        request(4, Opcode.RUN, run_body(1, 1)),               # no model yet
        bytes([5, 0x7E]),                                     # unknown opcode
        bytes([6, 0x7E, 1, 2]),                               # unknown opcode with a body
        request(8, Opcode.IDENTIFY, b"x"),                    # IDENTIFY takes no body
        request(9, Opcode.WRITE, bytes([7]) + bytes(4) + b"\1"),   # no such region
        request(10, Opcode.WRITE, bytes([1, 0, 0])),          # address cut short
        request(11, Opcode.WRITE, write_body(Region.INPUT, 15, [1, 2], CONFIG)),  # past the end
        request(12, Opcode.WRITE, write_body(Region.INPUT, 0, [32], CONFIG)),     # 6 bits > 5
        request(13, Opcode.WRITE, write_body(Region.CONFIG, 0, [4], CONFIG)),     # 4 layers > 3
        request(14, Opcode.WRITE, write_body(Region.CONFIG, 2, [0], CONFIG)),     # empty layer
        request(15, Opcode.WRITE, write_body(Region.PARAM, 0, [1], CONFIG)[:-1]),  # partial
        request(16, Opcode.RUN, run_body(1, 1)[:-1]),         # short RUN
        request(17, Opcode.RUN, run_body(1, 1) + b"!"),       # long RUN
        request(18, Opcode.READ, read_body(0, 1)),            # nothing to read yet
    ]
    payloads += _load(model, np.arange(7), seq=30)
    payloads += [request(60, Opcode.RUN, run_body(9, 0)),     # zero samples
                 request(61, Opcode.RUN, run_body(9, 4)),
                 request(62, Opcode.READ, read_body(3, 2)),   # past the 4 results
                 request(63, Opcode.READ, read_body(0, 40)),  # more than one frame holds
                 request(64, Opcode.READ, read_body(0, 4)),
                 request(65, Opcode.STATUS)]
    golden, answers = _check(raw + _frames(payloads), seed=2)
    statuses = [_status(a) for a in answers]
    assert statuses[:3] == [Status.BAD_FRAME.value] * 3 and statuses[3] == Status.OK.value
    bad = [Status.BAD_LENGTH, Status.NO_MODEL, Status.BAD_OPCODE, Status.BAD_OPCODE,
           Status.BAD_LENGTH, Status.OUT_OF_RANGE, Status.BAD_LENGTH, Status.OUT_OF_RANGE,
           Status.OUT_OF_RANGE, Status.OUT_OF_RANGE, Status.OUT_OF_RANGE, Status.BAD_LENGTH,
           Status.BAD_LENGTH, Status.BAD_LENGTH, Status.OUT_OF_RANGE]
    assert statuses[4:4 + len(bad)] == [s.value for s in bad]
    tail = statuses[-6:]
    assert tail == [s.value for s in (Status.OUT_OF_RANGE, Status.OK, Status.OUT_OF_RANGE,
                                      Status.OUT_OF_RANGE, Status.OK, Status.OK)]
    assert golden.counters == {"cobs_errors": 1, "length_errors": 1, "crc_errors": 1,
                               "bad_requests": len(bad) + 3, "uart_frame_errors": 0,
                               "uart_overruns": 0, "jobs": 1}

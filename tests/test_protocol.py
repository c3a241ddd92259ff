"""The whole design behind its byte stream against the golden board, byte for byte: good requests,
every kind of bad frame and bad request, good jobs after them and the request sequences of issue
#11 (Amaranth simulator; the sequences and the abort also on the generated Verilog). The golden
board's own framing: exact for frames of any length, in linear time and bounded memory."""

import random
import time
import tracemalloc

import numpy as np
import pytest

from protocol_traffic import (
    BAD_FRAME_ERRORS,
    BAD_STATUSES,
    CONFIG,
    MAX_PAYLOAD,
    TAIL_STATUSES,
    TIGHT_CONFIG,
    WIDE_CONFIG,
    Status,
    bad_traffic,
    golden_answers,
    good_traffic,
    issue_traffic,
    status_of,
)
from spinemu.hdl.framing import (
    FrameDecodeError,
    FrameError,
    cobs_encode,
    decode_frame,
    encode_frame,
    max_encoded_length,
)
from spinemu.hdl.memory_map import (
    EngineConfig,
    Region,
    groups,
    input_writes,
    job_cycles,
    model_writes,
)
from spinemu.hdl.model_image import random_model
from spinemu.hdl.noise_table import NoiseTable, gaussian, logistic, thermal
from spinemu.hdl.protocol import (
    HASH_CYCLES,
    IDENTIFY_RESPONSE,
    RESPONSE_HEADER,
    UNREADABLE_SEQ,
    Opcode,
    pack,
    read_body,
    request,
    run_body,
    unpack,
    write_bodies,
    write_body,
)
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.sim.board.model import GoldenBoard
from spinemu.sim.protocol_sim import exchange_amaranth
from spinemu.sim.rtl import SIMULATORS, run_link_bench
from spinemu.sim.streams import run, send


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
    unreadable = sum(BAD_FRAME_ERRORS.values())
    assert statuses[:unreadable + 1] == [Status.BAD_FRAME.value] * unreadable + [Status.OK.value]
    assert statuses[unreadable + 1:unreadable + 1 + len(BAD_STATUSES)] == [
        s.value for s in BAD_STATUSES]
    assert statuses[-len(TAIL_STATUSES):] == [s.value for s in TAIL_STATUSES]
    assert board.counters == {**BAD_FRAME_ERRORS, "bad_requests": len(BAD_STATUSES) + 3,
                              "uart_frame_errors": 0, "uart_overruns": 0, "jobs": 1}


def _runs_ok(requests, statuses):
    return sum(decode_frame(r[:-1], MAX_PAYLOAD)[1] == Opcode.RUN.value and s == Status.OK
               for r, s in zip(requests, statuses, strict=True))


@pytest.mark.parametrize("config", [CONFIG, TIGHT_CONFIG], ids=["weights", "parameters"])
def test_issue_sequences_are_answered_like_the_golden_board(config):
    """A refused WRITE leaves nothing behind; RUN on an incomplete configuration, or one that does
    not fit the memories, is refused BAD_CONFIG (and keeps the last results); one that fits runs."""
    requests, statuses = issue_traffic(config)
    answers, board = _check(requests, seed=4, config=config)
    assert [Status(status_of(a)) for a in answers] == statuses
    assert board.counters["jobs"] == _runs_ok(requests, statuses) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_issue_sequences_on_the_verilog(simulator):
    requests, statuses = issue_traffic(CONFIG)
    expect, _ = golden_answers(requests)
    got, _ = run_link_bench(ProtocolEngine(CONFIG, MAX_PAYLOAD), simulator=simulator,
                            requests=requests, valid_p=0.7, ready_p=0.7, stall_seed=6)
    for i, (g, e) in enumerate(zip(got, expect, strict=True)):
        assert g == e, f"answer {i} to {requests[i].hex()}: {g.hex()} != golden {e.hex()}"
    assert [Status(status_of(a)) for a in got] == statuses


# ---- a RUN's check and its abort, timed (no idle cycles, no back-pressure) -----------------------

def _timed_exchange(config, max_payload, requests):
    """Stop-and-wait with every byte offered and taken at once: the answer to each request, the
    cycles from its last byte taken to its answer's last byte, and to the first cycle with a job
    running (None if none ran)."""
    dut = ProtocolEngine(config, max_payload)
    rng = random.Random(0)
    answers, cycles, started = [], [], []

    async def host(ctx):
        for data in requests:
            await send(ctx, dut.i, data, rng, 0)
            ctx.set(dut.o.ready, 1)
            answer, n, busy_at = bytearray(), 0, None
            while not answer or answer[-1] != 0:
                _, _, valid, byte, busy = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                  dut.busy)
                n += 1
                if busy and busy_at is None:
                    busy_at = n
                if valid:
                    answer.append(byte)
            answers.append(bytes(answer))
            cycles.append(n)
            started.append(busy_at)

    run(dut, host, cycles=2_000_000)
    return answers, cycles, started


def test_the_run_check_takes_one_cycle_per_group():
    """The documented cycles before a job starts: sum_l G_l + 2 for the check, the rest fixed."""
    c = CONFIG
    networks = [(3, 2), (16, 16, 16), (7, 9, 4, 5), (1, 1)]
    requests = []
    for k, sizes in enumerate(networks):
        config = [(Region.CONFIG, 0, len(sizes) - 1)]
        config += [(Region.CONFIG, 1 + l, n) for l, n in enumerate(sizes)]
        requests += [encode_frame(request(2 * k, Opcode.WRITE, b), MAX_PAYLOAD)
                     for b in write_bodies(config, c, MAX_PAYLOAD)]
        requests.append(encode_frame(request(2 * k + 1, Opcode.RUN, run_body(k, 1)), MAX_PAYLOAD))
    answers, _, started = _timed_exchange(c, MAX_PAYLOAD, requests)
    expect, _ = golden_answers(requests)
    assert answers == expect
    walked = [sum(groups(n, c.lanes) for n in sizes[1:]) for sizes in networks]
    delays = [s for s in started if s is not None]
    assert len(delays) == len(networks)
    assert len({d - g for d, g in zip(delays, walked, strict=True)}) == 1


#: The default board (the design ``spinemu serve`` simulates) and a model of the size it holds.
ABORT_CONFIG = EngineConfig()
ABORT_PAYLOAD = 256
ABORT_MODEL = random_model((64, 64, 32), seed=12, fmt=ABORT_CONFIG.fmt)
#: The most cycles from the delimiter of a frame that arrives while a job runs to the last byte of
#: the RUN's ABORTED answer, with no idle cycles or back-pressure (measured: 17).
ABORT_CYCLES = 24


def _status(answer, max_payload=ABORT_PAYLOAD):
    return Status(decode_frame(answer[:-1], max_payload)[1])


def _abort_traffic(delay):
    """The design's requests, the answers expected and the indices of the RUNs aborted: a model
    load and a job, then a job of S = 65535 with an IDENTIFY ``delay`` bytes (idle delimiters)
    after it, READ (refused: the aborted job's counts are gone), a short job, another long job cut
    short by a frame with a bad CRC, and STATUS. Every answer but ABORTED is the golden board's
    to the same requests sent stop-and-wait without the long jobs."""
    c, p = ABORT_CONFIG, ABORT_PAYLOAD

    def frame(seq, opcode, body=b""):
        return encode_frame(request(seq, opcode, body), p)

    x = np.arange(ABORT_MODEL.sizes[0]) % (1 << c.input_bits)
    bodies = write_bodies(model_writes(ABORT_MODEL, c) + input_writes(x), c, p)
    n = ABORT_MODEL.sizes[-1]
    bad_crc = bytearray(frame(208, Opcode.STATUS))
    bad_crc[1] ^= 0x10
    # (the design's request, the golden board's); a number: the seq of a long RUN answered
    # ABORTED, whose design request carries the aborting frame, answered in the next step.
    steps = [(frame(k, Opcode.WRITE, b),) * 2 for k, b in enumerate(bodies)]
    steps += [(frame(200, Opcode.RUN, run_body(3, 2)),) * 2,
              (frame(201, Opcode.READ, read_body(0, n)),) * 2]
    for seq, stop in ((202, frame(203, Opcode.IDENTIFY)), (207, bytes(bad_crc))):
        steps += [(frame(seq, Opcode.RUN, run_body(9, 65535)) + bytes(delay) + stop, seq),
                  (b"", stop)]
        if seq == 202:  # the golden board's READ is refused too (no counts asked), so STATUS agrees
            steps += [(frame(204, Opcode.READ, read_body(0, n)),
                       frame(204, Opcode.READ, read_body(0, 0))),
                      (frame(205, Opcode.RUN, run_body(4, 2)),) * 2,
                      (frame(206, Opcode.READ, read_body(0, n)),) * 2]
    steps.append((frame(209, Opcode.STATUS),) * 2)
    board = GoldenBoard(c, p)
    design, expect, aborting = [], [], []
    for mine, golden in steps:
        if isinstance(golden, int):
            aborting.append(len(design))
            expect.append(encode_frame(pack(RESPONSE_HEADER, seq=golden,
                                            status=Status.ABORTED.value), p))
        else:
            expect.append(board.feed(golden))
        design.append(mine)
    return design, expect, aborting


def test_a_new_frame_aborts_a_running_job(capsys):
    """A good frame or a frame error, whatever the job is doing: ABORTED at once, then the frame's
    own answer; the counts are gone; the next job is exact (its cycles the documented count)."""
    slowest = 0
    for delay in (200, 1000, 3000):     # seeding, layer 1's pass, the samples
        design, expect, aborting = _abort_traffic(delay)
        answers, cycles, _ = _timed_exchange(ABORT_CONFIG, ABORT_PAYLOAD, design)
        for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
            assert g == e, f"answer {i} (delay {delay}): {g.hex()} != {e.hex()}"
        slowest = max(slowest, *(cycles[k] for k in aborting))
    assert slowest <= ABORT_CYCLES     # from the aborting frame's delimiter
    with capsys.disabled():
        print(f"\nabort: ABORTED answered at most {slowest} cycles after the aborting frame")
    first = aborting[0]
    assert [_status(a) for a in answers[first:first + 3]] == [
        Status.ABORTED, Status.OK, Status.OUT_OF_RANGE]
    run_answer = decode_frame(answers[first + 3][:-1], ABORT_PAYLOAD)
    assert int.from_bytes(run_answer[2:], "little") == job_cycles(ABORT_MODEL.sizes, 4, 2)
    assert [_status(a) for a in answers[aborting[1]:]] == [
        Status.ABORTED, Status.BAD_FRAME, Status.OK]


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_a_new_frame_aborts_a_running_job_on_the_verilog(simulator):
    design, expect, aborting = _abort_traffic(delay=3000)
    # An aborting request's bytes, one a cycle, the cycles the decoder holds the RUN's payload (12
    # bytes) and the next frame's (2) while it hands them on, and the abort.
    limits = [200_000] * len(design)
    for k in aborting:
        limits[k] = len(design[k]) + 14 + ABORT_CYCLES
    got, _ = run_link_bench(ProtocolEngine(ABORT_CONFIG, ABORT_PAYLOAD), simulator=simulator,
                            requests=design, limits=limits)
    for i, (g, e) in enumerate(zip(got, expect, strict=True)):
        assert g == e, f"answer {i}: {g.hex()} != {e.hex()}"


# ---- the golden board's framing -----------------------------------------------------------------

def _frame_error_answer(kind, max_payload):
    answer = pack(RESPONSE_HEADER, seq=UNREADABLE_SEQ, status=Status.BAD_FRAME.value)
    answer += bytes([kind.value])
    # An answer longer than max_payload: the design's encoder aborts it so.
    return encode_frame(answer, max_payload) if len(answer) <= max_payload else b"\2\0"


def _frames_around_the_limit(max_payload, rng):
    """Bad frames (without the delimiter) of every length near and far past the longest encoding,
    whole COBS and broken, zero-free (the most 254-byte blocks) and mostly code bytes."""
    keep, decoded = max_encoded_length(max_payload), max_payload + 2
    frames = []
    for n in (decoded - 1, decoded, decoded + 1, decoded + 2, 3 * decoded):
        frames += [cobs_encode(b"\7" * n), cobs_encode(bytes(n)),
                   cobs_encode(bytes(rng.randrange(4) for _ in range(n)))]
    for n in (keep - 1, keep, keep + 1, keep + 2, 2 * keep + 3, 5 * keep):
        frames += [b"\1" * n, b"\2" * n, b"\xff" * n,
                   bytes(rng.randrange(1, 256) for _ in range(n)),
                   bytes(rng.choice((1, 2, 3, 255)) for _ in range(n))]
    return frames


@pytest.mark.parametrize("max_payload", [1, 2, 64, 251, 252, 253, 256, 505, 506])
def test_golden_board_judges_frames_of_any_length_as_the_decoder(max_payload):
    """decode_frame is the decoder's order (tests/test_framing.py); the board keeps only a few
    numbers of a frame past the longest encoding and must judge it the same, cut anyhow."""
    rng = random.Random(max_payload)
    frames = _frames_around_the_limit(max_payload, rng)
    expect, kinds = [], set()
    for frame in frames:
        try:
            decode_frame(frame, max_payload)
        except FrameDecodeError as error:
            expect.append(_frame_error_answer(error.kind, max_payload))
            kinds.add(error.kind)
        else:
            raise AssertionError(f"a good frame among the bad ones: {frame.hex()}")
    assert kinds == set(FrameError)
    stream = b"".join(f + b"\0" for f in frames)
    whole = GoldenBoard(CONFIG, max_payload)
    assert whole.feed(stream) == b"".join(expect)
    cut = GoldenBoard(CONFIG, max_payload)
    at, out = 0, []
    while at < len(stream):
        step = rng.choice([1, 2, 7, 300, 5000])
        out.append(cut.feed(stream[at:at + step]))
        at += step
    assert b"".join(out) == b"".join(expect)
    assert cut.counters == whole.counters


def test_golden_board_takes_an_endless_frame_in_linear_time_and_bounded_memory(capsys):
    """64 MB of one undelimited frame in 64 KB chunks (code bytes only: the slowest to walk),
    then its delimiter: a length error, and the board answers on."""
    chunk = b"\1" * (64 << 10)
    board = GoldenBoard(CONFIG, MAX_PAYLOAD)
    began = time.perf_counter()
    for _ in range(1024):
        assert board.feed(chunk) == b""
    seconds = time.perf_counter() - began
    assert board.feed(b"\0") == _frame_error_answer(FrameError.LENGTH, MAX_PAYLOAD)
    assert seconds < 10, f"64 MB took {seconds:.1f} s"
    # What the board keeps does not grow with the frame: 4 MB more, its allocations traced.
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(64):
            board.feed(chunk)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 16 << 10, f"{peak} bytes held"
    with capsys.disabled():
        print(f"\ngolden board: 64 MB of one frame in {seconds:.2f} s, {peak} bytes held over 4 MB "
              f"more")
    assert board.feed(b"\5\0") == _frame_error_answer(FrameError.COBS, MAX_PAYLOAD)
    identify = board.feed(encode_frame(request(1, Opcode.IDENTIFY), MAX_PAYLOAD))
    assert status_of(identify) == Status.OK.value


def test_golden_board_never_fails():
    """Random requests of every opcode with random bodies, valid frames and torn ones, in every
    state the writes leave: every one answered, none raises (the golden server died on one)."""
    rng = random.Random(7)
    board = GoldenBoard(CONFIG, MAX_PAYLOAD)
    for frame in good_traffic(seed=7):      # a model to start from
        board.feed(frame)
    for k in range(3000):
        opcode = rng.choice([1, 2, 2, 2, 3, 3, 4, 5, 6, rng.randrange(256)])
        if opcode == 2:                     # a region, an address near the regions' ends
            body = bytes([rng.randrange(6)]) + rng.choice(
                [bytes([rng.randrange(20), 0, 0, 0]), rng.randbytes(4)]) + rng.randbytes(
                rng.randrange(20))
        elif opcode == 3 and rng.random() < 0.7:
            body = run_body(rng.randrange(1 << 64), rng.randrange(4))
        else:
            body = rng.randbytes(rng.choice([0, 3, 10, 10, rng.randrange(40)]))
        frame = encode_frame(bytes([k % 255, opcode]) + body[:MAX_PAYLOAD - 2], MAX_PAYLOAD)
        if rng.random() < 0.05:
            frame = frame[:rng.randrange(1, len(frame))] + b"\0"
        assert board.feed(frame).endswith(b"\0")
    assert board.counters["jobs"] > 3 + 10      # jobs in the random states too


def _identified_noise_hash(answer):
    body = decode_frame(answer[:-1], MAX_PAYLOAD)[2:]
    return unpack(IDENTIFY_RESPONSE, body)["noise_hash"]


def test_identify_reports_the_noise_table_the_design_holds():
    # The good traffic loads a model with the thermal table: IDENTIFY names the build's table
    # before, the model's after (answers on the gateware equal the golden board's).
    requests = good_traffic(seed=5)
    answers, _ = _check(requests, seed=5)
    identified = [_identified_noise_hash(a) for r, a in zip(requests, answers, strict=True)
                  if decode_frame(r[:-1], MAX_PAYLOAD)[1] == Opcode.IDENTIFY.value]
    assert identified == [gaussian().hash, thermal().hash]


def test_the_noise_hash_is_that_of_the_table_held_after_any_writes():
    # Entries written out of order, twice, cut short, too wide, or a table half replaced: the
    # hash IDENTIFY reports is always the CRC of what the table holds, on the gateware too.
    rng = random.Random(3)
    entries = [list(gaussian().entries), list(thermal().entries), list(logistic().entries)]
    held = list(CONFIG.noise.entries)
    requests, expected = [], []
    for step in range(12):
        table = rng.choice(entries)
        start = rng.choice([0, rng.randrange(256), 250])
        count = rng.randint(1, min(12, 256 - start))
        values = table[start:start + count]
        body = write_body(Region.NOISE, start, values, CONFIG)
        if step % 4 == 3:                           # the last element one bit too wide
            values = values[:-1]
            body = write_body(Region.NOISE, start, values + [table[start + count - 1] | 1 << 26],
                              CONFIG)
        held[start:start + len(values)] = values
        requests += [encode_frame(request(step, Opcode.WRITE, body), MAX_PAYLOAD),
                     encode_frame(request(100 + step, Opcode.IDENTIFY), MAX_PAYLOAD)]
        expected.append(NoiseTable.from_entries("held", held).hash)
    answers, _ = _check(requests, seed=6)
    assert [_identified_noise_hash(a) for a in answers[1::2]] == expected


def test_identify_after_noise_writes_takes_the_documented_hash_cycles():
    # The first IDENTIFY after a NOISE write answers HASH_CYCLES later than the next one does.
    dut = ProtocolEngine(CONFIG, MAX_PAYLOAD)
    write = encode_frame(request(1, Opcode.WRITE, write_body(Region.NOISE, 3, [5], CONFIG)),
                         MAX_PAYLOAD)
    identify = encode_frame(request(2, Opcode.IDENTIFY), MAX_PAYLOAD)
    latencies = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for frame in (write, identify, identify):
            await send(ctx, dut.i, list(frame), random.Random(0), idle=0)
            waited = 0
            while not ctx.get(dut.o.valid):           # the answer's first byte
                await ctx.tick()
                waited += 1
            latencies.append(waited)
            while True:                               # the rest of it, up to its delimiter
                _, _, byte = await ctx.tick().sample(dut.o.payload)
                if byte == 0:
                    break

    run(dut, bench, cycles=20 * HASH_CYCLES)
    assert latencies[1] - latencies[2] == HASH_CYCLES

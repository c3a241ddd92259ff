"""The whole design behind its byte stream against the golden board, byte for byte: good requests,
every kind of bad frame and bad request, good jobs after them and the request sequences of issue
#11, requests sent in a window, JOBs of every count width, ABORT (timed) and the frames lost to a
full window (Amaranth simulator; the sequences, the ABORT and the longest JOBs also on the
generated Verilog). The golden board's own framing: exact for frames of any length, in linear time
and bounded memory."""

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
    exchange_window,
    frames_of,
    golden_answers,
    good_traffic,
    issue_traffic,
    job_frame,
    status_of,
    window_model,
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
    ABORT_FRAME,
    FORMAT_VERSION,
    HASH_CYCLES,
    IDENTIFY_RESPONSE,
    RESPONSE_HEADER,
    STATUS_RESPONSE,
    UNREADABLE_SEQ,
    WINDOW,
    Opcode,
    job_body,
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
from spinemu.sim.streams import receive, run, send


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
                              "uart_frame_errors": 0, "uart_overruns": 0, "overflows": 0,
                              "jobs": 1}


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


# ---- a RUN's check and the ABORT, timed (no idle cycles, no back-pressure) -----------------------

def _timed_exchange(config, max_payload, requests, window=WINDOW):
    """Stop-and-wait with every byte offered and taken at once: the answer to each request (a
    bytes, or a list of bytes and of idle cycles between them), the cycles from its last byte
    taken to its answer's last byte, and to the first cycle with a job running (None if none
    ran)."""
    dut = ProtocolEngine(config, max_payload, window)
    rng = random.Random(0)
    answers, cycles, started = [], [], []

    async def host(ctx):
        for data in requests:
            for part in data if isinstance(data, list) else [data]:
                if isinstance(part, int):
                    await ctx.tick().repeat(part)
                else:
                    await send(ctx, dut.i, part, rng, 0)
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


# ---- ABORT ---------------------------------------------------------------------------------------

#: The default board (the design ``spinemu serve`` simulates) and a small model for it.
ABORT_CONFIG = EngineConfig()
ABORT_PAYLOAD = 256
ABORT_MODEL = random_model((16, 16, 8), seed=12, fmt=ABORT_CONFIG.fmt)
#: The most cycles from the delimiter of an ABORT that arrives while a job runs to the last byte of
#: its ABORTED answer, with no idle cycles or back-pressure (measured: 17).
ABORT_CYCLES = 24


def _status(answer, max_payload=ABORT_PAYLOAD):
    return Status(decode_frame(answer[:-1], max_payload)[1])


def _abort_traffic(delay):
    """The design's requests, the answers expected and the indices of those answered ABORTED: a
    model load and a job, then a job of S = 65535 and the host's ``0x00`` + ABORT ``delay`` cycles
    after it, READ (refused: the stopped job's counts are gone), a JOB, READ, a long RUN with an
    ABORT right behind it (which drops it from the window before it starts), and STATUS. The
    answers are the golden board's to the same requests without the long jobs (its READ asks for
    no counts, refused as the design's is)."""
    c, p = ABORT_CONFIG, ABORT_PAYLOAD

    def frame(seq, opcode, body=b""):
        return encode_frame(request(seq, opcode, body), p)

    x = np.arange(ABORT_MODEL.sizes[0]) % (1 << c.input_bits)
    bodies = write_bodies(model_writes(ABORT_MODEL, c) + input_writes(x), c, p)
    n = ABORT_MODEL.sizes[-1]
    long_run = frame(202, Opcode.RUN, run_body(9, 65535))
    job = frame(205, Opcode.JOB, job_body(4, 2, x[::-1], c.input_bits))
    # (the design's request, the golden board's)
    steps = [(frame(k, Opcode.WRITE, b),) * 2 for k, b in enumerate(bodies)]
    steps += [(frame(200, Opcode.RUN, run_body(3, 2)),) * 2,
              (frame(201, Opcode.READ, read_body(0, n)),) * 2,
              ([long_run, delay, b"\0" + ABORT_FRAME], ABORT_FRAME),
              (frame(204, Opcode.READ, read_body(0, n)), frame(204, Opcode.READ, read_body(0, 0))),
              (job,) * 2, (frame(206, Opcode.READ, read_body(0, n)),) * 2,
              (long_run + ABORT_FRAME, ABORT_FRAME), (frame(209, Opcode.STATUS),) * 2]
    board = GoldenBoard(c, p)
    design = [mine for mine, _ in steps]
    expect = [board.feed(golden) for _, golden in steps]
    aborting = [k for k, (mine, golden) in enumerate(steps) if golden == ABORT_FRAME]
    return design, expect, aborting


def test_abort_stops_a_running_job_at_once(capsys):
    """Whatever the job is doing (seeding, layer 1's pass, the samples): ABORTED within
    ABORT_CYCLES of the ABORT's delimiter, no answer to the RUN, its counts gone (READ refused),
    not counted in ``jobs``; the next job is exact."""
    slowest = 0
    for delay in (200, 1000, 3000):
        design, expect, aborting = _abort_traffic(delay)
        answers, cycles, _ = _timed_exchange(ABORT_CONFIG, ABORT_PAYLOAD, design)
        for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
            assert g == e, f"answer {i} (delay {delay}): {g.hex()} != {e.hex()}"
        slowest = max(slowest, *(cycles[k] for k in aborting))
    assert slowest <= ABORT_CYCLES
    with capsys.disabled():
        print(f"\nabort: ABORTED answered at most {slowest} cycles after the ABORT's delimiter")
    first = aborting[0]
    assert [_status(a) for a in answers[first:first + 4]] == [
        Status.ABORTED, Status.OUT_OF_RANGE, Status.OK, Status.OK]
    job_answer = decode_frame(answers[first + 2][:-1], ABORT_PAYLOAD)
    assert int.from_bytes(job_answer[2:6], "little") == job_cycles(ABORT_MODEL.sizes,
                                                                   ABORT_CONFIG, 2)
    status = unpack(STATUS_RESPONSE, decode_frame(answers[-1][:-1], ABORT_PAYLOAD)[2:])
    assert status["jobs"] == 2 and status["bad_requests"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_abort_stops_a_running_job_on_the_verilog(simulator):
    design, expect, aborting = _abort_traffic(delay=300)
    # The link bench sends a request's bytes at once: 300 idle delimiters after the long job's
    # RUN let it start (else the ABORT would drop the RUN from the window instead). An aborting
    # request's bytes, one a cycle, and the ABORT's answer.
    design = [b"".join(bytes(p) if isinstance(p, int) else p for p in d)
              if isinstance(d, list) else d for d in design]
    limits = [200_000] * len(design)
    for k in aborting:
        limits[k] = len(design[k]) + ABORT_CYCLES
    got, _ = run_link_bench(ProtocolEngine(ABORT_CONFIG, ABORT_PAYLOAD), simulator=simulator,
                            requests=design, limits=limits)
    for i, (g, e) in enumerate(zip(got, expect, strict=True)):
        assert g == e, f"answer {i}: {g.hex()} != {e.hex()}"


def _loaded(config, seed, seq=1):
    """Frames loading a random 7-9-4 model into ``config``."""
    model = random_model((7, 9, 4), seed=seed, fmt=config.fmt)
    bodies = write_bodies(model_writes(model, config), config, MAX_PAYLOAD)
    return [encode_frame(request(seq + k, Opcode.WRITE, b), MAX_PAYLOAD)
            for k, b in enumerate(bodies)]


@pytest.mark.parametrize("window", [1024, 64], ids=["within-the-window", "overflowing"])
def test_abort_drops_every_request_queued_behind_a_job(window):
    """A job, then requests of every kind queued behind it (some that would change the state, bad
    frames, beyond the window's bytes or within them), then ABORT: the only answer is ABORTED;
    nothing queued ran, no frame error or OVERFLOW is answered, and the state is as before (the
    same JOB gives the same answer)."""
    c = CONFIG
    load = _loaded(c, seed=21)
    x = list(range(7))
    job = job_frame(40, 5, 3, x)
    bad_crc = bytearray(encode_frame(request(44, Opcode.STATUS), MAX_PAYLOAD))
    bad_crc[1] ^= 4
    first = encode_frame(request(41, Opcode.STATUS), MAX_PAYLOAD)   # held by the decoder
    queue = [first, encode_frame(request(42, Opcode.WRITE, write_body(Region.INPUT, 0, [9] * 7,
                                                                      c)), MAX_PAYLOAD),
             encode_frame(request(43, Opcode.WRITE, write_body(Region.CONFIG, 0, [1], c)),
                          MAX_PAYLOAD),
             bytes(bad_crc), job_frame(45, 6, 9, x[::-1]), b"\5\1\0",
             encode_frame(request(46, Opcode.ABORT, bytes([3])), MAX_PAYLOAD),
             encode_frame(request(47, Opcode.READ, read_body(0, 4)), MAX_PAYLOAD)] * 3
    queued = b"".join(queue) + b"\0" + ABORT_FRAME
    assert (len(queued) > window) == (window == 64)
    long_run = encode_frame(request(48, Opcode.RUN, run_body(1, 60000)), MAX_PAYLOAD)
    after = [encode_frame(request(50, Opcode.STATUS), MAX_PAYLOAD),
             encode_frame(request(51, Opcode.READ, read_body(0, 4)), MAX_PAYLOAD), job,
             encode_frame(request(53, Opcode.READ, read_body(0, 4)), MAX_PAYLOAD),
             encode_frame(request(54, Opcode.STATUS), MAX_PAYLOAD)]
    # (a pause once the decoder holds the first queued frame, so the window's bytes are known)
    design = load + [job, [long_run + first, 300, queued[len(first):]]] + after
    # The window keeps what follows the frame the decoder holds, up to its size.
    _, lost, _ = window_model(queued[len(first):], window)
    assert (lost > 0) == (window == 64)
    board = GoldenBoard(c, MAX_PAYLOAD, window)
    expect = [board.feed(r) for r in load + [job, ABORT_FRAME]]
    board.counters["overflows"] = lost      # the golden board has no window to lose frames from
    expect += [board.feed(r) for r in after[:1]]
    expect.append(board.feed(encode_frame(request(51, Opcode.READ, read_body(0, 0)),
                                          MAX_PAYLOAD)))
    expect += [board.feed(r) for r in after[2:]]
    answers, _, _ = _timed_exchange(c, MAX_PAYLOAD, design, window)
    for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
        assert g == e, f"answer {i}: {g.hex()} != {e.hex()}"
    k = len(load)
    assert answers[k + 4] == answers[k]              # the same JOB, the same answer
    assert [status_of(a) for a in answers[k + 1:k + 3]] == [Status.ABORTED.value, Status.OK.value]


def _answer_then_abort(config, before, request_, ready_p, at_once=False):
    """The design's answers to ``before`` (stop-and-wait), then to ``request_`` with an ABORT sent
    as the first byte of its answer comes out (``at_once``: right after the request), read under
    back-pressure at rate ``ready_p``."""
    dut = ProtocolEngine(config, MAX_PAYLOAD)
    rng = random.Random(1)
    answers = []

    async def host(ctx):
        for data in before:
            await send(ctx, dut.i, data, rng, 0.3)
            answers.append(bytes(await receive(ctx, dut.o, None, rng, 0.3,
                                               until=lambda b: b == 0)))
        await send(ctx, dut.i, request_, rng, 0.3)
        while not (at_once or ctx.get(dut.o.valid)):
            await ctx.tick()
        await send(ctx, dut.i, b"\0" + ABORT_FRAME, rng, 0.3)

    async def reader(ctx):
        while len(answers) < len(before):
            await ctx.tick()
        for _ in range(2):
            answers.append(bytes(await receive(ctx, dut.o, None, rng, 1 - ready_p,
                                               until=lambda b: b == 0)))

    run(dut, host, reader, cycles=100_000)
    return answers


@pytest.mark.parametrize("what", ["READ", "JOB", "IDENTIFY"])
def test_abort_while_an_answer_goes_out_comes_after_it(what):
    """An ABORT that arrives while an answer is being sent (a READ's, a JOB's packed counts) or
    made (an IDENTIFY hashing the noise table): that answer completes, then ABORTED, as the golden
    board says."""
    c = CONFIG
    load = _loaded(c, seed=22)
    before = load + [job_frame(30, 7, 40, list(range(7)))]
    if what == "READ":
        asked = encode_frame(request(31, Opcode.READ, read_body(0, 4)), MAX_PAYLOAD)
    elif what == "JOB":
        asked = job_frame(31, 8, 9, [3] * 7)
    else:   # a NOISE write first: the IDENTIFY hashes the table, then answers
        before.append(encode_frame(request(32, Opcode.WRITE, write_body(Region.NOISE, 5, [77], c)),
                                   MAX_PAYLOAD))
        asked = encode_frame(request(31, Opcode.IDENTIFY), MAX_PAYLOAD)
    answers = _answer_then_abort(c, before, asked, ready_p=0.2, at_once=what == "IDENTIFY")
    board = GoldenBoard(c, MAX_PAYLOAD)
    expect = [board.feed(r) for r in before] + frames_of(board.feed(asked + b"\0" + ABORT_FRAME))
    assert answers == expect
    assert [status_of(a) for a in answers[-2:]] == [Status.OK.value, Status.ABORTED.value]


def _near_misses():
    """Frames like ABORT's that are not ABORT_FRAME: another version's, another seq, no version,
    a byte flipped, cut short, one byte more."""
    body = ABORT_FRAME[:-1]
    misses = [encode_frame(request(0, Opcode.ABORT, bytes([v])), MAX_PAYLOAD)
              for v in (FORMAT_VERSION - 1, FORMAT_VERSION + 1, 0xFF)]
    misses += [encode_frame(request(9, Opcode.ABORT, bytes([FORMAT_VERSION])), MAX_PAYLOAD),
               encode_frame(request(0, Opcode.ABORT), MAX_PAYLOAD),
               encode_frame(request(0, Opcode.ABORT, bytes([FORMAT_VERSION, 0])), MAX_PAYLOAD),
               body[:-1] + b"\0", body + b"\1\0", b"\1" + body + b"\0", b"\0" + ABORT_FRAME[1:]]
    misses += [body[:at] + bytes([body[at] ^ 0x10]) + body[at + 1:] + b"\0"
               for at in range(len(body))]
    return misses


def test_near_misses_of_abort_are_answered_like_the_golden_board():
    """None of them aborts anything: each gets its own answer (BAD_VERSION with the design's
    version, BAD_FRAME, ...) in its place among jobs, sent in a window."""
    load = _loaded(CONFIG, seed=23)
    chunks = load + [job_frame(30, 1, 300, list(range(7)))]
    for k, miss in enumerate(_near_misses()):
        chunks += [miss, job_frame(40 + k, k, 2, [k % 32] * 7)]
    chunks.append(encode_frame(request(99, Opcode.STATUS), MAX_PAYLOAD))
    answers = exchange_window(CONFIG, MAX_PAYLOAD, chunks, stall_seed=3)
    board = GoldenBoard(CONFIG, MAX_PAYLOAD)
    expect = [a for chunk in chunks for a in frames_of(board.feed(chunk))]
    assert answers == expect
    got = [status_of(a) for a in answers]
    assert Status.BAD_VERSION.value in got and Status.BAD_FRAME.value in got
    assert Status.ABORTED.value not in got
    versions = [decode_frame(a[:-1], MAX_PAYLOAD)[2:] for a in answers
                if status_of(a) == Status.BAD_VERSION.value]
    assert len(versions) >= 6 and set(versions) == {bytes([FORMAT_VERSION])}


# ---- a window of requests in flight ---------------------------------------------------------------

def _mixed_traffic(seed, config):
    """Good traffic, JOBs (good and refused), ABORTs of other versions, then the bad traffic: every
    frame that a host within a window may send."""
    rng = random.Random(seed)
    traffic = good_traffic(seed, config)
    for k in range(12):
        inputs = [rng.randrange(1 << config.input_bits) for _ in range(7)]
        traffic.append(job_frame(100 + k, rng.randrange(1 << 64),
                                 rng.choice([1, 2, 3, 4, 7, 8, 15]), inputs, config))
        if k % 4 == 0:
            traffic.append(encode_frame(request(120 + k, Opcode.READ, read_body(0, 4)),
                                        MAX_PAYLOAD))
        if k % 5 == 0:
            traffic.append(encode_frame(request(130 + k, Opcode.ABORT, bytes([k])), MAX_PAYLOAD))
    return traffic + bad_traffic()


@pytest.mark.parametrize("config, window, seed, valid_p, ready_p", [
    (CONFIG, 1024, 1, 0.8, 0.8), (WIDE_CONFIG, 256, 2, 0.9, 0.4), (CONFIG, 128, 3, 0.5, 0.9)],
    ids=["2-lanes", "4-lanes-slow-reader", "2-lanes-small-window"])
def test_requests_in_a_window_are_answered_like_the_golden_board(config, window, seed, valid_p,
                                                                 ready_p):
    """Requests of every kind sent back to back, up to the window's bytes unanswered, with idle
    cycles and back-pressure: the answers are the golden board's, in order (bad frames in their
    places)."""
    chunks = [c for c in _mixed_traffic(seed, config) if len(c) <= window]
    answers = exchange_window(config, MAX_PAYLOAD, chunks, window=window, valid_p=valid_p,
                              ready_p=ready_p, stall_seed=seed)
    board = GoldenBoard(config, MAX_PAYLOAD, window)
    expect = [a for chunk in chunks for a in frames_of(board.feed(chunk))]
    for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
        assert g == e, f"answer {i}: {g.hex()} != golden {e.hex()}"
    assert board.counters["jobs"] > 10 and board.counters["crc_errors"] > 0


def test_frames_lost_to_a_full_window_are_answered_overflow_and_counted():
    """More than the window's bytes sent while a job runs (window 64): every frame the window kept
    is answered as the golden board does, the cut frame's remains BAD_FRAME, each lost frame
    OVERFLOW (seq 0xFF, no body) when the job's answer has gone, STATUS counts them, and the
    request after the host's 0x00 works."""
    c, window = CONFIG, 64
    load = _loaded(c, seed=24)
    job = job_frame(30, 3, 60, list(range(7)))      # a job of about 2500 cycles
    first = encode_frame(request(31, Opcode.STATUS), MAX_PAYLOAD)
    burst = [encode_frame(request(32 + k, op, body), MAX_PAYLOAD) for k, (op, body) in enumerate(
        [(Opcode.IDENTIFY, b""), (Opcode.SYNC, b""), (Opcode.READ, read_body(0, 4)),
         (Opcode.WRITE, write_body(Region.INPUT, 0, [1, 2, 3], c)), (Opcode.STATUS, b"")] * 6)]
    line = first + b"".join(burst)
    kept, lost, _ = window_model(line[len(first):], window)
    assert job_cycles((7, 9, 4), c, 60) > 300 + 2 * len(line)
    assert lost >= 10 and kept[-1] != 0                         # a cut frame at the end
    status = encode_frame(request(90, Opcode.STATUS), MAX_PAYLOAD)
    board = GoldenBoard(c, MAX_PAYLOAD, window)
    expect = [board.feed(r) for r in load] + frames_of(board.feed(job))
    overflow = encode_frame(pack(RESPONSE_HEADER, seq=UNREADABLE_SEQ,
                                 status=Status.OVERFLOW.value), MAX_PAYLOAD)
    board.counters["overflows"] = lost      # all lost while the job ran
    expect += [overflow] * lost + frames_of(board.feed(first + bytes(kept) + b"\0" + status))
    # The burst once the job runs and the decoder holds the first frame after it.
    counts = [1] * len(load) + [len(expect) - len(load) - 2, 2]
    answers = exchange_window(c, MAX_PAYLOAD, load + [[job + first, 300, line[len(first):]],
                                                      b"\0" + status],
                              window=window, counts=counts, valid_p=1.0, ready_p=0.8)
    for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
        assert g == e, f"answer {i}: {g.hex()} != {e.hex()}"
    assert status_of(answers[-2]) == Status.BAD_FRAME.value
    told = unpack(STATUS_RESPONSE, decode_frame(answers[-1][:-1], MAX_PAYLOAD)[2:])
    assert told["overflows"] == lost


# ---- JOB -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, sizes, samples", [
    (CONFIG, (7, 9, 4), (1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63)),
    (CONFIG, (16, 13), (64, 100, 127, 128, 6, 1)),
    (WIDE_CONFIG, (5, 16, 6, 16), (1, 2, 3, 7, 8, 15, 16)),
    (WIDE_CONFIG, (13, 3), (255, 256, 511, 512, 1023))],
    ids=["2-lanes", "2-lanes-16-in", "4-lanes-3-layers", "4-lanes-13-in"])
def test_jobs_answer_like_the_golden_board(config, sizes, samples):
    """JOBs of random inputs and seeds at the edges of every count width up to 10 bits, on several
    networks and lane counts, sent in a window: each answer (cycles, packed counts) the golden
    board's, the counts readable by READ after."""
    rng = random.Random(sizes[0])
    model = random_model(sizes, seed=sizes[0], fmt=config.fmt)
    bodies = write_bodies(model_writes(model, config), config, MAX_PAYLOAD)
    chunks = [encode_frame(request(k, Opcode.WRITE, b), MAX_PAYLOAD) for k, b in enumerate(bodies)]
    for k, s in enumerate(samples):
        inputs = [rng.randrange(1 << config.input_bits) for _ in range(sizes[0])]
        chunks.append(job_frame(k, rng.randrange(1 << 64), s, inputs, config))
        if k % 3 == 0:
            chunks.append(encode_frame(request(200 + k, Opcode.READ, read_body(0, sizes[-1])),
                                       MAX_PAYLOAD))
    answers = exchange_window(config, MAX_PAYLOAD, chunks, stall_seed=sizes[0])
    board = GoldenBoard(config, MAX_PAYLOAD)
    expect = [board.feed(chunk) for chunk in chunks]
    for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
        assert g == e, f"answer {i} to {chunks[i].hex()}: {g.hex()} != golden {e.hex()}"
    assert all(status_of(a) == Status.OK.value for a in answers)


def test_long_jobs_answer_like_the_golden_board_on_the_verilog():
    """S at 2^k - 1 and 2^k up to 65535 (count widths 9 .. 16 bits) on tiny networks, on
    Verilator (the Amaranth simulator would take minutes)."""
    c = CONFIG
    every = [s for k in range(9, 17) for s in ((1 << k) - 1, 1 << k) if s < 1 << 16]
    frames = []
    for sizes, samples in (((2, 2), every), ((1, 3), (1023, 1024, 8191, 65535))):
        model = random_model(sizes, seed=sizes[1], fmt=c.fmt)
        frames += [encode_frame(request(k, Opcode.WRITE, b), MAX_PAYLOAD)
                   for k, b in enumerate(write_bodies(model_writes(model, c), c, MAX_PAYLOAD))]
        frames += [job_frame(k, 3 * s + k, s, [(s + k) % 32] * sizes[0])
                   for k, s in enumerate(samples)]
    expect, board = golden_answers(frames)
    got, _ = run_link_bench(ProtocolEngine(c, MAX_PAYLOAD), simulator="verilator",
                            requests=frames, valid_p=0.8, ready_p=0.8, stall_seed=7,
                            max_cycles=3_000_000)
    for i, (g, e) in enumerate(zip(got, expect, strict=True)):
        assert g == e, f"answer {i} to {frames[i].hex()}: {g.hex()} != golden {e.hex()}"
    assert all(status_of(a) == Status.OK.value for a in got)
    assert board.counters["jobs"] == len(every) + 4


def _job_body(samples, inputs, seed=1, config=CONFIG):
    return job_body(seed, samples, inputs, config.input_bits)


def test_bad_jobs_are_refused_like_the_golden_board_and_the_next_job_works():
    """Before a model (NO_MODEL), truncated (in the header, in the input), too long, with a
    padding bit set, 0 samples, on sizes never written or a network too large (BAD_CONFIG): each
    refused as the golden board says, the inputs it wrote before its end kept (a RUN and a READ
    after show them), and the good JOB after it answered exactly."""
    c = CONFIG
    good = [5, 1, 30, 7, 0, 31, 2]         # 7 inputs of 5 bits: 35 bits, 5 padding bits
    full = _job_body(3, good)
    load = _loaded(c, seed=25, seq=100)
    bad = [
        _job_body(3, []),                                      # no model yet
        full[:4], full[:10], full[:11], full[:-1],             # truncated
        full + b"\0", full + b"\1\2",                          # too long
        full[:-1] + bytes([full[-1] | 0x20]),                  # a padding bit
        full[:-1] + bytes([full[-1] | 0x80]) + b"\0",          # and too long: padding first
        _job_body(0, good), _job_body(2, good[:6]), _job_body(2, good + [1]),
        b"",
    ]
    frames = []
    for k, body in enumerate(bad):
        if k == 1:
            frames += load
        frames += [encode_frame(request(k, Opcode.JOB, body), MAX_PAYLOAD),
                   encode_frame(request(40 + k, Opcode.RUN, run_body(k, 2)), MAX_PAYLOAD),
                   encode_frame(request(60 + k, Opcode.READ, read_body(0, 4)), MAX_PAYLOAD),
                   job_frame(80 + k, k, 2, good[::-1])]

    def config(seq, addr, values):
        return encode_frame(request(seq, Opcode.WRITE, write_body(Region.CONFIG, addr, values, c)),
                            MAX_PAYLOAD)

    frames += [config(100, 0, [3]), job_frame(101, 1, 2, good),    # N_3 never written
               config(102, 2, [16, 16, 16]),                        # 7-16-16-16: 312 words
               job_frame(103, 1, 2, good),
               config(104, 0, [2]), job_frame(105, 1, 2, good),     # 7-16-16 fits
               encode_frame(request(106, Opcode.STATUS), MAX_PAYLOAD)]
    answers = exchange_window(c, MAX_PAYLOAD, frames, stall_seed=8)
    expect, board = golden_answers(frames)
    for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
        assert g == e, f"answer {i} to {frames[i].hex()}: {g.hex()} != golden {e.hex()}"
    jobs = [Status(status_of(a)) for f, a in zip(frames, answers, strict=True)
            if decode_frame(f[:-1], MAX_PAYLOAD)[1] == Opcode.JOB.value]
    assert set(jobs) == {Status.OK, Status.NO_MODEL, Status.BAD_LENGTH, Status.OUT_OF_RANGE,
                         Status.BAD_CONFIG}


def test_a_job_whose_answer_does_not_fit_a_frame_is_refused():
    """max_payload 16: 16 counts fit at up to 5 bits (2 + 4 + 10 bytes), not at 6; 13 counts at
    6, not at 7."""
    c, p = CONFIG, 16
    frames = []
    for sizes in ((2, 16), (2, 13)):
        model = random_model(sizes, seed=sizes[1], fmt=c.fmt)
        frames += [encode_frame(request(k, Opcode.WRITE, b), p)
                   for k, b in enumerate(write_bodies(model_writes(model, c), c, p))]
        frames += [encode_frame(request(k, Opcode.JOB, _job_body(s, [k] * sizes[0])), p)
                   for k, s in enumerate((1, 31, 32, 63, 64))]
    answers = exchange_window(c, p, frames, stall_seed=9)
    board = GoldenBoard(c, p)
    expect = [board.feed(f) for f in frames]
    for i, (g, e) in enumerate(zip(answers, expect, strict=True)):
        assert g == e, f"answer {i} to {frames[i].hex()}: {g.hex()} != golden {e.hex()}"
    jobs = [Status(decode_frame(a[:-1], p)[1]) for f, a in zip(frames, answers, strict=True)
            if decode_frame(f[:-1], p)[1] == Opcode.JOB.value]
    assert jobs == [Status.OK] * 2 + [Status.OUT_OF_RANGE] * 3 + [Status.OK] * 4 + [
        Status.OUT_OF_RANGE]


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

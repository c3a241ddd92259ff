"""Link traffic shared by the protocol tests: a small design, good and bad request sequences whose
every answer byte the tests compare with the golden board, JOBs, the window's overflow rule, and a
host that keeps a window of requests in flight (:func:`exchange_window`)."""

import dataclasses
import random

import numpy as np

from spinemu.hdl.formats import NeuronFormat
from spinemu.hdl.framing import cobs_encode, decode_frame, encode_frame, max_encoded_length
from spinemu.hdl.memory_map import (
    EngineConfig,
    Region,
    input_writes,
    model_writes,
    network_words,
)
from spinemu.hdl.model_image import random_model
from spinemu.hdl.noise_table import thermal
from spinemu.hdl.protocol import (
    WINDOW,
    Opcode,
    Status,
    job_body,
    read_body,
    request,
    run_body,
    write_bodies,
    write_body,
)
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.sim.board.model import GoldenBoard
from spinemu.sim.streams import receive, run, send

CONFIG = EngineConfig(lanes=2, max_layers=3, max_inputs=16, max_width=16, weight_depth=256,
                      param_depth=32)
#: Four lanes, and parameter entries wider than 8 bytes (a 22-bit pre-activation).
WIDE_CONFIG = EngineConfig(lanes=4, max_layers=3, max_inputs=16, max_width=16, weight_depth=256,
                           param_depth=32, fmt=NeuronFormat(a_width=22))
#: Parameter memories too small for the largest networks the limits allow (RUN's check).
TIGHT_CONFIG = EngineConfig(lanes=2, max_layers=3, max_inputs=16, max_width=16, weight_depth=256,
                            param_depth=12)
MAX_PAYLOAD = 64


def _frames(payloads):
    return [encode_frame(p, MAX_PAYLOAD) for p in payloads]


def _load(model, x, seq, config=CONFIG):
    bodies = write_bodies(model_writes(model, config) + input_writes(x), config, MAX_PAYLOAD)
    return [request(seq + i, Opcode.WRITE, b) for i, b in enumerate(bodies)]


def status_of(answer):
    """The status byte of an answer frame."""
    return decode_frame(answer[:-1], MAX_PAYLOAD)[1]


def golden_answers(requests, config=CONFIG):
    """The golden board's answers, and the board (for its counters)."""
    board = GoldenBoard(config, MAX_PAYLOAD)
    return [board.feed(r) for r in requests], board


def good_traffic(seed, config=CONFIG, table=None):
    """IDENTIFY, a model load (with noise table ``table``, the thermal one by default), IDENTIFY
    (its hash), jobs with different seeds and inputs, READs, STATUS and SYNC."""
    rng = np.random.default_rng(seed)
    model = dataclasses.replace(random_model((7, 9, 4), seed=seed, fmt=config.fmt),
                                noise=thermal() if table is None else table)
    payloads = [request(1, Opcode.IDENTIFY)] + _load(model, rng.integers(0, 32, 7), 10, config)
    payloads += [request(49, Opcode.IDENTIFY), request(48, Opcode.SYNC)]
    payloads += [request(50, Opcode.RUN, run_body(int(rng.integers(0, 2 ** 63)), 3)),
                 request(51, Opcode.READ, read_body(0, 4)),
                 request(52, Opcode.READ, read_body(1, 2)), request(53, Opcode.STATUS)]
    payloads += _load(model, rng.integers(0, 32, 7), 60, config)
    payloads += [request(90, Opcode.RUN, run_body(2 ** 64 - 1, 5)),
                 request(91, Opcode.READ, read_body(0, 4)),
                 request(92, Opcode.RUN, run_body(0, 2)), request(93, Opcode.READ, read_body(0, 4))]
    return _frames(payloads)


def long_frames(max_payload=MAX_PAYLOAD):
    """Undelimited runs far longer than any frame, each ended by a delimiter: whole COBS (a length
    error), COBS broken just past the decoder's limit and thousands of bytes past it, and frames
    at the longest encoding and one byte longer."""
    keep = max_encoded_length(max_payload)
    return [
        b"\2" * 3000 + b"\5\0",                      # COBS broken 3000 bytes in
        b"\1" * 2000 + b"\0",                         # every byte a code byte: too long
        (b"\xff" + b"\7" * 254) * 12 + b"\1\0",       # 254-byte blocks: too long
        b"\1" * (keep + 1) + b"\0",                   # one byte past the longest encoding
        b"\1" * keep + b"\0",                         # the longest: judged by its CRC
        b"\1" * keep + b"\3\0",                       # COBS broken one byte past it
    ]


#: Statuses of the bad requests in :func:`bad_traffic`, in order.
BAD_STATUSES = [Status.BAD_LENGTH, Status.NO_MODEL, Status.BAD_OPCODE, Status.BAD_OPCODE,
                Status.BAD_LENGTH, Status.OUT_OF_RANGE, Status.BAD_LENGTH, Status.OUT_OF_RANGE,
                Status.OUT_OF_RANGE, Status.OUT_OF_RANGE, Status.OUT_OF_RANGE, Status.BAD_LENGTH,
                Status.BAD_LENGTH, Status.BAD_LENGTH, Status.OUT_OF_RANGE]
#: Statuses of the requests after the model load in :func:`bad_traffic`.
TAIL_STATUSES = [Status.OUT_OF_RANGE, Status.OK, Status.OUT_OF_RANGE, Status.OUT_OF_RANGE,
                 Status.OK, Status.OK]


#: The frame errors of :func:`bad_traffic`'s unreadable frames.
BAD_FRAME_ERRORS = {"cobs_errors": 3, "length_errors": 4, "crc_errors": 2}


def bad_traffic():
    """Unreadable frames (short and far too long), an empty frame before a good one, every kind
    of bad request, then a model load and a good job among more bad requests."""
    good = encode_frame(request(7, Opcode.STATUS), MAX_PAYLOAD)
    corrupt_crc = bytearray(good)
    corrupt_crc[2] ^= 0x40
    raw = [
        bytes(corrupt_crc),
        bytes([5, 1, 2]) + b"\0",                             # a COBS code byte past the end
        cobs_encode(bytes(range(1, 120))) + b"\0",            # longer than the payload limit
        *long_frames(),
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
    model = random_model((7, 9, 4), seed=5, fmt=CONFIG.fmt)
    payloads += _load(model, np.arange(7), 30)
    payloads += [request(60, Opcode.RUN, run_body(9, 0)),     # zero samples
                 request(61, Opcode.RUN, run_body(9, 4)),
                 request(62, Opcode.READ, read_body(3, 2)),   # past the 4 results
                 request(63, Opcode.READ, read_body(0, 40)),  # more than one frame holds
                 request(64, Opcode.READ, read_body(0, 4)),
                 request(65, Opcode.STATUS)]
    return raw + _frames(payloads)


def _network(config, seed, accept):
    """Layer sizes within ``config``'s CONFIG limits whose ``(weight words, parameter entries)``
    satisfy ``accept``, found by a seeded search; None if the search finds none."""
    c, rng = config, random.Random(seed)
    for _ in range(20000):
        sizes = [rng.randint(1, c.max_inputs)] + [rng.randint(1, c.max_width)
                                                  for _ in range(rng.randint(1, c.max_layers))]
        if accept(*network_words(sizes, c.lanes)):
            return sizes
    return None


def issue_traffic(config=CONFIG):
    """Sequences that broke the design or the golden board (issue #11), from reset, and the
    status of each answer: a refused WRITE before writes to every region, RUN with a layer count
    but no sizes, with some sizes, with a layer added to a loaded model, then with networks that
    fit the memories exactly, have too many weight words or too many parameter entries."""
    c = config
    frames, statuses = [], []
    seq = iter(range(1, 255))

    def send(status, opcode, body=b""):
        frames.append(encode_frame(request(next(seq), opcode, body), MAX_PAYLOAD))
        statuses.append(status)

    def write(status, region, addr, values):
        send(status, Opcode.WRITE, write_body(region, addr, values, c))

    def network(sizes, status):
        write(Status.OK, Region.CONFIG, 0, [len(sizes) - 1, *sizes])
        send(status, Opcode.RUN, run_body(77, 2))

    full = (1 << c.word_bits(Region.PARAM)) - 1
    write(Status.OUT_OF_RANGE, Region.PARAM, c.lanes * c.param_depth, [full])
    write(Status.OK, Region.CONFIG, 0, [2])
    write(Status.OK, Region.INPUT, 0, [1, 2])
    write(Status.OK, Region.WEIGHT, 0, [(1 << c.word_bits(Region.WEIGHT)) - 1])
    write(Status.OK, Region.PARAM, 0, [full])
    send(Status.BAD_CONFIG, Opcode.RUN, run_body(1, 1))       # a layer count, no sizes
    write(Status.OK, Region.CONFIG, 1, [7, 9])
    send(Status.BAD_CONFIG, Opcode.RUN, run_body(1, 1))       # N_2 never written
    model = random_model((7, 9, 4), seed=8, fmt=c.fmt)
    bodies = write_bodies(model_writes(model, c) + input_writes(range(7)), c, MAX_PAYLOAD)
    for body in bodies:
        send(Status.OK, Opcode.WRITE, body)
    send(Status.OK, Opcode.RUN, run_body(5, 3))
    send(Status.OK, Opcode.READ, read_body(0, 4))
    write(Status.OK, Region.CONFIG, 0, [3])                   # a layer on the 2-layer model
    send(Status.BAD_CONFIG, Opcode.RUN, run_body(5, 3))
    send(Status.OK, Opcode.READ, read_body(0, 4))             # a refused RUN keeps the results
    write(Status.OK, Region.CONFIG, 4, [5])
    send(Status.OK, Opcode.RUN, run_body(5, 3))               # (7, 9, 4, 5) fits
    send(Status.OK, Opcode.READ, read_body(0, 5))
    depth, entries = c.weight_depth, c.param_depth
    for seed, accept, status in [
            (1, lambda w, e: w == depth and e <= entries, Status.OK),
            (2, lambda w, e: w > depth and e <= entries, Status.BAD_CONFIG),
            (3, lambda w, e: w <= depth and e > entries, Status.BAD_CONFIG),
            (4, lambda w, e: w <= depth and e == entries, Status.OK)]:
        sizes = _network(c, seed, accept)
        if sizes is not None:
            network(sizes, status)
    send(Status.OK, Opcode.STATUS)
    return frames, statuses


def frames_of(data):
    """The frames in ``data`` (answers as a design sends them), each with its delimiter."""
    return [bytes(f) + b"\0" for f in bytes(data).split(b"\0")[:-1]]


def job_frame(seq, seed, samples, inputs, config=CONFIG, max_payload=MAX_PAYLOAD):
    return encode_frame(request(seq, Opcode.JOB, job_body(seed, samples, inputs,
                                                            config.input_bits)), max_payload)


def window_model(data, room, dropping=False, lost=False):
    """What the window's overflow rule keeps of ``data`` arriving with ``room`` bytes free and
    nothing taken out (``hdl/rx_window.py``): the bytes kept, the frames lost, and the state
    after, ``(room, dropping, lost)``."""
    kept, lost_frames = [], 0
    for byte in data:
        if room == 0 or (dropping and byte != 0):
            dropping = True
            if byte != 0 and not lost:
                lost_frames, lost = lost_frames + 1, True
        else:
            kept.append(byte)
            room -= 1
            dropping = dropping and byte != 0
        lost = lost and byte != 0
    return kept, lost_frames, (room, dropping, lost)


def _parts(chunk):
    return chunk if isinstance(chunk, list) else [chunk]


def _bytes_of(chunk):
    return b"".join(part for part in _parts(chunk) if not isinstance(part, int))


def exchange_window(config, max_payload, chunks, *, window=WINDOW, counts=None, valid_p=0.7,
                    ready_p=0.7, stall_seed=0, max_cycles=3_000_000):
    """The answer frames of a :class:`ProtocolEngine` with a window of ``window`` bytes to
    ``chunks`` sent back to back, with random idle cycles and back-pressure, by a host within its
    credits. A chunk is bytes on the link, or a list of bytes and of idle cycles between them. It
    is sent once the bytes of the chunks not yet answered and its own are at most ``window`` (one
    longer, once none are in flight: it may overflow the window); its bytes count until its
    ``counts[k]`` answers have come (default: as many as the golden board gives it), or those of
    a later chunk."""
    if counts is None:
        board = GoldenBoard(config, max_payload, window)
        counts = [len(frames_of(board.feed(_bytes_of(chunk)))) for chunk in chunks]
    if not counts or counts[-1] == 0:
        raise ValueError("the last chunk gets no answer: nothing would tell the host it is done")
    sizes = [len(_bytes_of(chunk)) for chunk in chunks]
    dut = ProtocolEngine(config, max_payload, window)
    rng = random.Random(stall_seed)
    send_rng, receive_rng = random.Random(rng.random()), random.Random(rng.random())
    answers, in_flight = [], [0]

    async def host(ctx):
        for chunk, size in zip(chunks, sizes, strict=True):
            while in_flight[0] and in_flight[0] + size > window:
                await ctx.tick()
            in_flight[0] += size
            for part in _parts(chunk):
                if isinstance(part, int):
                    await ctx.tick().repeat(part)
                else:
                    await send(ctx, dut.i, part, send_rng, 1 - valid_p)

    async def reader(ctx):
        done = 0        # chunks whose bytes no longer count
        for k, n in enumerate(counts):
            for _ in range(n):
                answer = await receive(ctx, dut.o, None, receive_rng, 1 - ready_p,
                                       until=lambda byte: byte == 0)
                answers.append(bytes(answer))
            if n:
                in_flight[0] -= sum(sizes[done:k + 1])
                done = k + 1

    run(dut, host, reader, cycles=max_cycles)
    return answers

"""The host client against the golden board: IDENTIFY, model loading and refusal, jobs equal to the
golden model, reconstruction, and the window of requests: credits respected on a port that models
the design's receive window, jobs as one JOB each (or WRITEs, RUN alone and READs where a JOB does
not fit), streamed results, connect's ABORT dropping what a previous host left, versions refused
both ways; faults injected on the transport with many requests in flight (bytes or whole frames
dropped, corrupted, duplicated, delayed, a link that goes silent or dies, a board in use, a line
that echoes) that end in correct results or a clear error, never a wrong, missing or duplicated
result."""

import dataclasses
import random
import re
import select
import socket
import threading
import time
from collections import deque

import numpy as np
import pytest

from protocol_traffic import CONFIG, MAX_PAYLOAD
from spinemu.hdl.framing import decode_frame, encode_frame
from spinemu.hdl.memory_map import Region, fitted_config, job_cycles, job_inputs, model_writes
from spinemu.hdl.model_image import ModelError, ModelImage, random_model
from spinemu.hdl.noise_table import gaussian, logistic, thermal
from spinemu.hdl.protocol import (
    ABORT_FRAME,
    FORMAT_VERSION,
    IDENTIFY_RESPONSE,
    RESPONSE_HEADER,
    UNREADABLE_SEQ,
    WINDOW,
    Opcode,
    Status,
    build_hash,
    identify_body,
    pack,
    request,
    unpack,
    write_bodies,
)
from spinemu.host.client import (
    DEFAULT_BAUD,
    MAX_IN_FLIGHT,
    Client,
    DesignInfo,
    LinkError,
    ProtocolError,
    SpinemuError,
)
from spinemu.host.models import DEFAULT_MODEL
from spinemu.sim.board import start_server
from spinemu.sim.board.model import GoldenBoard
from spinemu.sim.engine_model import run_jobs

MODEL = random_model((7, 9, 4), seed=3, fmt=CONFIG.fmt)
SAMPLES = 5
#: A model whose answers at S >= 16 do not fit frames of FALLBACK_PAYLOAD bytes (64 counts of 5
#: bits: a 46-byte payload), while at S = 5 they do (30 bytes); its 40 inputs take two WRITEs.
WIDE_MODEL = random_model((40, 9, 64), seed=6, fmt=CONFIG.fmt)
WIDE_CONFIG = fitted_config(WIDE_MODEL, 2)
FALLBACK_PAYLOAD = 40


def _jobs(n, seed=0, inputs=7):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 32, (n, inputs)),
            [int(s) for s in rng.integers(0, 2 ** 64, n, np.uint64)])


@pytest.fixture(scope="module")
def server():
    with start_server("golden", CONFIG, MAX_PAYLOAD) as srv:
        yield srv


@pytest.fixture
def fresh_server():
    with start_server("golden", CONFIG, MAX_PAYLOAD) as srv:
        yield srv


# ---- the fakes ---------------------------------------------------------------------------------

class FakePort:
    """A serial line to ``board`` (a :class:`GoldenBoard`, or anything with its ``feed``) that
    models the design's receive window: the bytes written wait in a FIFO (``fifo``; its largest
    size is ``peak``), the design takes one frame from it per read and answers it (and the next
    while no answer is due), and an ``ABORT_FRAME`` on the line (``sees_abort``) empties it and
    is answered at once. The line keeps the order of its bytes. ``fault(direction, data)``
    returns ``[(delay_s, bytes), ...]`` for each write (``"up"``) and each answer frame
    (``"down"``); ``stale``: bytes a previous host left unread; ``queued``: its requests the
    design had not yet taken. ``taken`` lists the frames the design took, each with the FIFO's
    size after it."""

    def __init__(self, board, *, fault=None, stale=b"", queued=b"", sees_abort=True):
        self.board, self.sees_abort = board, sees_abort
        self.fault = fault or (lambda direction, data: [(0.0, data)])
        self.fifo = bytearray(queued)
        self.out = deque()          # (due, bytes) the design sent, not yet read
        self._due = 0.0
        self.timeout = 0.05
        self.peak = 0
        self.taken = []
        self.writes = 0
        if stale:
            self._deliver(stale, 0.0)

    def write(self, data):
        self.writes += 1
        for _, chunk in self.fault("up", bytes(data)):
            self.fifo += chunk
            if self.sees_abort and (self.fifo.startswith(ABORT_FRAME)
                                    or b"\x00" + ABORT_FRAME in self.fifo):
                self.fifo.clear()           # seen on the line: the queue is dropped
                self._answer(ABORT_FRAME)
            self.peak = max(self.peak, len(self.fifo))
        return len(data)

    def _answer(self, frame):
        answer = self.board.feed(frame)
        if answer:
            for delay, chunk in self.fault("down", answer):
                self._deliver(chunk, delay)

    def _deliver(self, data, delay):
        self._due = max(time.monotonic() + delay, self._due)
        self.out.append((self._due, data))

    def _step(self):
        """The design takes the next frame from its window (skipping lone delimiters)."""
        while (end := self.fifo.find(0)) >= 0:
            frame = bytes(self.fifo[:end + 1])
            del self.fifo[:end + 1]
            if frame != b"\x00":
                self.taken.append((frame, len(self.fifo)))
                self._answer(frame)
                return

    def read(self, size):
        self._step()
        deadline = time.monotonic() + (self.timeout or 0)
        while True:
            now, got = time.monotonic(), bytearray()
            while self.out and self.out[0][0] <= now and len(got) < size:
                due, data = self.out.popleft()
                room = size - len(got)
                got += data[:room]
                if len(data) > room:
                    self.out.appendleft((due, data[room:]))
            if got:
                return bytes(got)
            if now >= deadline:
                return b""
            if self.fifo.find(0) >= 0:      # the design goes on while no answer is on the way
                self._step()
                continue
            time.sleep(max(0.0, min(self.out[0][0] if self.out else deadline, deadline) - now))

    def close(self):
        pass

    def opcodes(self):
        """The opcode of each request frame the design took that decodes."""
        codes = []
        for frame, _ in self.taken:
            try:
                codes.append(decode_frame(frame[:-1], 1 << 16)[1])
            except ValueError:
                codes.append(None)
        return codes


def _fake_client(board, **options):
    """A client on a :class:`FakePort` to ``board``, connected as :meth:`Client.connect` does."""
    port = FakePort(board, **options.pop("port", {}))
    dev = Client(port, url="fake://board", **{"timeout": 0.1, "min_clock_hz": 10 ** 6, **options})
    dev.open()
    return dev, port


def _frame_fault(seed, p_drop=0.0, p_corrupt=0.0, p_dup=0.0, p_delay=0.0, delay=0.03):
    """Whole frames dropped, a bit flipped, sent twice or delayed, each with its probability, in
    both directions."""
    rng = random.Random(seed)

    def fault(direction, data):
        r = rng.random()
        if r < p_drop:
            return []
        r -= p_drop
        if r < p_corrupt:
            data = bytearray(data)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return [(0.0, bytes(data))]
        r -= p_corrupt
        if r < p_dup:
            return [(0.0, data), (0.0, data)]
        r -= p_dup
        return [(delay if r < p_delay else 0.0, data)]
    return fault


class Proxy:
    """A TCP proxy between a client and a server that passes each chunk through ``fault(direction,
    chunk, now)``, which returns ``[(delay_s, bytes), ...]`` to deliver (or raises
    :class:`Proxy.Die` to close both sides). ``up`` is client-to-server, ``down`` the other way.
    As a serial line, it keeps the order of the bytes in each direction (a delayed chunk delays the
    ones after it)."""

    class Die(Exception):
        pass

    def __init__(self, target, fault=None):
        self.target, self.fault = target, fault or (lambda d, chunk, now: [(0.0, chunk)])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent = {"up": bytearray(), "down": bytearray()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self):
        conns = []
        try:
            while not self._stop.is_set():
                if not select.select([self.listener], [], [], 0.05)[0]:
                    continue
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
                conns = [client, upstream]
                self._pump(client, upstream)
                for c in conns:
                    c.close()
        finally:
            for c in conns:
                c.close()
            self.listener.close()

    def _pump(self, client, upstream):
        queue = []                                  # (due, order, sock, direction, data)
        last = {"up": 0.0, "down": 0.0}
        peer = {client: (upstream, "up"), upstream: (client, "down")}
        order = 0
        while not self._stop.is_set():
            now = time.monotonic()
            for item in sorted(q for q in queue if q[0] <= now):
                queue.remove(item)
                item[2].sendall(item[4])
                self.sent[item[3]] += item[4]
            ready = select.select([client, upstream], [], [], 0.005)[0]
            for sock in ready:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                target, direction = peer[sock]
                try:
                    deliveries = self.fault(direction, chunk, now)
                except Proxy.Die:
                    return
                for delay, data in deliveries:
                    if data:
                        last[direction] = due = max(now + delay, last[direction])
                        queue.append((due, order, target, direction, data))
                        order += 1

    def close(self):
        self._stop.set()
        self._thread.join(5)


def _byte_fault(seed, p_corrupt=0.0, p_drop=0.0):
    rng = random.Random(seed)

    def fault(direction, chunk, now):
        out = bytearray()
        for b in chunk:
            r = rng.random()
            if r < p_drop:
                continue
            if r < p_drop + p_corrupt:
                b ^= 1 << rng.randrange(8)
            out.append(b)
        return [(0.0, bytes(out))]
    return fault


def _check_batch(url, jobs=20, seed=0, **options):
    x, seeds = _jobs(jobs, seed)
    with Client.connect(url, **options) as dev:
        dev.load_model(MODEL)
        result = dev.run(x, seeds, SAMPLES)
        stats = dev.stats
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, SAMPLES))
    return result, stats


# ---- the protocol ------------------------------------------------------------------------------

def test_identify_decodes_the_design(server):
    with Client.connect(server.url) as dev:
        info = dev.info
        assert dev.identify() == info
    assert info.config == CONFIG
    assert info.max_payload == MAX_PAYLOAD and info.window == WINDOW
    assert info.version == FORMAT_VERSION
    assert info.build_hash == build_hash(CONFIG, MAX_PAYLOAD)
    assert info.hash_matches
    assert DEFAULT_BAUD == 3_000_000


def test_identify_body_errors():
    body = identify_body(CONFIG, MAX_PAYLOAD)
    assert DesignInfo.from_body(body).config == CONFIG
    with pytest.raises(ProtocolError, match="bytes, not"):
        DesignInfo.from_body(body[:-1])
    with pytest.raises(ProtocolError, match="format version 9; this client speaks version 6"):
        DesignInfo.from_body(bytes([9]) + body[1:])
    # The version is judged before the length: a version-3 body is shorter (no window).
    with pytest.raises(ProtocolError, match="format version 3; this client speaks version 6"):
        DesignInfo.from_body(bytes([3]) + body[1:-6])
    fields = unpack(IDENTIFY_RESPONSE, body)
    fields["lanes"] = 3                              # 3 lanes: not a power of two
    with pytest.raises(ProtocolError, match="impossible configuration"):
        DesignInfo.from_body(pack(IDENTIFY_RESPONSE, **fields))
    fields.update(lanes=2, build_hash=fields["build_hash"] ^ 1)  # another build, same parameters
    assert not DesignInfo.from_body(pack(IDENTIFY_RESPONSE, **fields)).hash_matches
    fields.update(build_hash=build_hash(CONFIG, MAX_PAYLOAD, 512), window=512)
    info = DesignInfo.from_body(pack(IDENTIFY_RESPONSE, **fields))
    assert info.window == 512 and info.hash_matches


def test_jobs_equal_the_golden_model(server):
    x, seeds = _jobs(12, seed=1)
    with Client.connect(server.url) as dev:
        dev.load_model(MODEL)
        result = dev.run(x, seeds, SAMPLES)
        status = dev.status()
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, SAMPLES))
    assert result.counts.dtype == np.int64 and result.counts.shape == (12, 4)
    assert (result.cycles == job_cycles(MODEL.sizes, CONFIG, SAMPLES)).all()
    assert result.link.requests == 12 and result.link.resends == 0      # one JOB per job
    assert status.jobs >= 12 and status.crc_errors == status.overflows == 0


def test_iter_run_yields_each_job_in_order_as_it_comes():
    x, seeds = _jobs(60, seed=8)
    dev, port = _fake_client(GoldenBoard(CONFIG, MAX_PAYLOAD))
    dev.load_model(MODEL)
    writes = port.writes
    results = []
    for k, counts, cycles in dev.iter_run(x, seeds, SAMPLES):
        results.append((k, counts, cycles))
        if k == 0:
            first = port.writes - writes         # requests sent when the first result came
    assert [k for k, _, _ in results] == list(range(60))
    assert 1 < first < 60
    np.testing.assert_array_equal(np.array([c for _, c, _ in results]),
                                  run_jobs(MODEL, x, seeds, SAMPLES))
    assert {c for _, _, c in results} == {job_cycles(MODEL.sizes, CONFIG, SAMPLES)}
    # Stopped early, the rest is left to the design; the next request starts with ABORT.
    jobs = dev.iter_run(x, seeds, SAMPLES)
    assert next(jobs)[0] == 0
    jobs.close()
    assert not dev._link.idle
    before = port.writes
    assert dev.status().jobs >= 61
    assert port.writes == before + 2 and dev._link.idle      # ABORT, then STATUS


def test_the_window_is_respected(monkeypatch):
    # Credits: never more request bytes on the line than the design's window, and the window is
    # used; the number of requests in flight is capped.
    x, seeds = _jobs(100, seed=4)
    frame = 2 + 10 + 5 + 2 + 2                  # a JOB of 7 5-bit inputs: payload, CRC, COBS, 0x00
    for window, in_flight in ((200, 200 // frame), (4096, MAX_IN_FLIGHT)):
        board = GoldenBoard(CONFIG, MAX_PAYLOAD, window=window)
        dev, port = _fake_client(board)
        assert dev.info.window == window
        dev.load_model(MODEL)
        assert 1 < dev.stats.in_flight and port.peak <= window       # the load streams too
        port.peak = 0
        result = dev.run(x, seeds, SAMPLES)
        np.testing.assert_array_equal(result.counts,
                                      run_jobs(MODEL, x, seeds, SAMPLES))
        assert window - frame < port.peak <= window or in_flight == MAX_IN_FLIGHT
        assert port.peak <= window and result.link.in_flight == in_flight
        assert result.link.resends == 0 and board.counters["overflows"] == 0
    dev, port = _fake_client(GoldenBoard(CONFIG, MAX_PAYLOAD), max_in_flight=1)
    dev.load_model(MODEL)
    assert dev.run(x[:5], seeds[:5], SAMPLES).link.in_flight == 1        # stop-and-wait


def test_repeated_inputs_are_written_once_where_jobs_need_writes():
    # JOB carries its input; the fallback (answers too large for a frame) WRITEs an input only
    # when the design does not hold it already.
    x, seeds = _jobs(1, seed=2, inputs=40)
    x = np.repeat(x, 3, axis=0)
    dev, port = _fake_client(GoldenBoard(WIDE_CONFIG, FALLBACK_PAYLOAD))
    dev.load_model(WIDE_MODEL.to_bytes())        # bytes work as well as a ModelImage
    assert dev.fits_job(5) and not dev.fits_job(16)
    taken = len(port.taken)
    result = dev.run(x, [1, 2, 3], 16)
    np.testing.assert_array_equal(result.counts, run_jobs(WIDE_MODEL, x, [1, 2, 3], 16))
    W, R, D = Opcode.WRITE.value, Opcode.RUN.value, Opcode.READ.value
    job = [R, D, D, D, D]                        # 64 counts, 19 per READ of 40 bytes
    assert port.opcodes()[taken:] == [W, W] + job * 3
    assert result.link.requests == 2 + 5 * 3
    # RUN alone, the READs of a job streamed together: what the FIFO held after each was taken.
    left = [(op, held) for (_, held), op in zip(port.taken[taken:], port.opcodes()[taken:],
                                                strict=True)]
    assert [held for op, held in left if op == R] == [0, 0, 0]
    assert max(held for op, held in left if op == D) > 0
    # At S = 5 the same jobs go as one JOB each.
    taken = len(port.taken)
    result = dev.run(x, [1, 2, 3], SAMPLES)
    assert port.opcodes()[taken:] == [Opcode.JOB.value] * 3
    np.testing.assert_array_equal(result.counts, run_jobs(WIDE_MODEL, x, [1, 2, 3], SAMPLES))


def test_wire_bytes_per_digit_image():
    # The digits model at S = 32: a JOB of 96 bytes, its answer of 58 (contract: <= 158).
    model = ModelImage.read(DEFAULT_MODEL)
    images = np.random.default_rng(0).integers(0, 17, (24, 8, 8))
    masks = np.ones_like(images)
    masks[:, 4:] = 0
    dev, port = _fake_client(GoldenBoard(fitted_config(model, 16), 256))
    dev.load_model(model)
    result = dev.reconstruct(images, masks, list(range(24)), 32, max_value=16)
    counts = run_jobs(model, job_inputs(images, masks), list(range(24)), 32)
    np.testing.assert_array_equal(result.counts, counts)
    out, back = result.link.bytes_out / 24, result.link.bytes_in / 24
    assert (out, back) == (96, 58) and out + back <= 158
    assert result.link.in_flight == WINDOW // 96


def test_reconstruct_keeps_known_pixels(server):
    model = random_model((8, 9, 4), seed=5, fmt=CONFIG.fmt)
    rng = np.random.default_rng(4)
    images = rng.integers(0, 32, (6, 2, 2))
    masks = rng.integers(0, 2, (6, 2, 2))
    seeds = list(range(100, 106))
    with Client.connect(server.url) as dev:
        dev.load_model(model)
        result = dev.reconstruct(images, masks, seeds, SAMPLES)
    counts = run_jobs(model, job_inputs(images, masks), seeds, SAMPLES)
    np.testing.assert_array_equal(result.counts, counts)
    expect = np.where(masks == 1, images / 31, counts.reshape(images.shape) / SAMPLES)
    np.testing.assert_array_equal(result.reconstructed, expect)
    assert result.reconstructed.min() >= 0 and result.reconstructed.max() <= 1


def test_model_that_does_not_fit_is_refused_before_any_write(fresh_server):
    proxy = Proxy((fresh_server.host, fresh_server.port))
    try:
        too_big = random_model((7, 20, 4), seed=1, fmt=CONFIG.fmt)
        with Client.connect(proxy.url) as dev:
            sent = bytes(proxy.sent["up"])
            with pytest.raises(ModelError, match="a layer of 20 neurons, the design's limit is 16"):
                dev.load_model(too_big)
            with pytest.raises(SpinemuError, match="no model loaded"):
                dev.run(*_jobs(1), SAMPLES)
            time.sleep(0.1)
            assert bytes(proxy.sent["up"]) == sent       # nothing went out
    finally:
        proxy.close()
    assert fresh_server.board.layers == 0


def test_bad_arguments_are_refused(server):
    with Client.connect(server.url) as dev:
        dev.load_model(MODEL)
        x, seeds = _jobs(2)
        with pytest.raises(ValueError, match="shape"):
            dev.run(x[:, :6], seeds, SAMPLES)
        with pytest.raises(ValueError, match="shape"):
            dev.iter_run(x[:, :6], seeds, SAMPLES)      # at once, not at the first result
        with pytest.raises(ValueError, match="5-bit"):
            dev.run(x + 32, seeds, SAMPLES)
        with pytest.raises(ValueError, match="one seed per job"):
            dev.run(x, seeds[:1], SAMPLES)
        with pytest.raises(ValueError, match="seeds must be"):
            dev.run(x, [-1, 2], SAMPLES)
        with pytest.raises(ValueError, match="samples"):
            dev.run(x, seeds, 0)
        with pytest.raises(ValueError, match="need 8 inputs"):
            dev.reconstruct(np.zeros((1, 2, 2), int), np.ones((1, 2, 2), int), [1], SAMPLES)
        with pytest.raises(ModelError):
            dev.load_model(b"not a model")
        with pytest.raises(ValueError, match="max_in_flight"):
            Client(dev.port, max_in_flight=MAX_IN_FLIGHT + 1)


def test_a_reset_design_is_reported(fresh_server):
    x, seeds = _jobs(2)
    with Client.connect(fresh_server.url) as dev:
        dev.load_model(MODEL)
        fresh_server.board.__init__(CONFIG, MAX_PAYLOAD)     # the board was reset
        # A JOB's length follows the input size written to CONFIG, which a reset clears.
        with pytest.raises(ProtocolError, match="BAD_LENGTH .*input size is not the loaded "
                                                "model's 7 .*reset") as info:
            dev.run(x, seeds, SAMPLES)
        assert info.value.status == Status.BAD_LENGTH
    x, seeds = _jobs(2, inputs=40)
    dev, _ = _fake_client(board := GoldenBoard(WIDE_CONFIG, FALLBACK_PAYLOAD))
    dev.load_model(WIDE_MODEL)
    board.__init__(WIDE_CONFIG, FALLBACK_PAYLOAD)
    with pytest.raises(ProtocolError, match="refused RUN of job 0 .*NO_MODEL") as info:
        dev.run(x, seeds, 16)
    assert info.value.status == Status.NO_MODEL


def test_another_model_loaded_behind_the_clients_back_is_detected(fresh_server):
    x, seeds = _jobs(2)
    other = random_model((7, 12, 4), seed=9, fmt=CONFIG.fmt)
    frames = b"".join(encode_frame(request(i, Opcode.WRITE, body), MAX_PAYLOAD) for i, body in
                      enumerate(write_bodies(model_writes(other, CONFIG), CONFIG, MAX_PAYLOAD)))
    with Client.connect(fresh_server.url) as dev:
        dev.load_model(MODEL)
        fresh_server.board.feed(frames)
        with pytest.raises(ProtocolError, match="does not hold the model this client loaded"):
            dev.run(x, seeds, SAMPLES)
        # After the error the link is made clean again (ABORT) and works.
        assert dev.status().jobs >= 1 and dev._link.idle


def test_connecting_to_nothing_is_a_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(LinkError, match="cannot open socket://127.0.0.1.*spinemu serve"):
        Client.connect(f"socket://127.0.0.1:{port}")


# ---- connecting: ABORT and versions ------------------------------------------------------------

def _answer(seq, status, body=b""):
    return encode_frame(pack(RESPONSE_HEADER, seq=seq, status=status.value) + body, MAX_PAYLOAD)


@pytest.mark.parametrize("lose_abort", [False, True])
def test_connect_drops_what_a_previous_host_left_in_flight(lose_abort):
    # A previous host left answers unread (some with the sequence numbers this client uses first,
    # an IDENTIFY of another design among them, the tail of a frame, a BAD_FRAME and an OVERFLOW)
    # and requests the design has not yet taken (a WRITE with the client's first sequence number,
    # half a frame). ABORT drops them; if the first ABORT is lost on the way, the design takes the
    # WRITE meanwhile, and the client resends ABORT. Either way it drops everything before ABORT's
    # answer and finds a clean state.
    other = identify_body(dataclasses.replace(CONFIG, lanes=4), MAX_PAYLOAD)
    stale = b"".join([
        b"\x07\x13\x55\x00",                                        # the end of a frame
        _answer(1, Status.OK, other), _answer(2, Status.OK, bytes(6)),
        _answer(3, Status.OUT_OF_RANGE), _answer(UNREADABLE_SEQ, Status.BAD_FRAME, b"\x01"),
        _answer(UNREADABLE_SEQ, Status.OVERFLOW), _answer(4, Status.OK),
    ])
    unload = request(1, Opcode.WRITE, pack_config_layers(1))
    queued = encode_frame(unload, MAX_PAYLOAD) + encode_frame(request(2, Opcode.STATUS))[:3]
    ups = []

    def lose_first_abort(direction, data):
        if direction == "up":
            ups.append(data)
            if len(ups) == 1 and lose_abort:
                return []
        return [(0.0, data)]

    board = GoldenBoard(CONFIG, MAX_PAYLOAD)
    dev, port = _fake_client(board, port={"stale": stale, "queued": queued,
                                          "fault": lose_first_abort})
    assert ups[0] == b"\x00" + ABORT_FRAME and (ups[1] == ups[0]) == lose_abort
    assert dev.info.config == CONFIG
    assert (dev.stats.resends, dev.stats.timeouts, dev.stats.stale, dev.stats.damaged) == \
        (lose_abort, lose_abort, 6 + lose_abort, 1)
    assert sum(board.counters[k] for k in ("cobs_errors", "length_errors", "crc_errors")) == 0
    x, seeds = _jobs(30, seed=5)
    dev.load_model(MODEL)
    result = dev.run(x, seeds, SAMPLES)
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, SAMPLES))
    assert board.counters["bad_requests"] == 0 and result.link.resends == 0


def pack_config_layers(layers):
    """The WRITE body that sets the layer count (CONFIG address 0)."""
    return write_bodies([(Region.CONFIG, 0, layers)], CONFIG, MAX_PAYLOAD)[0]


class _OtherVersion:
    """A design of format ``version``: 3 does not know ABORT (BAD_OPCODE) and answers IDENTIFY
    without ``window``; 4 and later refuse this client's ABORT (BAD_VERSION, their version)."""

    def __init__(self, version):
        self.version = version

    def feed(self, data):
        seq, opcode = decode_frame(data[:-1], MAX_PAYLOAD)[:2]
        if opcode == Opcode.ABORT.value:
            if self.version < 4:
                return _answer(seq, Status.BAD_OPCODE)
            return _answer(seq, Status.BAD_VERSION, bytes([self.version]))
        body = identify_body(CONFIG, MAX_PAYLOAD)
        return _answer(seq, Status.OK, bytes([self.version]) + body[1:-6])


@pytest.mark.parametrize("version", [3, 5, 7])
def test_a_design_of_another_version_is_refused_with_both_versions(version):
    port = FakePort(_OtherVersion(version), sees_abort=False)
    dev = Client(port, url="fake://old", timeout=0.1)
    with pytest.raises(ProtocolError, match=f"the design at fake://old speaks protocol format "
                                            f"version {version}; this client speaks version 6"):
        dev.open()
    assert dev.info is None


def test_the_design_refuses_a_host_of_another_version():
    # Another version's ABORT is refused BAD_VERSION with the design's version.
    board = GoldenBoard(CONFIG, MAX_PAYLOAD)
    answer = board.feed(encode_frame(request(0, Opcode.ABORT, bytes([3])), MAX_PAYLOAD))
    assert decode_frame(answer[:-1], MAX_PAYLOAD) == bytes([0, Status.BAD_VERSION.value,
                                                            FORMAT_VERSION])


def test_a_board_in_use_is_reported(server):
    with Client.connect(server.url) as dev:
        with pytest.raises(LinkError, match="is in use by another client"):
            Client.connect(server.url)
        assert dev.status().jobs >= 0


# ---- faults on the transport -------------------------------------------------------------------

@pytest.mark.parametrize("p_corrupt, p_drop", [(0.004, 0.0), (0.0, 0.004), (0.003, 0.003)])
def test_damaged_bytes_are_retried_to_correct_results(server, p_corrupt, p_drop):
    proxy = Proxy((server.host, server.port), _byte_fault(7, p_corrupt, p_drop))
    try:
        result, stats = _check_batch(proxy.url, jobs=60, timeout=0.3, retries=10)
    finally:
        proxy.close()
    assert stats.resends > 0
    assert stats.damaged + stats.unreadable + stats.timeouts > 0


@pytest.mark.parametrize("seed, wide", [(1, False), (2, False), (3, False), (4, True)])
def test_random_frame_faults_with_many_jobs_in_flight(seed, wide):
    # Whole frames dropped, corrupted, duplicated and delayed in both directions, many jobs in
    # flight: every result is the golden model's, once.
    model, config, payload, inputs, samples, jobs = (
        (WIDE_MODEL, WIDE_CONFIG, FALLBACK_PAYLOAD, 40, 16, 25) if wide
        else (MODEL, CONFIG, MAX_PAYLOAD, 7, SAMPLES, 120))
    fault = _frame_fault(seed, p_drop=0.02, p_corrupt=0.02, p_dup=0.02, p_delay=0.02)
    x, seeds = _jobs(jobs, seed, inputs)
    dev, port = _fake_client(GoldenBoard(config, payload), port={"fault": fault},
                             timeout=0.04, retries=8)
    dev.load_model(model)
    result = dev.run(x, seeds, samples)
    np.testing.assert_array_equal(result.counts,
                                  run_jobs(model, x, seeds, samples))
    assert (result.cycles == job_cycles(model.sizes, config, samples)).all()
    s = dev.stats
    assert s.resends > 0 and s.stale > 0 and s.damaged + s.unreadable > 0
    assert wide or result.link.in_flight > 10


def test_duplicated_frames_are_dropped():
    # Every request and every answer arrives twice (a resend's duplicate): each result once.
    fault = _frame_fault(0, p_dup=1.0)
    x, seeds = _jobs(40, seed=6)
    dev, port = _fake_client(GoldenBoard(CONFIG, MAX_PAYLOAD), port={"fault": fault})
    dev.load_model(MODEL)
    result = dev.run(x, seeds, SAMPLES)
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, SAMPLES))
    assert result.link.requests == 40 and result.link.stale == 3 * 40
    assert result.link.resends == 0


def test_delayed_answers_are_waited_for_or_resent(server):
    # Every fifth answer comes late (the second: IDENTIFY's), delaying those after it; counted by
    # frame, not by chunk, so that however the answers are cut into chunks the same ones are late.
    frames = {"down": 0}

    def delay(direction, chunk, now):
        if direction == "up":
            return [(0.0, chunk)]
        pieces = []
        for piece in re.split(b"(?<=\x00)", chunk):
            if piece.endswith(b"\x00"):
                frames["down"] += 1
            pieces.append((0.5 if frames["down"] % 5 == 2 and piece.endswith(b"\x00") else 0.0,
                           piece))
        return [(d, piece) for d, piece in pieces if piece]

    proxy = Proxy((server.host, server.port), delay)
    try:
        result, stats = _check_batch(proxy.url, jobs=15, timeout=0.3, retries=5)
    finally:
        proxy.close()
    assert stats.timeouts > 0 and stats.resends > 0
    assert stats.stale > 0                   # the late answers came, and were dropped


def test_a_job_answered_after_its_resend_is_taken_once(server):
    # The first JOB's answer comes after the client's wait (as from a design slower than
    # expected): the JOB is resent; the late answer is taken, the duplicate's dropped.
    state = {"late": True}

    def late(direction, chunk, now):
        if direction == "down" and state["late"] and any(
                len(decode_frame(f, MAX_PAYLOAD)) == 2 + 4 + 2 for f in chunk.split(b"\0") if f):
            state["late"] = False                   # the JOB's answer: cycles, 4 3-bit counts
            return [(0.45, chunk)]            # past the wait of 0.3 s, before twice it
        return [(0.0, chunk)]

    proxy = Proxy((server.host, server.port), late)
    try:
        x, seeds = _jobs(1, seed=3)
        with Client.connect(proxy.url, timeout=0.3) as dev:
            dev.load_model(MODEL)
            state["late"] = True
            result = dev.run(x, seeds, SAMPLES)
            assert dev.status().jobs >= 2            # the duplicate ran too
            stats = dev.stats
    finally:
        proxy.close()
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, SAMPLES))
    assert (result.link.timeouts, result.link.resends, result.link.requests) == (1, 1, 1)
    assert stats.stale == 1


def test_a_run_resent_in_the_fallback_reads_the_same_counts():
    # RUN (alone) answered late: its duplicate runs the same job, so the READs after it read the
    # same counts.
    state = {"runs": 0}

    def late_run(direction, data):
        if direction == "down" and state["runs"] == 0:
            payload = decode_frame(data[:-1], 1 << 16)
            if len(payload) == 6:                   # RUN's answer: cycles
                state["runs"] += 1
                return [(0.45, data)]       # past the wait of 0.3 s, before twice it
        return [(0.0, data)]

    x, seeds = _jobs(3, seed=7, inputs=40)
    dev, port = _fake_client(GoldenBoard(WIDE_CONFIG, FALLBACK_PAYLOAD),
                             port={"fault": late_run}, timeout=0.3)
    dev.load_model(WIDE_MODEL)
    result = dev.run(x, seeds, 16)
    np.testing.assert_array_equal(result.counts, run_jobs(WIDE_MODEL, x, seeds, 16))
    assert result.link.timeouts == 1 and result.link.resends == 1 and result.link.stale == 1


def test_a_delimiter_hit_into_0x01_is_caught(fresh_server):
    # COBS turns a delimiter hit into 0x01 into a zero byte appended to the frame (and runs it into
    # the next one); the CRC's output XOR makes such frames fail, so both sides see a bad frame,
    # and the client retries until the answers are whole.
    chunks = {"up": 0, "down": 0}

    def flip_delimiters(direction, chunk, now):
        chunks[direction] += 1
        if chunks[direction] % 11 == 5 and chunk.endswith(b"\x00"):
            chunk = chunk[:-1] + b"\x01"
        return [(0.0, chunk)]

    proxy = Proxy((fresh_server.host, fresh_server.port), flip_delimiters)
    try:
        result, stats = _check_batch(proxy.url, jobs=40, timeout=0.15, retries=6)
    finally:
        proxy.close()
    assert stats.resends > 0 and stats.damaged + stats.unreadable > 0
    frame_errors = sum(fresh_server.board.counters[k]
                       for k in ("cobs_errors", "length_errors", "crc_errors"))
    assert frame_errors > 0 and fresh_server.board.counters["bad_requests"] == 0


def test_a_refusal_on_every_attempt_is_reported(fresh_server):
    from spinemu.sim.board import model as board_model

    def refuse_jobs(opcode, body, command=fresh_server.board._command):
        if opcode == Opcode.JOB.value:
            raise board_model._Refused(Status.OUT_OF_RANGE)
        return command(opcode, body)

    fresh_server.board._command = refuse_jobs
    x, seeds = _jobs(4)
    with Client.connect(fresh_server.url, retries=2) as dev:
        dev.load_model(MODEL)
        with pytest.raises(ProtocolError, match=f"refused JOB of job 0 \\(seed {seeds[0]}, 5 "
                                                f"samples\\): OUT_OF_RANGE") as info:
            dev.run(x, seeds, SAMPLES)
        assert info.value.status == Status.OUT_OF_RANGE


def test_a_silent_link_raises_a_clear_error(server):
    state = {"bytes": 0}

    def blackhole(direction, chunk, now):
        state["bytes"] += len(chunk)
        return [(0.0, chunk)] if state["bytes"] < 1200 else []

    proxy = Proxy((server.host, server.port), blackhole)
    try:
        began = time.monotonic()
        with pytest.raises(LinkError, match=r"no valid answer to .* after 3 attempts: no answer "
                                            r"in 0\.2\d* s; no answer in 0\.\d+ s"):
            _check_batch(proxy.url, jobs=40, timeout=0.2, retries=2)
        assert time.monotonic() - began < 5        # not once per request in flight
    finally:
        proxy.close()


def test_a_link_that_dies_mid_job_raises_a_clear_error(server):
    state = {"bytes": 0}

    def die(direction, chunk, now):
        state["bytes"] += len(chunk)
        if direction == "down" and state["bytes"] > 1500:
            raise Proxy.Die()
        return [(0.0, chunk)]

    proxy = Proxy((server.host, server.port), die)
    try:
        with pytest.raises(LinkError, match="the link to socket://.* failed"):
            _check_batch(proxy.url, jobs=40, timeout=0.5)
    finally:
        proxy.close()


def test_the_client_refuses_work_after_close(server):
    dev = Client.connect(server.url)
    dev.close()
    with pytest.raises(LinkError, match="closed"):
        dev.status()


def test_an_echoing_line_is_reported():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def echo():
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

        thread = threading.Thread(target=echo, daemon=True)
        thread.start()
        url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(LinkError, match=f"{url} echoes what is sent"):
            Client.connect(url)
        thread.join(5)
    # An echo of a request in flight (not ABORT's) is named too.
    port = FakePort(GoldenBoard(CONFIG, MAX_PAYLOAD))
    dev = Client(port, url="fake://echo", timeout=0.1)
    dev.open()
    port.board = type("Echo", (), {"feed": staticmethod(lambda data: data)})
    with pytest.raises(LinkError, match="fake://echo echoes what is sent"):
        dev.status()


def test_a_model_runs_with_its_noise_table_or_not_at_all(fresh_server):
    # A model with the thermal table: the client writes the table and IDENTIFY then names it, and
    # the counts are the golden model's with that table.
    model = dataclasses.replace(MODEL, noise=thermal())
    x, seeds = _jobs(6)
    with Client.connect(fresh_server.url) as dev:
        assert dev.info.noise_hash == gaussian().hash       # the build's table
        dev.load_model(model)
        assert dev.info.noise_hash == thermal().hash
        counts = dev.run(x, seeds, SAMPLES).counts
    np.testing.assert_array_equal(counts, run_jobs(model, x, seeds, SAMPLES))
    assert not np.array_equal(counts, run_jobs(MODEL, x, seeds, SAMPLES))

    # A design that keeps another table (its NOISE writes lost) is refused, with both hashes.
    board, write = fresh_server.board, fresh_server.board._write
    board._write = lambda body: b"" if body[0] == Region.NOISE.value else write(body)
    with Client.connect(fresh_server.url) as dev:
        with pytest.raises(ProtocolError, match=f"holds noise table {thermal().hash:08x} after "
                           f"loading the model, whose table is {logistic().hash:08x}"):
            dev.load_model(dataclasses.replace(MODEL, noise=logistic()))
        with pytest.raises(SpinemuError, match="no model loaded"):
            dev.run(x, seeds, SAMPLES)

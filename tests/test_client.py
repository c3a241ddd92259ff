"""The host client against the golden board on a loopback socket: IDENTIFY, model loading and
refusal, jobs equal to the golden model, reconstruction, and faults injected on the transport (bytes
dropped, corrupted, delayed, a link that goes silent or dies, a RUN aborted by its resend as the
design does it) that end in correct results or a clear error, never a wrong result; a line that
echoes is named as such."""

import dataclasses
import random
import select
import socket
import threading
import time

import numpy as np
import pytest

from protocol_traffic import CONFIG, MAX_PAYLOAD
from spinemu.hdl.framing import decode_frame, encode_frame
from spinemu.hdl.memory_map import Region, job_cycles, job_inputs, model_writes
from spinemu.hdl.model_image import ModelError, random_model
from spinemu.hdl.noise_table import gaussian, logistic, thermal
from spinemu.hdl.protocol import (
    FORMAT_VERSION,
    IDENTIFY_RESPONSE,
    RESPONSE_HEADER,
    Opcode,
    Status,
    build_hash,
    identify_body,
    pack,
    request,
    unpack,
    write_bodies,
)
from spinemu.host.client import Client, DesignInfo, LinkError, ProtocolError, SpinemuError
from spinemu.sim.board import start_server
from spinemu.sim.engine_model import run_jobs

MODEL = random_model((7, 9, 4), seed=3, fmt=CONFIG.fmt)
SAMPLES = 5


def _jobs(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 32, (n, 7)), [int(s) for s in rng.integers(0, 2 ** 64, n, np.uint64)]


@pytest.fixture(scope="module")
def server():
    with start_server("golden", CONFIG, MAX_PAYLOAD) as srv:
        yield srv


@pytest.fixture
def fresh_server():
    with start_server("golden", CONFIG, MAX_PAYLOAD) as srv:
        yield srv


class Proxy:
    """A TCP proxy between a client and a server that passes each chunk through ``fault(direction,
    chunk, now)``, which returns ``[(delay_s, bytes), ...]`` to deliver (or raises
    :class:`Proxy.Die` to close both sides). ``up`` is client-to-server, ``down`` the other way."""

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
        peer = {client: (upstream, "up"), upstream: (client, "down")}
        while not self._stop.is_set():
            now = time.monotonic()
            for item in sorted(q for q in queue if q[0] <= now):
                queue.remove(item)
                item[2].sendall(item[4])
                self.sent[item[3]] += item[4]
            ready = select.select([client, upstream], [], [], 0.01)[0]
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
                        queue.append((now + delay, len(queue), target, direction, data))

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
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, SAMPLES, CONFIG.lanes))
    return result, stats


# ---- the protocol ------------------------------------------------------------------------------

def test_identify_decodes_the_design(server):
    with Client.connect(server.url) as dev:
        info = dev.info
        assert dev.identify() == info
    assert info.config == CONFIG
    assert info.max_payload == MAX_PAYLOAD
    assert info.version == FORMAT_VERSION
    assert info.build_hash == build_hash(CONFIG, MAX_PAYLOAD)
    assert info.hash_matches


def test_identify_body_errors():
    body = identify_body(CONFIG, MAX_PAYLOAD)
    assert DesignInfo.from_body(body).config == CONFIG
    with pytest.raises(ProtocolError, match="bytes, not"):
        DesignInfo.from_body(body[:-1])
    with pytest.raises(ProtocolError, match="format version 9"):
        DesignInfo.from_body(bytes([9]) + body[1:])
    fields = unpack(IDENTIFY_RESPONSE, body)
    fields["lanes"] = 3                              # 3 lanes: not a power of two
    with pytest.raises(ProtocolError, match="impossible configuration"):
        DesignInfo.from_body(pack(IDENTIFY_RESPONSE, **fields))
    fields.update(lanes=2, build_hash=fields["build_hash"] ^ 1)  # another build, same parameters
    assert not DesignInfo.from_body(pack(IDENTIFY_RESPONSE, **fields)).hash_matches


def test_jobs_equal_the_golden_model(server):
    x, seeds = _jobs(12, seed=1)
    with Client.connect(server.url) as dev:
        dev.load_model(MODEL)
        result = dev.run(x, seeds, SAMPLES)
        status = dev.status()
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, SAMPLES, CONFIG.lanes))
    assert result.counts.dtype == np.int64 and result.counts.shape == (12, 4)
    assert (result.cycles == job_cycles(MODEL.sizes, CONFIG.lanes, SAMPLES)).all()
    assert result.link.requests == 12 * 3 and result.link.resends == 0
    assert status.jobs >= 12 and status.crc_errors == 0


def test_repeated_inputs_are_written_once(server):
    x, seeds = _jobs(1, seed=2)
    x = np.repeat(x, 4, axis=0)
    seeds = [1, 2, 3, 4]
    with Client.connect(server.url) as dev:
        dev.load_model(MODEL.to_bytes())              # bytes work as well as a ModelImage
        result = dev.run(x, seeds, SAMPLES)
    assert result.link.requests == 1 + 4 * 2          # one WRITE, then RUN and READ per job
    np.testing.assert_array_equal(result.counts, run_jobs(MODEL, x, seeds, SAMPLES, CONFIG.lanes))


def test_reconstruct_keeps_known_pixels(server):
    model = random_model((8, 9, 4), seed=5, fmt=CONFIG.fmt)
    rng = np.random.default_rng(4)
    images = rng.integers(0, 32, (6, 2, 2))
    masks = rng.integers(0, 2, (6, 2, 2))
    seeds = list(range(100, 106))
    with Client.connect(server.url) as dev:
        dev.load_model(model)
        result = dev.reconstruct(images, masks, seeds, SAMPLES)
    counts = run_jobs(model, job_inputs(images, masks), seeds, SAMPLES, CONFIG.lanes)
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


def test_a_reset_design_is_reported(fresh_server):
    x, seeds = _jobs(2)
    with Client.connect(fresh_server.url) as dev:
        dev.load_model(MODEL)
        fresh_server.board.__init__(CONFIG, MAX_PAYLOAD)     # the board was reset
        with pytest.raises(ProtocolError, match="NO_MODEL") as info:
            dev.run(x, seeds, SAMPLES)
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


def test_connecting_to_nothing_is_a_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(LinkError, match="cannot open socket://127.0.0.1.*spinemu serve"):
        Client.connect(f"socket://127.0.0.1:{port}")


# ---- faults on the transport -------------------------------------------------------------------

@pytest.mark.parametrize("p_corrupt, p_drop", [(0.004, 0.0), (0.0, 0.004), (0.003, 0.003)])
def test_damaged_bytes_are_retried_to_correct_results(server, p_corrupt, p_drop):
    proxy = Proxy((server.host, server.port), _byte_fault(7, p_corrupt, p_drop))
    try:
        result, stats = _check_batch(proxy.url, jobs=25, timeout=0.3, retries=10)
    finally:
        proxy.close()
    assert stats.resends > 0
    assert stats.damaged + stats.unreadable + stats.timeouts > 0


def test_delayed_answers_are_waited_for_or_resent(server):
    rng = random.Random(3)

    def delay(direction, chunk, now):
        late = direction == "down" and rng.random() < 0.15
        return [(0.5 if late else 0.0, chunk)]

    proxy = Proxy((server.host, server.port), delay)
    try:
        result, stats = _check_batch(proxy.url, jobs=15, timeout=0.3, retries=5)
    finally:
        proxy.close()
    assert stats.timeouts > 0 and stats.resends > 0
    assert stats.stale > 0                   # the late answers came, and were dropped


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
        result, stats = _check_batch(proxy.url, jobs=12, timeout=0.15, retries=4)
    finally:
        proxy.close()
    assert stats.resends > 0 and stats.damaged > 0
    frame_errors = sum(fresh_server.board.counters[k]
                       for k in ("cobs_errors", "length_errors", "crc_errors"))
    assert frame_errors > 0 and fresh_server.board.counters["bad_requests"] == 0


def test_a_refusal_on_every_attempt_is_reported(fresh_server):
    from spinemu.sim.board import model as board_model

    def refuse_reads(opcode, body, command=fresh_server.board._command):
        if opcode == Opcode.READ.value:
            raise board_model._Refused(Status.OUT_OF_RANGE)
        return command(opcode, body)

    fresh_server.board._command = refuse_reads
    with Client.connect(fresh_server.url, retries=2) as dev:
        dev.load_model(MODEL)
        with pytest.raises(ProtocolError, match="refused READ of job 0's counts 0..3: "
                                                "OUT_OF_RANGE") as info:
            dev.run(*_jobs(1), SAMPLES)
        assert info.value.status == Status.OUT_OF_RANGE
        assert dev.stats.resends == 2


def test_a_silent_link_raises_a_clear_error(server):
    state = {"bytes": 0}

    def blackhole(direction, chunk, now):
        state["bytes"] += len(chunk)
        return [(0.0, chunk)] if state["bytes"] < 600 else []

    proxy = Proxy((server.host, server.port), blackhole)
    try:
        with pytest.raises(LinkError, match=r"no valid answer to .* after 3 attempts: no answer "
                                            r"in 0\.2 s"):
            _check_batch(proxy.url, jobs=20, timeout=0.2, retries=2)
    finally:
        proxy.close()


def test_a_link_that_dies_mid_job_raises_a_clear_error(server):
    state = {"bytes": 0}

    def die(direction, chunk, now):
        state["bytes"] += len(chunk)
        if direction == "down" and state["bytes"] > 900:
            raise Proxy.Die()
        return [(0.0, chunk)]

    proxy = Proxy((server.host, server.port), die)
    try:
        with pytest.raises(LinkError, match="the link to socket://.* failed"):
            _check_batch(proxy.url, jobs=20, timeout=0.5)
    finally:
        proxy.close()


def test_the_client_refuses_work_after_close(server):
    dev = Client.connect(server.url)
    dev.close()
    with pytest.raises(LinkError, match="closed"):
        dev.status()


# ---- what the design and the simulated boards say besides answers ------------------------------

def _payload(chunk):
    """The one frame's payload in a chunk of stop-and-wait traffic."""
    (frame,) = [f for f in chunk.split(b"\0") if f]
    return decode_frame(frame, MAX_PAYLOAD)


def _status_frame(seq, status):
    return encode_frame(pack(RESPONSE_HEADER, seq=seq, status=status.value), MAX_PAYLOAD)


def test_a_run_aborted_by_its_resend_is_waited_for_again(server):
    # As the design does when a RUN times out while its job runs: the resend aborts the job
    # (ABORTED, with the RUN's seq) and runs it again, whose answer comes later still.
    state = {"run": None, "sends": 0}

    def running(direction, chunk, now):
        seq, code = _payload(chunk)[:2]
        if direction == "up":
            if code == Opcode.RUN.value and state["run"] in (None, seq):
                state["run"], state["sends"] = seq, state["sends"] + 1
            return [(0.0, chunk)]
        if seq != state["run"]:
            return [(0.0, chunk)]
        if state["sends"] == 1:
            return []                               # the job still runs: no answer yet
        state["run"] = -1
        # The job of the resend runs from the start: longer than the wait that timed out.
        return [(0.0, _status_frame(seq, Status.ABORTED)), (0.45, chunk)]

    proxy = Proxy((server.host, server.port), running)
    try:
        result, stats = _check_batch(proxy.url, jobs=3, timeout=0.3)
    finally:
        proxy.close()
    assert stats.aborted == 1 and stats.resends == 1 and stats.timeouts == 1


def test_a_job_whose_counts_an_aborted_duplicate_took_is_run_again(server):
    # The first RUN's answer comes late, after the resend started a duplicate job; the READ
    # then aborts the duplicate, and the design drops the counts with it (OUT_OF_RANGE) until
    # the next RUN.
    state = {"run": None, "sends": 0, "reads": set(), "wiped": False, "abort": False}

    def late(direction, chunk, now):
        seq, code = _payload(chunk)[:2]
        if direction == "up":
            if code == Opcode.RUN.value:
                state["wiped"] = False
                if state["run"] in (None, seq):
                    state["run"], state["sends"] = seq, state["sends"] + 1
            elif code == Opcode.READ.value:
                state["reads"].add(seq)
                if state["sends"] == 2:             # the duplicate runs: aborted, counts gone
                    state.update(sends=3, wiped=True, abort=True)
            return [(0.0, chunk)]
        if seq == state["run"] and state["sends"] == 1:
            return [(0.5, chunk)]                   # past the client's wait
        if seq == state["run"] and state["sends"] == 2:
            return []                               # the duplicate still runs
        if seq in state["reads"] and state["wiped"]:
            out = [(0.0, _status_frame(state["run"], Status.ABORTED))] if state["abort"] else []
            state["abort"] = False
            return out + [(0.0, _status_frame(seq, Status.OUT_OF_RANGE))]
        return [(0.0, chunk)]

    proxy = Proxy((server.host, server.port), late)
    try:
        result, stats = _check_batch(proxy.url, jobs=3, timeout=0.3)
    finally:
        proxy.close()
    assert stats.reruns == 1 and stats.stale >= 1


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
    np.testing.assert_array_equal(counts, run_jobs(model, x, seeds, SAMPLES, CONFIG.lanes))
    assert not np.array_equal(counts, run_jobs(MODEL, x, seeds, SAMPLES, CONFIG.lanes))

    # A design that keeps another table (its NOISE writes lost) is refused, with both hashes.
    board, write = fresh_server.board, fresh_server.board._write
    board._write = lambda body: b"" if body[0] == Region.NOISE.value else write(body)
    with Client.connect(fresh_server.url) as dev:
        with pytest.raises(ProtocolError, match=f"holds noise table {thermal().hash:08x} after "
                           f"loading the model, whose table is {logistic().hash:08x}"):
            dev.load_model(dataclasses.replace(MODEL, noise=logistic()))
        with pytest.raises(SpinemuError, match="no model loaded"):
            dev.run(x, seeds, SAMPLES)

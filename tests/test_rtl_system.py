"""The generated Verilog of the whole design (protocol engine, receive window, layer engine, framing)
under Icarus and Verilator: every answer byte equal to the golden board's, with random idle cycles
and back-pressure on both byte streams (the window bench's ``valid_p``/``ready_p``), for

* stop-and-wait traffic: good requests, every kind of bad frame and request, JOBs;
* windowed traffic: requests sent back to back without waiting for their answers, as many as the
  window's credits allow (``docs/protocol.md``), on random models loaded one after another with
  JOBs of random inputs, seeds and sample counts, RUN and READ, bad frames (two in one go among
  them) and bad requests, on two designs (2 lanes and the default window; 4 lanes, wide parameters
  and a window of 256 bytes) and several traffic seeds;
* ABORT while a job runs, with requests and a cut frame queued behind it: answered ABORTED within
  :data:`ABORT_CYCLES`, the queue dropped unanswered, the job's counts gone, and then a clean
  state: the golden board's answers to the requests after it (STATUS's counters included).

The golden board has no clock and no queue, so it is fed what the design handles: nothing for what
an ABORT drops. Each simulator's share runs in about two minutes on two cores once the three designs'
builds are cached (``sim/rtl.py``; the 2-lane build is the one ``tests/test_protocol.py`` uses).
"""

import dataclasses

import numpy as np
import pytest

from protocol_traffic import (
    CONFIG,
    MAX_PAYLOAD,
    WIDE_CONFIG,
    bad_traffic,
    good_traffic,
)
from spinemu.hdl.framing import DELIMITER, cobs_encode, decode_frame, encode_frame
from spinemu.hdl.memory_map import Region, input_writes, job_cycles, model_writes, network_words
from spinemu.hdl.model_image import random_model
from spinemu.hdl.noise_table import gaussian, logistic, thermal
from spinemu.hdl.protocol import (
    ABORT_FRAME,
    FORMAT_VERSION,
    RESPONSE_HEADER,
    WINDOW,
    Opcode,
    Status,
    job_body,
    pack,
    pack_bits,
    read_body,
    run_body,
    write_bodies,
    write_body,
)
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.sim.board.model import GoldenBoard
from spinemu.sim.rtl import SIMULATORS, run_window_bench

#: The designs the windowed traffic runs on: (config, max_payload, window).
DESIGNS = {"2-lanes": (CONFIG, MAX_PAYLOAD, WINDOW),
           "4-lanes-window-256": (WIDE_CONFIG, MAX_PAYLOAD, 256)}
#: The most cycles from an ABORT's last byte (its delimiter) taken by the design to the last byte of
#: its ABORTED answer while a job runs, whatever the job is doing and however full the window, with
#: every byte offered and taken at once: the job stops, the window is emptied, and the 6-byte
#: answer leaves one byte a cycle (measured: 17).
ABORT_CYCLES = 24
#: The job an ABORT stops: 12 x 10^6 cycles on CONFIG's 2 lanes, hours under the simulators.
LONG_MODEL = random_model((16, 16, 16), seed=4, fmt=CONFIG.fmt)
LONG = 65535
#: Sample counts of the random JOBs: count fields of 1 to 9 bits.
SAMPLES = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 40, 63, 64, 100, 255, 256)
_TABLES = (gaussian(), logistic(), thermal())


class _Traffic:
    """Requests for the window bench, each with the golden board's answer to what the design is
    expected to handle of it (by default the request itself)."""

    def __init__(self, config, max_payload, window, *, stop_and_wait=False):
        self.config, self.max_payload, self.window = config, max_payload, window
        self.stop_and_wait = stop_and_wait      # every request waits for the answers before it
        self.board = GoldenBoard(config, max_payload, window)
        self.requests, self.answers, self.barrier, self.after_busy = [], [], [], []
        self.jobs = []              # the indices of the JOBs answered OK
        self._seq = 0
        self.inputs = 0             # N_0 as written to the design

    def seq(self):
        """The next sequence number: 1 .. 254 (0 is ABORT's, 0xFF the unreadable frame's)."""
        self._seq = self._seq % 254 + 1
        return self._seq

    def raw(self, data, *, golden=None, barrier=False, after_busy=None):
        """Send ``data``; the golden board is fed ``golden`` instead, if given (``b""``: the design
        is expected to drop it unanswered)."""
        self.answers.append(self.board.feed(data if golden is None else golden))
        self.requests.append(bytes(data))
        self.barrier.append(barrier or self.stop_and_wait)
        self.after_busy.append(after_busy)

    def frame(self, opcode, body=b"", **options):
        self.raw(self.encode(self.seq(), opcode, body), **options)

    def encode(self, seq, opcode, body=b""):
        """A request frame; ``opcode`` a number (an unknown one too)."""
        code = opcode.value if isinstance(opcode, Opcode) else opcode
        return encode_frame(bytes([seq, code]) + bytes(body), self.max_payload)

    def load(self, model, x=None):
        """WRITEs of ``model`` (and input ``x``), sent back to back."""
        writes = model_writes(model, self.config) + (input_writes(x) if x is not None else [])
        for body in write_bodies(writes, self.config, self.max_payload):
            self.frame(Opcode.WRITE, body)
        self.inputs = model.sizes[0]

    def job(self, seed, samples, x, **options):
        self.frame(Opcode.JOB, job_body(seed, samples, x, self.config.input_bits), **options)
        if self.answers[-1] and _status(self.answers[-1], self.max_payload) == Status.OK:
            self.jobs.append(len(self.answers) - 1)

    def expected(self):
        """Every answer frame, with the index of the request it answers."""
        return [(k, frame + bytes([DELIMITER])) for k, answer in enumerate(self.answers)
                for frame in answer.split(bytes([DELIMITER]))[:-1]]

    def run(self, simulator, *, valid_p, ready_p, stall_seed, window=None):
        """Run the traffic on the design and check every answer frame against the golden board's;
        returns the bench's :class:`~spinemu.sim.rtl.WindowResult`."""
        expect = self.expected()
        frames = [answer.count(DELIMITER) for answer in self.answers]
        result = run_window_bench(
            ProtocolEngine(self.config, self.max_payload, window=self.window),
            simulator=simulator, requests=self.requests, frames=frames,
            window=self.window if window is None else window, barrier=self.barrier,
            after_busy=self.after_busy, valid_p=valid_p, ready_p=ready_p, stall_seed=stall_seed)
        for i, (got, (k, want)) in enumerate(zip(result.frames, expect, strict=False)):
            assert got == want, (f"answer frame {i} (to request {k}, {self.requests[k].hex()}): "
                                 f"{got.hex()} != golden {want.hex()}")
        assert len(result.frames) == len(expect), (
            f"{len(result.frames)} answer frames, not {len(expect)}: "
            + (f"the first missing answers request {expect[len(result.frames)][0]} "
               f"({self.requests[expect[len(result.frames)][0]].hex()}), partial frame "
               f"{result.partial.hex()!r}" if len(result.frames) < len(expect)
               else f"extra {[f.hex() for f in result.frames[len(expect):]]}"))
        assert result.complete
        return result


def _status(frame, max_payload=MAX_PAYLOAD):
    return Status(decode_frame(frame[:-1], max_payload)[1])


def _random_model(config, rng):
    """A random model that fits ``config``, with one of three noise tables."""
    while True:
        layers = int(rng.integers(1, config.max_layers + 1))
        sizes = [int(rng.integers(1, config.max_inputs + 1))]
        sizes += [int(rng.integers(1, config.max_width + 1)) for _ in range(layers)]
        words, entries = network_words(sizes, config.lanes)
        if words <= config.weight_depth and entries <= config.param_depth:
            break
    model = random_model(sizes, seed=int(rng.integers(2 ** 31)), fmt=config.fmt)
    return dataclasses.replace(model, noise=_TABLES[int(rng.integers(len(_TABLES)))])


def _samples(rng, sizes, config):
    """A random sample count, kept to jobs of at most 25 000 cycles (the simulators' time)."""
    while True:
        samples = int(rng.choice(SAMPLES))
        if job_cycles(sizes, config, samples) < 25_000:
            return samples


def _odd_requests(t, rng):
    """One of the bad frames or bad or odd requests, chosen at random."""
    c, p = t.config, t.max_payload
    bits, n = c.input_bits, t.inputs
    seed, samples = int(rng.integers(2 ** 63)), int(rng.integers(1, 9))
    x = rng.integers(0, 1 << bits, n)
    packed = pack_bits(x, bits)
    good = t.encode(t.seq(), Opcode.STATUS)
    bad_crc = bytearray(good)
    bad_crc[2] ^= 0x40
    choices = [
        lambda: t.frame(Opcode.JOB, run_body(seed, samples) + packed[:-1]),      # short
        lambda: t.frame(Opcode.JOB, run_body(seed, samples) + packed + b"\0"),   # long
        lambda: t.frame(Opcode.JOB, run_body(seed, 0) + packed),                 # no samples
        lambda: t.frame(Opcode.JOB, run_body(seed, samples)[:-1]),               # cut header
        lambda: t.raw(bytes(bad_crc)),
        lambda: t.raw(bytes([5, 1, 2, 0])),                                      # COBS past end
        lambda: t.raw(cobs_encode(bytes(range(1, p + 20))) + b"\0"),             # too long
        lambda: t.raw(bytes(bad_crc) + bytes([5, 1, 2, 0])),                     # two bad frames
        lambda: t.raw(b"\0" + t.encode(t.seq(), Opcode.SYNC)),                   # empty frame first
        lambda: t.frame(0x7E, b"\1\2"),                                        # unknown opcode
        lambda: t.frame(Opcode.ABORT, bytes([FORMAT_VERSION - 1])),              # another version
        lambda: t.frame(Opcode.ABORT, bytes([FORMAT_VERSION])),                  # seq not 0
        lambda: t.frame(Opcode.READ, read_body(0, c.max_width + 1)),             # past the counts
        lambda: t.frame(Opcode.WRITE, bytes([7]) + bytes(4) + b"\1"),            # no such region
        lambda: t.frame(Opcode.WRITE, write_body(Region.INPUT, 0, [1 << bits], c)),  # too wide
        lambda: t.frame(Opcode.IDENTIFY, b"x"),
        lambda: t.frame(Opcode.STATUS),
        lambda: t.frame(Opcode.SYNC),
        lambda: t.frame(Opcode.IDENTIFY),
    ]
    if n * bits % 8:
        padded = packed[:-1] + bytes([packed[-1] | 0x80])
        choices.append(lambda: t.frame(Opcode.JOB, run_body(seed, samples) + padded))
    choices[int(rng.integers(len(choices)))]()


def _session(t, rng, models=3, jobs=10):
    """A JOB before any model (NO_MODEL), one with a layer count but no sizes (BAD_CONFIG), then
    ``models`` random models, each loaded and followed by ``jobs`` JOBs of random inputs, seeds and
    sample counts among RUNs, READs and odd requests; STATUS last."""
    c = t.config
    t.frame(Opcode.IDENTIFY)
    t.frame(Opcode.JOB, run_body(1, 1))                                      # NO_MODEL
    t.frame(Opcode.WRITE, write_body(Region.CONFIG, 0, [1], c))
    t.frame(Opcode.JOB, run_body(1, 1))                                      # BAD_CONFIG
    for _ in range(models):
        model = _random_model(c, rng)
        t.load(model, rng.integers(0, 1 << c.input_bits, model.sizes[0]))
        t.frame(Opcode.IDENTIFY)                                             # the table's hash
        for _ in range(jobs):
            samples = _samples(rng, model.sizes, c)
            x = rng.integers(0, 1 << c.input_bits, model.sizes[0])
            t.job(int(rng.integers(2 ** 63)) if rng.random() < 0.9 else 2 ** 64 - 1, samples, x)
            roll = rng.random()
            if roll < 0.15:
                t.frame(Opcode.RUN, run_body(int(rng.integers(2 ** 63)), samples))
                t.frame(Opcode.READ, read_body(0, model.sizes[-1]))
            elif roll < 0.55:
                _odd_requests(t, rng)
    t.frame(Opcode.STATUS)


# ---- stop-and-wait ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_stop_and_wait_answers_equal_the_golden_board(simulator):
    """Each request sent once the one before has been answered: the good and bad traffic of
    ``protocol_traffic`` (frames far longer than the window among it), then a session of JOBs."""
    t = _Traffic(CONFIG, MAX_PAYLOAD, WINDOW, stop_and_wait=True)
    for data in good_traffic(seed=11) + bad_traffic() + good_traffic(seed=12, table=logistic()):
        t.raw(data)
    _session(t, np.random.default_rng(1), models=1, jobs=8)
    assert len(t.jobs) >= 4
    t.run(simulator, valid_p=0.6, ready_p=0.6, stall_seed=5)


# ---- windowed traffic ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize(("design", "seed"), [("2-lanes", 21), ("2-lanes", 22),
                                              ("4-lanes-window-256", 23)])
def test_windowed_traffic_answers_equal_the_golden_board(simulator, design, seed):
    """Requests back to back within the window's credits, under random stalls on both streams:
    random models and JOBs, bad frames and requests; every answer the golden board's, in order."""
    t = _Traffic(*DESIGNS[design])
    _session(t, np.random.default_rng(seed))
    assert len(t.jobs) >= 20
    result = t.run(simulator, valid_p=0.8, ready_p=0.5, stall_seed=seed)
    # The traffic did keep the window busy: requests sent and not yet answered as answers came.
    sent = np.array(result.sent)
    in_flight = [np.sum(sent < end) - k for end, (k, _) in
                 zip(result.ends, t.expected(), strict=True)]
    assert max(in_flight) >= (8 if t.window == WINDOW else 3)


# ---- ABORT --------------------------------------------------------------------------------------

def _abort_traffic(t, rng, episodes):
    """A model load and a job; then for each ``(delay, full)`` of ``episodes``: once everything
    before has been answered, a JOB of :data:`LONG` samples, requests and a cut frame queued behind
    it (a WRITE that would change the network and a READ; ``full``: STATUS frames filling the
    window nearly up), and ABORT ``delay`` cycles after the job has been seen running (None: at
    once, while the JOB may still be handled); then READ (refused: the counts are gone), STATUS and
    a JOB, answered as if the long JOB and the queue had never come. Last, an ABORT with nothing to
    stop. Returns, for each ABORT that stops a job, the indices of the long JOB and of the ABORT."""
    c, window = t.config, t.window
    x = np.arange(LONG_MODEL.sizes[0]) % (1 << c.input_bits)
    t.load(LONG_MODEL, x)
    t.job(3, 2, x)
    aborts = []
    for delay, full in episodes:
        first = len(t.requests)
        t.job(9, LONG, rng.integers(0, 32, LONG_MODEL.sizes[0]), golden=b"", barrier=True)
        cut = t.encode(t.seq(), Opcode.STATUS)[:3]
        room = window - len(t.requests[-1]) - len(cut) - len(ABORT_FRAME) - 1
        queued = [t.encode(t.seq(), Opcode.WRITE, write_body(Region.CONFIG, 0, [1], c)),
                  t.encode(t.seq(), Opcode.READ, read_body(0, 4))]
        while full and sum(map(len, queued)) + 6 <= room:
            queued.append(t.encode(t.seq(), Opcode.STATUS))
        for data in queued:
            t.raw(data, golden=b"")
        t.raw(cut, golden=b"")
        aborts.append((first, len(t.requests)))
        t.raw(bytes([DELIMITER]) + ABORT_FRAME, after_busy=delay)
        seq = t.seq()      # the golden board's READ of no counts is refused as the design's
        t.raw(t.encode(seq, Opcode.READ, read_body(0, LONG_MODEL.sizes[-1])), barrier=True,
              golden=t.encode(seq, Opcode.READ, read_body(0, 0)))
        t.frame(Opcode.STATUS)
        t.job(int(rng.integers(2 ** 63)), 3, rng.integers(0, 32, LONG_MODEL.sizes[0]))
        t.frame(Opcode.READ, read_body(0, LONG_MODEL.sizes[-1]))
    t.raw(bytes([DELIMITER]) + ABORT_FRAME, barrier=True)     # nothing to stop
    t.frame(Opcode.STATUS, barrier=True)
    return aborts


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_abort_stops_a_running_job_and_leaves_a_clean_state(simulator, capsys):
    """ABORT while a job runs (seeding, layer 1's pass, the samples), with the window nearly full or
    not, or right behind the JOB: ABORTED (within ABORT_CYCLES where the job was running), nothing
    queued answered, then exactly the golden board's answers; again under random stalls."""
    slowest = 0
    for stalls, episodes in [((1.0, 1.0), [(0, False), (150, False), (700, True), (4000, True),
                                           (None, True), (None, False)]),
                             ((0.7, 0.6), [(0, False), (2000, True), (None, True)])]:
        t = _Traffic(CONFIG, MAX_PAYLOAD, WINDOW)
        aborts = _abort_traffic(t, np.random.default_rng(7), episodes)
        result = t.run(simulator, valid_p=stalls[0], ready_p=stalls[1], stall_seed=8)
        expect = t.expected()
        for _, k in aborts:
            frame = next(i for i, (j, _) in enumerate(expect) if j == k)
            assert _status(result.frames[frame]) == Status.ABORTED
            if stalls == (1.0, 1.0) and t.after_busy[k] is not None:
                slowest = max(slowest, result.ends[frame] - result.sent[k])
    assert slowest <= ABORT_CYCLES
    with capsys.disabled():
        print(f"\n{simulator}: ABORTED at most {slowest} cycles after the ABORT's last byte")


def test_the_abort_traffic_is_what_the_golden_board_expects():
    """The ABORT traffic itself (no simulator): each long JOB and its queue answered by nothing and
    within the window's credits, each ABORT by ABORTED, the READ after it refused."""
    t = _Traffic(CONFIG, MAX_PAYLOAD, WINDOW)
    aborts = _abort_traffic(t, np.random.default_rng(7), [(0, True), (None, False)])
    aborted = encode_frame(pack(RESPONSE_HEADER, seq=0, status=Status.ABORTED.value), MAX_PAYLOAD)
    for first, k in aborts:
        assert not any(t.answers[first:k])
        assert sum(map(len, t.requests[first:k + 1])) <= WINDOW
        assert t.answers[k] == aborted
        assert _status(t.answers[k + 1]) == Status.OUT_OF_RANGE
        assert t.barrier[first] and t.barrier[k + 1]
    assert sum(map(len, t.requests[aborts[0][0]:aborts[0][1] + 1])) > WINDOW - 64
    assert t.answers[-2] == aborted and _status(t.answers[-1]) == Status.OK
    assert len(t.jobs) == 1 + len(aborts)

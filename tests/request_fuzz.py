"""Stateful fuzzing of the protocol: random sequences of valid and invalid requests, with the
golden board's answer to each and a bound on the cycles the design may take to give it.

A sequence mixes whole and partial model loads, CONFIG writes that are partial, repeated, shrunk,
grown past the memories or out of range, writes past each region's end and of the wrong length,
RUN, JOB and READ in every state (JOBs of the input size last written, or of another, some with
bad padding), IDENTIFY and STATUS, damaged frames, ABORTs of other versions, and reconnects as a
simulated board makes them (a partial frame cut off by the flush: a delimiter, then SYNC with seq
0xFF). Every value a write can leave in the weight and parameter memories keeps the held network
valid (no pre-activation can overflow), so the golden model's results are defined in every state.
The golden board (which has no clock) and the design must agree for any traffic within the
design's window: stop-and-wait, or a window of requests in flight.
"""

import dataclasses
import random

from protocol_traffic import CONFIG, MAX_PAYLOAD
from spinemu.hdl.framing import FrameDecodeError, decode_frame, encode_frame
from spinemu.hdl.memory_map import Region, groups, job_cycles, model_writes, network_words
from spinemu.hdl.model_image import random_model
from spinemu.hdl.noise_table import gaussian, logistic, thermal
from spinemu.hdl.protocol import (
    FORMAT_VERSION,
    REQUEST_HEADER,
    RUN_REQUEST,
    UNREADABLE_SEQ,
    Opcode,
    Status,
    config_limits,
    job_body,
    nbytes,
    read_body,
    request,
    run_body,
    unpack,
    write_bodies,
    write_body,
)
from spinemu.sim.board.base import quiet_cycles
from spinemu.sim.board.model import GoldenBoard

__all__ = ["VALID_P", "READY_P", "fuzz_traffic", "answer_limit", "golden_run"]

_TABLES = (gaussian(), logistic(), thermal())

#: The stalls the fuzz runs with: the design's bytes are offered and taken at these rates.
VALID_P = READY_P = 0.7
_MAX_SAMPLES = 6


def _frame(payload):
    return encode_frame(payload, MAX_PAYLOAD)


class _Traffic:
    def __init__(self, seed, config):
        self.rng, self.config, self.seq = random.Random(seed), config, 0
        self.requests = []
        self.n_in = 0       # the input size last written (refused or not), for JOBs that fit

    def next_seq(self):
        self.seq = (self.seq + 1) % UNREADABLE_SEQ
        return self.seq

    def send(self, opcode, body=b""):
        self.requests.append(_frame(request(self.next_seq(), opcode, body)))

    def write(self, region, addr, values):
        if region == Region.CONFIG and addr <= 1 < addr + len(values):
            self.n_in = values[1 - addr]
        self.send(Opcode.WRITE, write_body(region, addr, values, self.config))

    # ---- the kinds of step -----------------------------------------------------------------------

    def load(self):
        """A random valid model, whole or cut off after a random number of frames."""
        c, rng = self.config, self.rng
        while True:    # sizes whose weights and parameters fit the memories
            sizes = [rng.randint(1, c.max_inputs)] + [
                rng.randint(1, c.max_width) for _ in range(rng.randint(1, c.max_layers))]
            words, entries = network_words(sizes, c.lanes)
            if words <= c.weight_depth and entries <= c.param_depth:
                break
        model = dataclasses.replace(random_model(sizes, seed=rng.randrange(1 << 30), fmt=c.fmt),
                                    noise=rng.choice(_TABLES))
        bodies = write_bodies(model_writes(model, c), c, MAX_PAYLOAD)
        keep = len(bodies) if rng.random() < 0.7 else rng.randint(1, len(bodies))
        self.n_in = sizes[0]
        for body in bodies[:keep]:
            self.send(Opcode.WRITE, body)

    def config_write(self):
        """CONFIG elements from a random address: the layer count, sizes, 0 and too large ones."""
        c, rng = self.config, self.rng
        limits = config_limits(c)
        addr = rng.randint(0, c.max_layers + 2)
        values = []
        for a in range(addr, addr + rng.randint(1, 3)):
            top = limits[min(a, len(limits) - 1)]
            values.append(rng.choice([0, 1, rng.randint(1, top), top, top + 1]))
        self.write(Region.CONFIG, addr, values)

    def grow(self):
        """Every layer at its largest: more weight words than the memory holds, or just fitting."""
        c = self.config
        limits = config_limits(c)
        layers = self.rng.randint(1, c.max_layers)
        self.write(Region.CONFIG, 0, [layers] + [limits[min(a, 2)] for a in range(1, layers + 2)])

    def memory_write(self):
        """Elements to INPUT, WEIGHT, PARAM or NOISE near a region's end or anywhere in it, some too
        wide or cut short; values that keep any held network valid."""
        c, rng = self.config, self.rng
        region = rng.choice([Region.INPUT, Region.WEIGHT, Region.PARAM, Region.NOISE])
        depth = c.depth(region)
        addr = rng.choice([rng.randrange(depth), depth - rng.randint(1, 3), depth])
        count = rng.randint(1, 4)
        if region == Region.INPUT:
            values = [rng.choice([rng.randrange(1 << c.input_bits), 1 << c.input_bits])
                      for _ in range(count)]
        elif region == Region.WEIGHT:
            values = [rng.randrange(1 << c.word_bits(region)) for _ in range(count)]
        elif region == Region.NOISE:  # any entry is a valid table entry; some one bit too wide
            values = [rng.randrange(1 << c.word_bits(region)) | (rng.random() < 0.1) << 26
                      for _ in range(count)]
        else:
            f = c.fmt
            values = [c.param_layout.const({
                "bias": rng.randint(-1000, 1000),
                "theta": rng.randint(f.theta.min_code, f.theta.max_code),
                "sigma": rng.randint(1, f.sigma.max_code)}).as_bits() for _ in range(count)]
        body = write_body(region, addr, values, c)
        if rng.random() < 0.15:
            body = body[:-1]                              # an element cut short
        self.send(Opcode.WRITE, body)

    def run(self):
        self.send(Opcode.RUN, run_body(self.rng.randrange(1 << 64),
                                       self.rng.randint(0, _MAX_SAMPLES)))

    def job(self):
        """A JOB of the input size last written (or another), some with a padding bit set, cut
        short or one byte too long."""
        c, rng = self.config, self.rng
        n = self.n_in if rng.random() < 0.8 else rng.randint(0, c.max_inputs)
        inputs = [rng.randrange(1 << c.input_bits) for _ in range(n)]
        body = job_body(rng.randrange(1 << 64), rng.randint(0, _MAX_SAMPLES), inputs,
                        c.input_bits)
        kind = rng.random()
        if kind < 0.06 and n * c.input_bits % 8:
            body = body[:-1] + bytes([body[-1] | 0x80])        # a padding bit
        elif kind < 0.12:
            body = body[:rng.randrange(len(body))]
        elif kind < 0.18:
            body += bytes([rng.randrange(256)])
        if len(body) <= MAX_PAYLOAD - nbytes(REQUEST_HEADER):
            self.send(Opcode.JOB, body)

    def abort_version(self):
        """An ABORT that is not ABORT_FRAME: another version's, or another seq."""
        version = self.rng.choice([FORMAT_VERSION - 1, FORMAT_VERSION, FORMAT_VERSION + 1])
        self.send(Opcode.ABORT, bytes([version]))

    def read(self):
        rng = self.rng
        self.send(Opcode.READ, read_body(rng.randint(0, self.config.max_width + 2),
                                         rng.choice([0, 1, rng.randint(1, 40)])))

    def query(self):
        self.send(self.rng.choice([Opcode.IDENTIFY, Opcode.STATUS, Opcode.SYNC]))

    def damaged(self):
        """A frame with a bit flipped, an unknown opcode, a body of the wrong length."""
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            frame = bytearray(_frame(request(self.next_seq(), Opcode.STATUS)))
            frame[rng.randrange(len(frame) - 1)] ^= 1 << rng.randrange(8)
            self.requests.append(bytes(frame).replace(b"\0", b"\1")[:-1] + b"\0")
        elif kind == 1:
            unknown = rng.randint(max(o.value for o in Opcode) + 1, 0xFE)
            self.requests.append(_frame(bytes([self.next_seq(), unknown])))
        elif kind == 2:
            self.send(Opcode.RUN, run_body(1, 1)[:rng.randint(0, 9)])
        else:
            self.send(Opcode.READ, read_body(0, 1) + b"!")

    def reconnect(self):
        """What a simulated board feeds when a client leaves mid-frame: the partial frame, ended
        by the flush's delimiter (a frame error), then the flush request."""
        frame = _frame(request(self.next_seq(), Opcode.RUN, run_body(7, 3)))
        self.requests.append(frame[:self.rng.randint(1, len(frame) - 1)] + b"\0")
        self.requests.append(_frame(request(UNREADABLE_SEQ, Opcode.SYNC)))


_STEPS = [("load", 3), ("config_write", 4), ("grow", 1), ("memory_write", 4), ("run", 4),
          ("job", 4), ("read", 3), ("query", 1), ("damaged", 2), ("abort_version", 1),
          ("reconnect", 1)]


def fuzz_traffic(seed, count, config=CONFIG, *, reconnects=True):
    """At least ``count`` request frames of a random sequence from ``seed``: a list of bytes.
    ``reconnects=False`` leaves out the flushes, for a test that makes real reconnects."""
    traffic = _Traffic(seed, config)
    names, weights = zip(*[s for s in _STEPS if reconnects or s[0] != "reconnect"], strict=True)
    while len(traffic.requests) < count:
        getattr(traffic, traffic.rng.choices(names, weights)[0])()
    return traffic.requests


def answer_limit(board, frame, answer, config=CONFIG):
    """The most cycles the design may take to answer ``frame`` (from its first byte offered to its
    answer's last byte taken), given the golden ``board`` after it answered ``answer``: the bytes
    at the fuzz's stall rates with room to spare, the decoder's and encoder's latency, the RUN
    check, a job's documented cycles if the RUN or JOB was accepted, and the JOB's input and
    answer, a bit a cycle."""
    bytes_moved = (len(frame) + len(answer)) / min(VALID_P, READY_P)
    check = config.max_layers * groups(config.max_width, config.lanes)
    limit = 4 * bytes_moved + quiet_cycles(MAX_PAYLOAD) + check + 10 * (len(frame) + len(answer))
    samples = _accepted_job(frame, answer)
    if samples:
        limit += job_cycles(board.sizes[:board.layers + 1], config, samples)
    return int(limit)


def _accepted_job(frame, answer):
    """The samples of ``frame`` if it is a RUN or JOB that ``answer`` accepts, else 0."""
    try:
        asked, told = decode_frame(frame[:-1], MAX_PAYLOAD), decode_frame(answer[:-1], MAX_PAYLOAD)
    except FrameDecodeError:
        return 0
    header = nbytes(REQUEST_HEADER)
    if (asked[1] not in (Opcode.RUN.value, Opcode.JOB.value) or told[1] != Status.OK.value
            or len(asked) < header + nbytes(RUN_REQUEST)):
        return 0
    return unpack(RUN_REQUEST, asked[header:header + nbytes(RUN_REQUEST)])["samples"]


def golden_run(requests, config=CONFIG):
    """The golden board's answer to each request that gets one, the requests that do, and each
    one's cycle limit (:func:`answer_limit`)."""
    board = GoldenBoard(config, MAX_PAYLOAD)
    answered, answers, limits = [], [], []
    for frame in requests:
        answer = board.feed(frame)
        if answer:
            answered.append(frame)
            answers.append(answer)
            limits.append(answer_limit(board, frame, answer, config))
    return answered, answers, limits, board

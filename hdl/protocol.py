"""The command protocol over frames: opcodes, status codes, layouts. One definition for all sides.

Every frame payload (``hdl/framing.py`` adds CRC, COBS and the delimiter) is

    request   seq u8 | opcode u8 | body        (REQUEST_HEADER)
    response  seq u8 | status u8 | body        (RESPONSE_HEADER; seq echoed, 0xFF for a frame
                                                that was unreadable)

Flow control is a window of credits: the design buffers the bytes of the requests it has not yet
handled (up to ``window`` bytes, :data:`WINDOW` by default, reported by IDENTIFY) and answers them in
order; the host keeps at most that many request bytes unanswered. Every command is idempotent (a
job is fully determined by its seed), so a request whose answer was lost is simply sent again. The
one frame :data:`ABORT_FRAME` is recognised on the line itself, ahead of the queue: it stops the
job, drops what is queued and is answered ABORTED. ``docs/protocol.md`` has the bodies, the checks
and their order.

Every header and body is a :class:`~amaranth.lib.data.StructLayout` of byte-aligned fields, sent
little-endian: the first field in the lowest bytes. :func:`pack` and :func:`unpack` turn one into
bytes and back; the gateware takes byte ``k`` of a body from bits ``8k .. 8k + 7`` of its layout.
"""

import functools
import hashlib
import math

import numpy as np
from amaranth.lib import data, enum

from .framing import encode_frame
from .memory_map import ADDR_BITS, COUNT_BITS, SAMPLE_BITS, Region
from .noise_table import ENTRIES
from .seeding import SEED_BITS

__all__ = ["HASH_CYCLES", "Opcode", "Status", "FORMAT_VERSION", "UNREADABLE_SEQ", "WINDOW",
           "ABORT_SEQ", "ABORT_PAYLOAD", "ABORT_FRAME", "REQUEST_HEADER", "RESPONSE_HEADER",
           "WRITE_HEADER", "RUN_REQUEST", "JOB_REQUEST", "READ_REQUEST", "IDENTIFY_RESPONSE",
           "RUN_RESPONSE", "JOB_RESPONSE", "READ_ELEMENT", "STATUS_RESPONSE", "nbytes", "pack",
           "unpack", "pack_counts", "unpack_counts", "count_bits", "pack_bits", "unpack_bits",
           "packed_bytes", "leading_values",
           "job_input_bytes", "job_answer_bytes", "element_bytes", "config_limits",
           "identify_body", "build_hash", "request", "write_body", "run_body", "read_body",
           "job_body", "write_bodies"]

#: 2: RUN's configuration check (BAD_CONFIG) and its abort (ABORTED). 3: the NOISE region,
#: IDENTIFY's ``noise_hash`` and SYNC. 4: the window of requests (IDENTIFY's ``window``, STATUS's
#: ``overflows``), ABORT in place of the abort by any frame, and JOB. 5: IDENTIFY's
#: ``inputs_per_cycle`` (the weight words' slots, ``docs/engine.md``). 6: the noise streams (a job's
#: counts no longer depend on the lanes, so a version-5 design gives other counts).
FORMAT_VERSION = 6
UNREADABLE_SEQ = 0xFF
#: Cycles the design takes to hash its noise table again when the first IDENTIFY after NOISE writes
#: comes (``hdl/protocol_engine.py``: 34 an entry), before it answers.
HASH_CYCLES = 34 * ENTRIES + 1
#: Default bytes of a design's receive window: the requests it holds before handling them.
WINDOW = 1024


class Opcode(enum.Enum, shape=8):
    IDENTIFY = 0x01   # -> IDENTIFY_RESPONSE: design parameters
    WRITE = 0x02      # WRITE_HEADER, elements... -> empty
    RUN = 0x03        # RUN_REQUEST -> RUN_RESPONSE (when the job has finished), or ABORTED
    READ = 0x04       # READ_REQUEST -> count x READ_ELEMENT: spin counts of the last job
    STATUS = 0x05     # -> STATUS_RESPONSE: error counters and job count
    SYNC = 0x06       # -> empty; changes nothing: a fixed answer to find the link's state by
    ABORT = 0x07      # version u8 -> ABORTED: only as ABORT_FRAME, seen ahead of the queue
    JOB = 0x08        # JOB_REQUEST, packed input -> JOB_RESPONSE, packed counts


class Status(enum.Enum, shape=8):
    OK = 0x00
    BAD_OPCODE = 0x01      # unknown opcode
    BAD_LENGTH = 0x02      # a body too short, too long, or not a whole number of elements
    OUT_OF_RANGE = 0x03    # a region, address, sample count or read window out of range
    NO_MODEL = 0x04        # RUN before a model configuration was written
    BAD_FRAME = 0x05       # CRC, COBS or length error in the frame itself (seq = 0xFF)
    BAD_CONFIG = 0x06      # RUN on an incomplete or inconsistent configuration (docs/protocol.md)
    ABORTED = 0x07         # (seq 0) the answer to ABORT_FRAME: job stopped, queue dropped
    BUSY = 0x08            # (seq = 0xFF) a simulated board serving another client; then it closes
    OVERFLOW = 0x09        # (seq = 0xFF) bytes arrived with the window full: a frame was dropped
    BAD_VERSION = 0x0A     # an ABORT of another format version; body: the design's version u8


#: Before every request body; ``opcode`` is u8, not :class:`Opcode`: an unknown one is answered.
REQUEST_HEADER = data.StructLayout({"seq": 8, "opcode": 8})
#: Before every response body; ``status`` a :class:`Status` value.
RESPONSE_HEADER = data.StructLayout({"seq": 8, "status": 8})

#: WRITE's body: this header, then elements of :func:`element_bytes` each, to consecutive addresses.
WRITE_HEADER = data.StructLayout({"region": 8, "addr": 32})
#: RUN's body.
RUN_REQUEST = data.StructLayout({"seed": SEED_BITS, "samples": SAMPLE_BITS})
#: JOB's body: this, then the job's N_0 inputs packed at ``input_bits`` each (:func:`pack_bits`).
JOB_REQUEST = RUN_REQUEST
#: READ's body: ``count`` spin counts of the last job from ``offset`` on.
READ_REQUEST = data.StructLayout({"offset": 16, "count": 8})

#: IDENTIFY's answer: the format version and the design's parameters.
IDENTIFY_RESPONSE = data.StructLayout({
    "version": 8, "lanes": 8, "inputs_per_cycle": 8, "max_layers": 8, "max_inputs": 16, "max_width": 16,
    "weight_depth": 32, "param_depth": 16, "input_bits": 8, "weight_bits": 8, "a_width": 8,
    "theta_frac": 8, "sigma_width": 8, "sigma_frac": 8, "max_payload": 16, "window": 16,
    "build_hash": 32, "noise_hash": 32})
#: RUN's answer, sent when the job has finished.
RUN_RESPONSE = data.StructLayout({"cycles": 32})
#: JOB's answer: this, then the N_L counts packed at :func:`count_bits` each (:func:`pack_bits`).
JOB_RESPONSE = RUN_RESPONSE
#: One element of READ's answer, which is ``count`` of them.
READ_ELEMENT = data.StructLayout({"count": COUNT_BITS})
#: STATUS's answer: the frame error counters, refused requests, UART errors and jobs since reset.
STATUS_RESPONSE = data.StructLayout({
    "cobs_errors": 16, "length_errors": 16, "crc_errors": 16, "bad_requests": 16,
    "uart_frame_errors": 16, "uart_overruns": 16, "overflows": 16, "jobs": 32})

#: The sequence number of ABORT (whose frame is fixed) and of its ABORTED answer.
ABORT_SEQ = 0


def nbytes(layout):
    """Bytes of ``layout`` on the wire."""
    assert layout.size % 8 == 0, layout
    return layout.size // 8


def pack(layout, **fields):
    """The bytes of ``layout`` with every field given; ValueError for a missing, unknown or
    out-of-range field (nothing is truncated)."""
    names = [name for name, _ in layout]
    if set(fields) != set(names):
        raise ValueError(f"fields {sorted(fields)} are not the layout's {names}")
    for name, value in fields.items():
        if not 0 <= value < 1 << layout[name].width:
            raise ValueError(f"{name} = {value!r} does not fit in u{layout[name].width}")
    return layout.const(fields).as_bits().to_bytes(nbytes(layout), "little")


def unpack(layout, body):
    """The fields of ``layout`` in ``body`` (exactly its bytes; ValueError otherwise), by name."""
    if len(body) != nbytes(layout):
        raise ValueError(f"{len(body)} bytes, not the {nbytes(layout)} of the layout")
    value = layout.from_bits(int.from_bytes(body, "little"))
    return {name: value[name] for name, _ in layout}


#: READ_ELEMENT as numpy reads and writes it: one little-endian unsigned integer.
_COUNT_DTYPE = np.dtype(f"<u{nbytes(READ_ELEMENT)}")
assert [(name, f.offset) for name, f in READ_ELEMENT] == [("count", 0)]


def pack_counts(counts):
    """READ's answer body for ``counts`` (each a :data:`READ_ELEMENT`); ValueError for a count
    that does not fit."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if counts.size and not (0 <= counts.min() and counts.max() < 1 << READ_ELEMENT.size):
        raise ValueError(f"counts must be 0..{(1 << READ_ELEMENT.size) - 1}")
    return counts.astype(_COUNT_DTYPE).tobytes()


def unpack_counts(body):
    """The counts (int64) in READ's answer ``body``; ValueError if it is not whole elements."""
    if len(body) % _COUNT_DTYPE.itemsize:
        raise ValueError(f"{len(body)} bytes are not whole {_COUNT_DTYPE.itemsize}-byte counts")
    return np.frombuffer(body, dtype=_COUNT_DTYPE).astype(np.int64)


def count_bits(samples):
    """Bits of each count in JOB's answer: counts of ``samples`` samples are 0 .. samples."""
    return int(samples).bit_length()


def pack_bits(values, bits):
    """``values`` (unsigned, each below ``2^bits``) as a little-endian bit string: value ``i`` in
    bits ``i * bits`` .. ``(i + 1) * bits - 1``, the last byte padded with zeros. ValueError for a
    value that does not fit."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if values.size and not (0 <= values.min() and values.max() < 1 << bits):
        raise ValueError(f"values must be 0..{(1 << bits) - 1} to pack in {bits} bits")
    shifts = np.arange(bits, dtype=np.int64)
    stream = ((values[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(stream, bitorder="little").tobytes()


def packed_bytes(count, bits):
    """Bytes of ``count`` values of ``bits`` each, as :func:`pack_bits` packs them."""
    return math.ceil(count * bits / 8)


def leading_values(body, bits, most):
    """The values (int64) of ``bits`` each that ``body`` holds whole, at most ``most`` of them:
    what a design that takes a packed stream a byte at a time has by the end of ``body``."""
    stream = np.unpackbits(np.frombuffer(bytes(body), np.uint8), bitorder="little")
    count = min(most, len(stream) // bits)
    weights = np.int64(1) << np.arange(bits, dtype=np.int64)
    return stream[:count * bits].reshape(count, bits).astype(np.int64) @ weights


def unpack_bits(body, bits, count):
    """The ``count`` values (int64) of ``bits`` each in ``body``, as :func:`pack_bits` makes it:
    ValueError unless ``body`` is exactly their bytes with zero padding."""
    if len(body) != packed_bytes(count, bits):
        raise ValueError(f"{len(body)} bytes, not the {packed_bytes(count, bits)} of {count} "
                         f"values of {bits} bits")
    if count * bits % 8 and body[-1] >> (count * bits % 8):
        raise ValueError("the padding bits after the last value are not zero")
    return leading_values(body, bits, count)


def job_input_bytes(inputs, input_bits):
    """Bytes of a JOB's packed input of ``inputs`` values."""
    return packed_bytes(inputs, input_bits)


def job_answer_bytes(outputs, samples):
    """Bytes of a JOB's answer body (without its header) for ``outputs`` counts."""
    return nbytes(JOB_RESPONSE) + packed_bytes(outputs, count_bits(samples))


@functools.cache    # WRITEs ask once per element
def element_bytes(region, config):
    """Bytes per element of a WRITE to ``region``: little-endian, as wide as the memory word."""
    return -(-config.word_bits(region) // 8)


def config_limits(config):
    """The largest value of each CONFIG address, the smallest being 1: address ``addr`` takes
    ``1 .. limits[min(addr, 2)]`` (layers L <= max_layers, N_0 <= max_inputs, N_l <= max_width)."""
    return (config.max_layers, config.max_inputs, config.max_width)


def build_hash(config, max_payload, window=WINDOW):
    """32 bits that identify a build: the hash of the format version and every parameter."""
    text = f"{FORMAT_VERSION} {config} {max_payload} {window} {ADDR_BITS}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def identify_body(config, max_payload, noise_hash=None, window=WINDOW):
    """The body of the IDENTIFY response of a design with ``config`` and a receive window of
    ``window`` bytes, holding the noise table of hash ``noise_hash`` (default: the build's table,
    ``config.noise``)."""
    f = config.fmt
    return pack(IDENTIFY_RESPONSE, version=FORMAT_VERSION, lanes=config.lanes,
                inputs_per_cycle=config.inputs_per_cycle,
                max_layers=config.max_layers, max_inputs=config.max_inputs,
                max_width=config.max_width, weight_depth=config.weight_depth,
                param_depth=config.param_depth, input_bits=config.input_bits,
                weight_bits=config.weight_bits, a_width=f.a_width, theta_frac=f.theta_frac,
                sigma_width=f.sigma_width, sigma_frac=f.sigma_frac, max_payload=max_payload,
                window=window, build_hash=build_hash(config, max_payload, window),
                noise_hash=config.noise.hash if noise_hash is None else noise_hash)


def request(seq, opcode, body=b""):
    """A request payload (frame it with :func:`spinemu.hdl.framing.encode_frame`)."""
    return pack(REQUEST_HEADER, seq=seq & 0xFF, opcode=Opcode(opcode).value) + bytes(body)


def write_body(region, addr, values, config):
    """The body of a WRITE of ``values`` to ``region`` from ``addr`` on."""
    size = element_bytes(region, config)
    return (pack(WRITE_HEADER, region=Region(region).value, addr=addr)
            + b"".join(int(v).to_bytes(size, "little") for v in values))


def run_body(seed, samples):
    return pack(RUN_REQUEST, seed=seed, samples=samples)


def read_body(offset, count):
    return pack(READ_REQUEST, offset=offset, count=count)


def job_body(seed, samples, inputs, input_bits):
    """The body of a JOB with ``inputs`` (the N_0 values of the input vector)."""
    return run_body(seed, samples) + pack_bits(inputs, input_bits)


#: ABORT's payload: fixed, so that the design can recognise its frame on the line, ahead of the
#: queue; it carries the host's format version (another version's ABORT is BAD_VERSION).
ABORT_PAYLOAD = request(ABORT_SEQ, Opcode.ABORT, bytes([FORMAT_VERSION]))
#: ABORT's whole frame, delimiter included; the host sends a 0x00 before it.
ABORT_FRAME = encode_frame(ABORT_PAYLOAD)


def write_bodies(writes, config, max_payload):
    """WRITE bodies for ``(region, addr, value)`` writes, consecutive addresses merged into frames
    that fit ``max_payload`` (after the request header and the WRITE header)."""
    bodies, run = [], None
    space = max_payload - nbytes(REQUEST_HEADER) - nbytes(WRITE_HEADER)
    for region, addr, value in writes:
        room = space // element_bytes(region, config)
        if run and run[0] == region and run[1] + len(run[2]) == addr and len(run[2]) < room:
            run[2].append(value)
        else:
            if run:
                bodies.append(write_body(run[0], run[1], run[2], config))
            run = (region, addr, [value])
    if run:
        bodies.append(write_body(run[0], run[1], run[2], config))
    return bodies

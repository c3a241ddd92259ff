"""The command protocol over frames: opcodes, status codes, layouts. One definition for all sides.

Every frame payload (``hdl/framing.py`` adds CRC, COBS and the delimiter) is

    request   seq u8 | opcode u8 | body
    response  seq u8 | status u8 | body          (seq echoed; 0xFF for a frame that was unreadable)

Flow control is stop-and-wait: the host sends one request and waits for its response (with a
timeout) before the next. Every command is idempotent (a job is fully determined by its seed), so
a request whose response was lost is simply sent again. ``docs/protocol.md`` has the bodies.
"""

import functools
import hashlib
import struct

from amaranth.lib import enum

from .engine import ADDR_BITS, Region

__all__ = ["Opcode", "Status", "FORMAT_VERSION", "UNREADABLE_SEQ", "element_bytes",
           "identify_body", "IDENTIFY", "build_hash", "request", "write_body", "run_body",
           "read_body", "write_bodies"]

FORMAT_VERSION = 1
UNREADABLE_SEQ = 0xFF


class Opcode(enum.Enum, shape=8):
    IDENTIFY = 0x01   # -> design parameters
    WRITE = 0x02      # region u8, addr u32, elements... -> empty
    RUN = 0x03        # seed u64, samples u16 -> cycles u32 (when the job has finished)
    READ = 0x04       # offset u16, count u8 -> count x u16 spin counts of the last job
    STATUS = 0x05     # -> error counters and job count


class Status(enum.Enum, shape=8):
    OK = 0x00
    BAD_OPCODE = 0x01      # unknown opcode
    BAD_LENGTH = 0x02      # a body too short, too long, or not a whole number of elements
    OUT_OF_RANGE = 0x03    # a region, address, sample count or read window out of range
    NO_MODEL = 0x04        # RUN before a model configuration was written
    BAD_FRAME = 0x05       # CRC, COBS or length error in the frame itself (seq = 0xFF)


@functools.lru_cache(maxsize=None)    # it builds a layout; WRITEs ask once per element
def element_bytes(region, config):
    """Bytes per element of a WRITE to ``region``: little-endian, as wide as the memory word."""
    bits = {Region.CONFIG: 16, Region.INPUT: config.input_bits,
            Region.WEIGHT: config.lanes * config.weight_bits,
            Region.PARAM: config.param_layout.size}[Region(region)]
    return -(-bits // 8)


#: IDENTIFY's body: version, lanes, max_layers, max_inputs, max_width, weight_depth, param_depth,
#: input_bits, weight_bits, a_width, theta_frac, sigma_width, sigma_frac, max_payload, build hash.
IDENTIFY = struct.Struct("<BBBHHIHBBBBBBHI")


def build_hash(config, max_payload):
    """32 bits that identify a build: the hash of the format version and every parameter."""
    text = f"{FORMAT_VERSION} {config} {max_payload} {ADDR_BITS}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def identify_body(config, max_payload):
    """The body of the IDENTIFY response of a design with ``config``."""
    f = config.fmt
    return IDENTIFY.pack(FORMAT_VERSION, config.lanes, config.max_layers, config.max_inputs,
                         config.max_width, config.weight_depth, config.param_depth,
                         config.input_bits, config.weight_bits, f.a_width, f.theta_frac,
                         f.sigma_width, f.sigma_frac, max_payload, build_hash(config, max_payload))


def request(seq, opcode, body=b""):
    """A request payload (frame it with :func:`spinemu.hdl.framing.encode_frame`)."""
    return bytes([seq & 0xFF, Opcode(opcode).value]) + bytes(body)


def write_body(region, addr, values, config):
    """The body of a WRITE of ``values`` to ``region`` from ``addr`` on."""
    size = element_bytes(region, config)
    return (bytes([Region(region).value]) + struct.pack("<I", addr)
            + b"".join(int(v).to_bytes(size, "little") for v in values))


def run_body(seed, samples):
    return struct.pack("<QH", seed, samples)


def read_body(offset, count):
    return struct.pack("<HB", offset, count)


def write_bodies(writes, config, max_payload):
    """WRITE bodies for ``(region, addr, value)`` writes, consecutive addresses merged into frames
    that fit ``max_payload`` (2 header bytes, 5 bytes of region and address)."""
    bodies, run = [], None
    for region, addr, value in writes:
        room = (max_payload - 7) // element_bytes(region, config)
        if run and run[0] == region and run[1] + len(run[2]) == addr and len(run[2]) < room:
            run[2].append(value)
        else:
            if run:
                bodies.append(write_body(run[0], run[1], run[2], config))
            run = (region, addr, [value])
    if run:
        bodies.append(write_body(run[0], run[1], run[2], config))
    return bodies

"""The golden board: the whole design at the byte level, in Python.

:class:`GoldenBoard` takes the bytes a host sends and returns the bytes the design answers, exactly:
the same frame handling (``hdl/framing.py``), the same layouts (``hdl/protocol.py``), command
semantics and checks (``hdl/protocol_engine.py``), the same results
(:mod:`spinemu.sim.engine_model`) and the same cycle counts
(:func:`~spinemu.hdl.memory_map.job_cycles`). Results are defined for valid models only
(``ModelImage`` refuses models that could overflow the pre-activation); the design does not check
that itself.

The board has no clock and no queue: a job finishes as its RUN or JOB arrives, so it agrees with
the design for any traffic that stays within the design's window (the design answers in order),
whatever the requests; it never overflows, and ABORT has nothing to stop. It never raises on any
input, and it keeps at most one frame's bytes: it judges a longer one at its delimiter as the
design's decoder does, from a few numbers.
"""

import numpy as np

from spinemu.hdl.framing import (
    DELIMITER,
    MAX_PAYLOAD,
    FrameDecodeError,
    FrameError,
    decode_frame,
    encode_frame,
    max_encoded_length,
)
from spinemu.hdl.memory_map import EngineConfig, Region, groups, job_cycles, network_words
from spinemu.hdl.noise_table import NoiseTable
from spinemu.hdl.protocol import (
    ABORT_FRAME,
    ABORT_SEQ,
    FORMAT_VERSION,
    JOB_REQUEST,
    READ_ELEMENT,
    READ_REQUEST,
    REQUEST_HEADER,
    RESPONSE_HEADER,
    RUN_REQUEST,
    RUN_RESPONSE,
    STATUS_RESPONSE,
    UNREADABLE_SEQ,
    WINDOW,
    WRITE_HEADER,
    Opcode,
    Status,
    config_limits,
    count_bits,
    element_bytes,
    identify_body,
    job_answer_bytes,
    job_input_bytes,
    leading_values,
    nbytes,
    pack,
    pack_bits,
    pack_counts,
    unpack,
    unpack_bits,
)

from ..engine_model import run_network

__all__ = ["GoldenBoard"]


class _Refused(Exception):
    def __init__(self, status):
        self.status = status


def _signed(value, bits):
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def _cobs_walk(data, code, end):
    """The first COBS code byte at or past ``end``, walking from the code byte at ``code`` of
    ``data`` (each gives the distance to the next): a frame's COBS is whole when that is where its
    delimiter lies."""
    while code < end:
        code += data[code]
    return code


class GoldenBoard:
    """A design with ``config``, frames of ``max_payload`` bytes and a receive window of ``window``
    bytes (reported by IDENTIFY), as bytes in and bytes out (:meth:`feed`)."""

    def __init__(self, config=EngineConfig(), max_payload=MAX_PAYLOAD, window=WINDOW):
        c = self.config = config
        self.max_payload, self.window = max_payload, window
        identify_body(c, max_payload, window=window)    # refuses a design IDENTIFY cannot name
        # The frame so far: its bytes while it could still decode to a payload (the longest
        # encoding of max_payload bytes and the CRC), else only where its next code byte lies.
        self._keep = max_encoded_length(max_payload)
        self._partial = bytearray()
        self._next_code = None      # with the frame too long: bytes to its next COBS code byte
        self.layers = 0
        self.sizes = [0] * (c.max_layers + 1)
        self.memory = {Region.INPUT: np.zeros(c.max_inputs, np.int64),
                       Region.WEIGHT: np.zeros(c.depth(Region.WEIGHT), object),
                       Region.PARAM: np.zeros(c.lanes * c.param_depth, object),
                       Region.NOISE: np.array(c.noise.entries, object)}
        self._noise = c.noise       # the table the NOISE memory holds; None after NOISE writes
        self.results = []
        self.counters = {name: 0 for name, _ in STATUS_RESPONSE}

    def feed(self, data):
        """The bytes the design sends back after receiving ``data``, in time linear in its length
        (however the bytes are cut into calls)."""
        data, out, start = bytes(data), [], 0
        while True:
            end = data.find(DELIMITER, start)
            self._extend(data, start, len(data) if end < 0 else end)
            if end < 0:
                return b"".join(out)
            response = self._frame_end()
            if response is not None:
                out.append(self._encode(response))
            start = end + 1

    def _encode(self, response):
        """The frame of ``response``; as the design's encoder, ``0x02 0x00`` (a COBS error for the
        host) for one longer than max_payload, as an IDENTIFY answer is for a tiny max_payload."""
        if len(response) > self.max_payload:
            return bytes([2, DELIMITER])
        return encode_frame(response, self.max_payload)

    def _extend(self, data, start, end):
        """Add ``data[start:end]`` (no delimiter in it) to the frame so far."""
        if self._next_code is None and len(self._partial) + end - start <= self._keep:
            self._partial += data[start:end]
            return
        if self._next_code is None:     # it just grew too long: keep only its COBS walk
            self._next_code = _cobs_walk(self._partial, 0, len(self._partial)) - len(self._partial)
            self._partial.clear()
        self._next_code = _cobs_walk(data, start + self._next_code, end) - end

    def _frame_end(self):
        """The answer to the frame that a delimiter ended (None for an empty one): judged in the
        decoder's order, COBS, then length, then CRC."""
        if self._next_code is not None:
            # Longer than any encoding of max_payload + CRC bytes, so whole COBS decodes to too
            # many bytes: n encoded bytes decode to at least n - 1 - (n - 1) // 255.
            kind = FrameError.COBS if self._next_code else FrameError.LENGTH
            self._next_code = None
            return self._frame_error(kind)
        frame = bytes(self._partial)
        self._partial.clear()
        if not frame:
            return None                 # delimiters in a row: not a frame, as in the decoder
        if frame == ABORT_FRAME[:-1]:   # seen on the line, not decoded: there is nothing to stop
            return pack(RESPONSE_HEADER, seq=ABORT_SEQ, status=Status.ABORTED.value)
        try:
            payload = decode_frame(frame, self.max_payload)
        except FrameDecodeError as error:
            return self._frame_error(error.kind)
        return self._request(payload)

    def _frame_error(self, kind):
        name = {FrameError.COBS: "cobs_errors", FrameError.LENGTH: "length_errors",
                FrameError.CRC: "crc_errors"}[kind]
        self.counters[name] = min(self.counters[name] + 1, 0xFFFF)
        return (pack(RESPONSE_HEADER, seq=UNREADABLE_SEQ, status=Status.BAD_FRAME.value)
                + bytes([kind.value]))

    # ---- one request ----------------------------------------------------------------------------

    def _request(self, payload):
        seq, header = payload[0], nbytes(REQUEST_HEADER)    # seq: the first byte
        try:
            if len(payload) < header:
                raise _Refused(Status.BAD_LENGTH)
            opcode = unpack(REQUEST_HEADER, payload[:header])["opcode"]
            body = self._command(opcode, payload[header:])
            return pack(RESPONSE_HEADER, seq=seq, status=Status.OK.value) + body
        except _Refused as refused:
            self.counters["bad_requests"] = min(self.counters["bad_requests"] + 1, 0xFFFF)
            body = bytes([FORMAT_VERSION]) if refused.status == Status.BAD_VERSION else b""
            return pack(RESPONSE_HEADER, seq=seq, status=refused.status.value) + body

    def _command(self, opcode, body):
        c = self.config
        if opcode in (Opcode.IDENTIFY.value, Opcode.STATUS.value, Opcode.SYNC.value):
            if body:
                raise _Refused(Status.BAD_LENGTH)
            if opcode == Opcode.SYNC.value:
                return b""
            if opcode == Opcode.IDENTIFY.value:
                return identify_body(c, self.max_payload, self._noise_table().hash, self.window)
            return pack(STATUS_RESPONSE, **self.counters)
        if opcode == Opcode.WRITE.value:
            return self._write(body)
        if opcode == Opcode.RUN.value:
            if len(body) != nbytes(RUN_REQUEST):
                raise _Refused(Status.BAD_LENGTH)
            run = unpack(RUN_REQUEST, body)
            self._check_run(run["samples"])
            return self._run(run["seed"], run["samples"])
        if opcode == Opcode.JOB.value:
            return self._job(body)
        if opcode == Opcode.ABORT.value:    # any ABORT but ABORT_FRAME: another version's
            raise _Refused(Status.BAD_VERSION)
        if opcode == Opcode.READ.value:
            if len(body) != nbytes(READ_REQUEST):
                raise _Refused(Status.BAD_LENGTH)
            read = unpack(READ_REQUEST, body)
            offset, count = read["offset"], read["count"]
            answer = nbytes(RESPONSE_HEADER) + count * nbytes(READ_ELEMENT)
            if count == 0 or answer > self.max_payload or offset + count > len(self.results):
                raise _Refused(Status.OUT_OF_RANGE)
            return pack_counts(self.results[offset:offset + count])
        raise _Refused(Status.BAD_OPCODE)

    def _check_run(self, samples, answer=0):
        """RUN's checks 2 to 4 (``docs/protocol.md``), with JOB's answer of ``answer`` bytes
        checked against the frame after the sample count."""
        c = self.config
        if self.layers == 0:
            raise _Refused(Status.NO_MODEL)
        if samples == 0 or nbytes(RESPONSE_HEADER) + answer > self.max_payload:
            raise _Refused(Status.OUT_OF_RANGE)
        sizes = self.sizes[:self.layers + 1]
        if 0 in sizes:
            raise _Refused(Status.BAD_CONFIG)       # a size of the network never written
        words, entries = network_words(sizes, c.lanes, c.inputs_per_cycle)
        if words > c.weight_depth or entries > c.param_depth:
            raise _Refused(Status.BAD_CONFIG)

    def _job(self, body):
        """JOB: the packed input is written as its values complete (so a refused JOB may have
        written some), checked (padding, then length), then RUN's checks, the job, its answer."""
        c, header = self.config, nbytes(JOB_REQUEST)
        bits, n_in = c.input_bits, self.sizes[0]
        need = job_input_bytes(n_in, bits)
        given = body[header:header + need] if len(body) > header else b""
        values = leading_values(given, bits, n_in)
        self.memory[Region.INPUT][:len(values)] = values
        if len(given) == need:
            try:
                unpack_bits(given, bits, n_in)
            except ValueError:
                raise _Refused(Status.OUT_OF_RANGE) from None   # padding bits that are not zero
        if len(body) != header + need:
            raise _Refused(Status.BAD_LENGTH)
        job = unpack(JOB_REQUEST, body[:header])
        samples = job["samples"]
        outputs = self.sizes[self.layers] if self.layers else 0
        self._check_run(samples, job_answer_bytes(outputs, samples) if samples else 0)
        cycles = self._run(job["seed"], samples)
        return cycles + pack_bits(self.results, count_bits(samples))

    def _write(self, body):
        c = self.config
        # The region is judged as soon as its byte arrives, the length only at the end.
        at, header = WRITE_HEADER["region"].offset // 8, nbytes(WRITE_HEADER)
        if len(body) > at and body[at] > max(r.value for r in Region):
            raise _Refused(Status.OUT_OF_RANGE)
        if len(body) <= header:
            raise _Refused(Status.BAD_LENGTH)
        fields = unpack(WRITE_HEADER, body[:header])
        region, addr = Region(fields["region"]), fields["addr"]
        size, bits, depth = element_bytes(region, c), c.word_bits(region), c.depth(region)
        limits = config_limits(c)
        elements = body[header:]
        for start in range(0, len(elements) - len(elements) % size, size):
            value = int.from_bytes(elements[start:start + size], "little")
            ok = addr < depth and value >> bits == 0
            if region == Region.CONFIG:
                ok = ok and 0 < value <= limits[min(addr, len(limits) - 1)]
            if not ok:
                raise _Refused(Status.OUT_OF_RANGE)
            if region == Region.CONFIG:
                if addr == 0:
                    self.layers = value
                else:
                    self.sizes[addr - 1] = value
            else:
                self.memory[region][addr] = value
                if region == Region.NOISE:
                    self._noise = None
            addr += 1
        if len(elements) % size:
            raise _Refused(Status.BAD_LENGTH)
        return b""

    def _noise_table(self):
        if self._noise is None:
            self._noise = NoiseTable.from_entries("loaded", self.memory[Region.NOISE])
        return self._noise

    def _network(self):
        """The layers as the design holds them in its lane memories (the inverse of model_writes)."""
        c, P, W = self.config, self.config.lanes, self.config.inputs_per_cycle
        sizes = self.sizes[:self.layers + 1]
        layout = c.param_layout
        weights, bias, theta, sigma = [], [], [], []
        for l in range(self.layers):
            n_out, n_in = sizes[l + 1], sizes[l]
            w = np.zeros((n_out, n_in), np.int64)
            b, t, s = (np.zeros(n_out, np.int64) for _ in range(3))
            weights.append(w), bias.append(b), theta.append(t), sigma.append(s)
        for p in range(P):
            slot, entry = 0, 0
            for l in range(self.layers):
                n_out, n_in = sizes[l + 1], sizes[l]
                for g in range(groups(n_out, P)):
                    j = g * P + p
                    if j < n_out:
                        raw = self.memory[Region.WEIGHT][slot:][:n_in]
                        mask = (1 << c.weight_bits) - 1
                        weights[l][j, :len(raw)] = [
                            _signed(int(v) >> (p * c.weight_bits) & mask, c.weight_bits)
                            for v in raw]
                        fields = layout.from_bits(int(self.memory[Region.PARAM][p * c.param_depth
                                                                                 + entry]))
                        bias[l][j], theta[l][j], sigma[l][j] = fields.bias, fields.theta, fields.sigma
                    slot += groups(n_in, W) * W      # whole words of W slots
                    entry += 1
        return sizes, weights, bias, theta, sigma

    def _run(self, seed, samples):
        c = self.config
        sizes, weights, bias, theta, sigma = self._network()
        x = self.memory[Region.INPUT][:sizes[0]][None, :]
        counts = run_network(sizes, weights, bias, theta, sigma, c.fmt, x, [seed], samples,
                             self._noise_table())[0]
        self.results = [int(v) & 0xFFFF for v in counts]
        self.counters["jobs"] = (self.counters["jobs"] + 1) & 0xFFFFFFFF
        # The engine's cycle counter is 32 bits: a job that long would wrap it.
        return pack(RUN_RESPONSE, cycles=job_cycles(sizes, c, samples) & 0xFFFFFFFF)

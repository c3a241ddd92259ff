"""The host's client for the design: a board, or the simulated board, behind a pyserial URL.

::

    from spinemu.host.client import Client

    with Client.connect("socket://127.0.0.1:7777") as dev:     # or "/dev/ttyUSB1"
        print(dev.info)                                         # what IDENTIFY said
        dev.load_model(model)                                   # ModelError if it does not fit
        result = dev.reconstruct(images, masks, seeds, samples=32)
        result.reconstructed, result.counts                     # numpy arrays

The link carries the frames of ``docs/framing.md`` and the commands of ``docs/protocol.md``,
stop-and-wait: one request, then its answer. Every request has a sequence number; an answer counts
only if its frame decodes, its sequence number is the request's and its status is OK. A timeout, an
answer that does not decode (CRC, COBS, length), a BAD_FRAME answer (the design could not read the
request) or a lost frame make the client send the *same* request again (every command is
idempotent), up to ``retries`` times; then :class:`LinkError` names the request and what went wrong.
A RUN stopped by its own resend (ABORTED) is waited for again. A refused request raises
:class:`ProtocolError` naming the request and the status; a simulated board serving another client
(BUSY) and a line that echoes what is sent raise :class:`LinkError`. Answers are checked further
where the protocol allows: a RUN must report exactly the cycles the loaded model takes
(``docs/engine.md``), counts must not exceed the samples. So a result is never silently wrong or
missing: it is returned checked, or an exception says why not. ``docs/host.md`` has the details.
"""

import time
import warnings
from collections import deque
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import serial

from spinemu.hdl.formats import NeuronFormat
from spinemu.hdl.framing import FrameDecodeError, FrameSplitter, decode_frame, encode_frame
from spinemu.hdl.memory_map import (
    EngineConfig,
    check_fits,
    input_writes,
    job_cycles,
    job_inputs,
    model_writes,
)
from spinemu.hdl.model_image import ModelError, ModelImage
from spinemu.hdl.protocol import (
    FORMAT_VERSION,
    HASH_CYCLES,
    IDENTIFY_RESPONSE,
    READ_ELEMENT,
    READ_REQUEST,
    REQUEST_HEADER,
    RESPONSE_HEADER,
    RUN_RESPONSE,
    STATUS_RESPONSE,
    UNREADABLE_SEQ,
    WRITE_HEADER,
    Opcode,
    Status,
    build_hash,
    nbytes,
    read_body,
    request,
    run_body,
    unpack,
    unpack_counts,
    write_bodies,
)

from .errors import LinkError, ProtocolError, SpinemuError
from .jobs import reconstruct_images

__all__ = ["Client", "DesignInfo", "DesignStatus", "JobResults", "Reconstruction", "LinkStats",
           "SpinemuError", "LinkError", "ProtocolError", "ModelError", "DEFAULT_BAUD"]

#: The boards' UART rate (``firmware/boards.py``); ignored by ``socket://`` URLs.
DEFAULT_BAUD = 1_000_000
#: Answers are cut out of the byte stream with room for any design's largest frame (as large as
#: IDENTIFY can report); they are then judged against the design's own ``max_payload``.
_SPLIT_LIMIT = (1 << IDENTIFY_RESPONSE["max_payload"].width) - 1
#: Bytes of an answer's header (seq, status).
_HEADER = nbytes(RESPONSE_HEADER)
#: The smallest payload the protocol works with: a WRITE of one byte.
_MIN_PAYLOAD = nbytes(REQUEST_HEADER) + nbytes(WRITE_HEADER) + 1
#: The most counts one READ asks for (what its ``count`` field holds).
_READ_MAX = (1 << READ_REQUEST["count"].width) - 1
_SEQ_COUNT = UNREADABLE_SEQ            # sequence numbers 0..254; 0xFF marks unreadable frames

#: Refusals that a well-formed request gets only when damage slipped past the CRC: retried.
_RETRIED_STATUSES = (Status.BAD_LENGTH, Status.OUT_OF_RANGE)

_STATUS_MEANING = {
    Status.BAD_OPCODE: "the design does not know the command",
    Status.BAD_LENGTH: "the request's body has the wrong length",
    Status.OUT_OF_RANGE: "a region, address, value, sample count or read window is out of range",
    Status.NO_MODEL: "no model is loaded (was the design reset?)",
    Status.BAD_FRAME: "the design could not read the request",
    Status.BAD_CONFIG: "the configuration written is incomplete or does not fit the memories",
    Status.ABORTED: "a later frame stopped the job",
}


@dataclass(frozen=True)
class DesignInfo:
    """What IDENTIFY reports: the :class:`EngineConfig` it implies, the largest frame payload and
    the build hash. ``hash_matches`` says whether ``build_hash`` is the hash this spinemu computes
    for that configuration (False: the design was built from another version of the gateware).
    ``noise_hash`` is the hash of the noise table loaded now (``config.noise`` is the default: the
    table itself is not reported)."""

    version: int
    config: EngineConfig
    max_payload: int
    build_hash: int
    hash_matches: bool
    noise_hash: int

    @classmethod
    def from_body(cls, body):
        """Decode an IDENTIFY answer body; :class:`ProtocolError` if it is not one."""
        size = nbytes(IDENTIFY_RESPONSE)
        if len(body) != size:
            raise ProtocolError(f"IDENTIFY answered {len(body)} bytes, not {size}: "
                                f"not a spinemu design of format version {FORMAT_VERSION}")
        f = unpack(IDENTIFY_RESPONSE, body)
        version, max_payload, hash_ = f.pop("version"), f.pop("max_payload"), f.pop("build_hash")
        noise_hash = f.pop("noise_hash")
        if version != FORMAT_VERSION:
            raise ProtocolError(f"the design speaks protocol format version {version}; this "
                                f"client speaks version {FORMAT_VERSION}")
        fmt = {name: f.pop(name) for name in ("a_width", "theta_frac", "sigma_width",
                                              "sigma_frac")}
        try:
            config = EngineConfig(**f, fmt=NeuronFormat(**fmt))
        except ValueError as error:
            raise ProtocolError(f"IDENTIFY reports an impossible configuration: {error}") from None
        if max_payload < _MIN_PAYLOAD:
            raise ProtocolError(f"IDENTIFY reports frames of at most {max_payload} bytes; the "
                                f"protocol needs at least {_MIN_PAYLOAD}")
        return cls(version, config, max_payload, hash_, hash_ == build_hash(config, max_payload),
                   noise_hash)


@dataclass(frozen=True)
class DesignStatus:
    """The STATUS counters (``docs/protocol.md``): frame errors the design saw, refused requests,
    UART errors, and jobs run since reset."""

    cobs_errors: int
    length_errors: int
    crc_errors: int
    bad_requests: int
    uart_frame_errors: int
    uart_overruns: int
    jobs: int


@dataclass
class LinkStats:
    """What the link has seen since the client connected (:attr:`Client.stats`).

    ``requests``: requests answered; ``resends``: requests sent again; ``timeouts``: waits that
    ended without an answer; ``damaged``: answers that did not decode (CRC, COBS, length);
    ``unreadable``: BAD_FRAME answers (the design could not read a frame); ``stale``: answers to
    earlier requests (duplicates after a resend), dropped; ``aborted``: RUNs stopped by their own
    resend (ABORTED), waited for again; ``reruns``: jobs run again because the READ after a resent
    RUN found their counts gone. ``wait_s``: time blocked reading the link, ``write_s``: time
    writing to it.
    """

    requests: int = 0
    resends: int = 0
    timeouts: int = 0
    damaged: int = 0
    unreadable: int = 0
    stale: int = 0
    aborted: int = 0
    reruns: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    wait_s: float = 0.0
    write_s: float = 0.0

    def copy(self):
        return replace(self)

    def __sub__(self, other):
        return LinkStats(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))


@dataclass
class JobResults:
    """Results of a batch of jobs: ``counts`` int64 ``(jobs, N_L)`` (spin counts of the last layer),
    ``cycles`` int64 ``(jobs,)`` (the engine's cycles per job), the ``samples`` and ``seeds`` they
    ran with, the wall-clock ``seconds`` of the batch and the :class:`LinkStats` of it."""

    counts: np.ndarray
    cycles: np.ndarray
    samples: int
    seeds: np.ndarray
    seconds: float
    link: LinkStats = field(default_factory=LinkStats)


@dataclass
class Reconstruction(JobResults):
    """:class:`JobResults` of occluded images plus ``reconstructed`` (float in [0, 1], the images'
    shape): known pixels as they were (``image / max_value``), hidden ones the fraction of samples
    in which their output spin fired."""

    reconstructed: np.ndarray = None


def _check_seeds(seeds, jobs):
    seeds = list(seeds) if np.ndim(seeds) else None
    if seeds is None or len(seeds) != jobs:
        raise ValueError(f"one seed per job is needed: {jobs} jobs, seeds {seeds!r}")
    for s in seeds:
        if not isinstance(s, (int, np.integer)) or not 0 <= int(s) < 1 << 64:
            raise ValueError(f"seeds must be integers 0..2^64-1, not {s!r}")
    return np.array([int(s) for s in seeds], dtype=np.uint64)


class Client:
    """A connection to a design (see the module docstring). Use :meth:`connect`.

    ``port`` is an open pyserial port (or any object with its ``read``, ``write``, ``timeout`` and
    ``close``). ``timeout``: seconds to wait for an answer, on top of a job's own time for RUN;
    ``retries``: how often a request is sent again before :class:`LinkError`; ``min_clock_hz``:
    the slowest clock the design may run at, which bounds how long a RUN may take (the simulated
    board under Icarus or Amaranth is slow: pass 1000); ``progress``: a progress bar over jobs
    (None: only on a terminal).
    """

    def __init__(self, port, *, url=None, timeout=1.0, retries=3, min_clock_hz=10_000,
                 progress=None):
        if timeout <= 0 or retries < 0 or min_clock_hz <= 0:
            raise ValueError("timeout and min_clock_hz must be positive, retries at least 0")
        self.port, self.url = port, url or getattr(port, "portstr", None) or "the link"
        self.timeout, self.retries, self.min_clock_hz = timeout, retries, min_clock_hz
        self.progress = progress
        self.stats = LinkStats()
        self.info = None
        self.model = None
        self._splitter = FrameSplitter(_SPLIT_LIMIT)
        self._frames = deque()
        self._seq = 0
        self._max_payload = _SPLIT_LIMIT
        self._input = None                  # the input vector the design holds, if known
        self._job_rate = None               # cycles per second seen on RUNs
        self._port_timeout = None

    # ---- connection -----------------------------------------------------------------------------

    @classmethod
    def connect(cls, url, *, baudrate=DEFAULT_BAUD, identify=True, **options):
        """Open ``url`` (``/dev/ttyUSB1``, ``socket://127.0.0.1:PORT``, any pyserial URL) and
        IDENTIFY the design. ``options`` go to :class:`Client`. Raises :class:`LinkError` if the
        link cannot be opened, the design does not answer, or a simulated board serves another
        client."""
        try:
            port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05,
                                         write_timeout=options.get("timeout", 1.0) + 5.0)
        except (serial.SerialException, ValueError, OSError) as error:
            hint = (" (is `spinemu serve` running on that port?)" if url.startswith("socket://")
                    else "")
            raise LinkError(f"cannot open {url}: {error}{hint}") from None
        sock = getattr(port, "_socket", None)           # socket:// URLs: no Nagle delay
        if sock is not None:
            import socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(port, url=url, **options)
        if identify:
            try:
                client.identify()
            except BaseException:
                client.close()
                raise
        return client

    def close(self):
        """Close the link (the design keeps its model)."""
        if self.port is not None:
            try:
                self.port.close()
            finally:
                self.port = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        info = self.info
        what = (f"{info.config.lanes} lanes, max payload {info.max_payload}, build hash "
                f"0x{info.build_hash:08x}" if info else "not identified")
        model = f", model {'-'.join(map(str, self.model.sizes))}" if self.model else ""
        return f"<Client {self.url}: {what}{model}>"

    # ---- commands ---------------------------------------------------------------------------

    def identify(self, *, after_table=False):
        """IDENTIFY the design: a :class:`DesignInfo` (also kept as :attr:`info`). ``after_table``:
        NOISE entries were written, so the design hashes its table first (:data:`HASH_CYCLES`)."""
        timeout = self._run_timeout(HASH_CYCLES) if after_table else None
        for _ in range(self.retries + 1):
            body = self._request(Opcode.IDENTIFY, b"", "IDENTIFY", size=None, timeout=timeout)
            # A body of another length from a design of this version is a damaged answer; one of
            # another version is judged by DesignInfo.from_body.
            if (len(body) == nbytes(IDENTIFY_RESPONSE) or not body
                    or body[IDENTIFY_RESPONSE["version"].offset // 8] != FORMAT_VERSION):
                break
            self.stats.damaged += 1
        info = DesignInfo.from_body(body)
        if not info.hash_matches:
            warnings.warn(f"the design at {self.url} reports build hash 0x{info.build_hash:08x}, "
                          f"not 0x{build_hash(info.config, info.max_payload):08x} as this spinemu "
                          f"computes for its configuration: it was built from other gateware",
                          stacklevel=2)
        self.info, self._max_payload = info, info.max_payload
        return info

    def status(self):
        """The design's STATUS counters (:class:`DesignStatus`)."""
        body = self._request(Opcode.STATUS, b"", "STATUS", size=nbytes(STATUS_RESPONSE))
        return DesignStatus(**unpack(STATUS_RESPONSE, body))

    def load_model(self, model):
        """Load ``model`` (a :class:`ModelImage`, its bytes, or the path of a model image).

        The model is checked against the identified design first: :class:`ModelError` says every
        reason it does not fit, and nothing is written. Then the WRITE frames of
        :func:`~spinemu.hdl.memory_map.model_writes` go out, merged into frames as large as the
        design takes, the model's noise table last; IDENTIFY then checks that the design holds
        that table (:class:`ProtocolError` naming both hashes if not)."""
        if isinstance(model, (str, Path)):
            path = Path(model)
            try:
                data = path.read_bytes()
            except OSError as error:
                raise ModelError(f"{path}: cannot read the model image: {error.strerror}") from None
            model = ModelImage.from_bytes(data, source=str(path))
        elif isinstance(model, (bytes, bytearray)):
            model = ModelImage.from_bytes(bytes(model))
        info = self._require_info()
        check_fits(model, info.config)
        bodies = write_bodies(model_writes(model, info.config), info.config, info.max_payload)
        self.model, self._input = None, None
        bar = self._bar(len(bodies), "frame", "loading the model", minimum=64)
        try:
            for i, body in enumerate(bodies):
                self._request(Opcode.WRITE, body, f"WRITE {i + 1} of {len(bodies)} of the model",
                              size=0)
                bar.update()
        finally:
            bar.close()
        loaded = self.identify(after_table=True).noise_hash
        if loaded != model.noise.hash:   # a model runs only with the table it was trained with
            raise ProtocolError(f"the design at {self.url} holds noise table {loaded:08x} after "
                                f"loading the model, whose table is {model.noise.hash:08x} "
                                f"({model.noise.name})")
        self.model = model
        return model

    def run(self, inputs, seeds, samples, *, progress=None):
        """Run one job per row of ``inputs`` (shape ``(jobs, N_0)``, the engine's input vectors,
        see :func:`~spinemu.hdl.memory_map.job_inputs`) with its seed from ``seeds`` and
        ``samples`` samples: a :class:`JobResults`."""
        model = self._require_model()
        c = self.info.config
        inputs = np.asarray(inputs)
        if inputs.ndim != 2 or inputs.shape[1] != model.sizes[0]:
            raise ValueError(f"inputs must have shape (jobs, {model.sizes[0]}), not "
                             f"{inputs.shape}")
        if not np.issubdtype(inputs.dtype, np.integer) and inputs.size:
            if not np.array_equal(inputs, np.round(inputs)):
                raise ValueError("inputs must be integers")
        inputs = inputs.astype(np.int64)
        if inputs.size and (inputs.min() < 0 or inputs.max() >= 1 << model.input_bits):
            raise ValueError(f"inputs must be {model.input_bits}-bit unsigned values "
                             f"(0..{(1 << model.input_bits) - 1})")
        jobs = len(inputs)
        seeds = _check_seeds(seeds, jobs)
        if not isinstance(samples, (int, np.integer)) or not 1 <= samples < 1 << 16:
            raise ValueError(f"samples must be 1..65535, not {samples!r}")
        samples = int(samples)

        outputs = model.sizes[-1]
        per_read = min(_READ_MAX, (self.info.max_payload - _HEADER) // nbytes(READ_ELEMENT))
        reads = [(o, min(per_read, outputs - o)) for o in range(0, outputs, per_read)]
        expected = job_cycles(model.sizes, c.lanes, samples)
        counts = np.zeros((jobs, outputs), np.int64)
        cycles = np.zeros(jobs, np.int64)
        before, began = self.stats.copy(), time.perf_counter()
        bar = self._bar(jobs, "job", None, progress=progress, minimum=2)
        try:
            prepared = self._input_bodies(inputs[0]) if jobs else None
            for k in range(jobs):
                bodies, prepared = prepared, None
                if bodies:
                    self._input = None
                    for i, body in enumerate(bodies):
                        self._request(Opcode.WRITE, body, f"WRITE {i + 1} of {len(bodies)} of "
                                      f"job {k}'s input", size=0)
                    self._input = inputs[k]

                def prepare_next(k=k):
                    # Overlapped with the job: the next job's frames, built while the design runs.
                    nonlocal prepared
                    if k + 1 < jobs:
                        prepared = self._input_bodies(inputs[k + 1], after=inputs[k])

                cycles[k] = self._job(k, int(seeds[k]), samples, expected, reads, counts[k],
                                      prepare_next)
                if prepared is None and k + 1 < jobs:
                    prepare_next()
                bar.update()
        finally:
            bar.close()
        return JobResults(counts, cycles, samples, seeds, time.perf_counter() - began,
                          self.stats - before)

    def reconstruct(self, images, masks, seeds, samples, *, max_value=None, progress=None):
        """Imagine the hidden pixels of occluded ``images``: one job per image.

        ``images``: unsigned integer pixels (``(n, ...)``, below ``2^input_bits``); ``masks``: the
        same shape, 1 where a pixel is known. The model must take ``2 x pixels`` inputs (image
        with hidden pixels zeroed, then mask) and give ``pixels`` outputs. ``max_value`` (default
        ``2^input_bits - 1``) scales known pixels into [0, 1]. Returns a :class:`Reconstruction`.
        """
        model = self._require_model()
        images, masks = np.asarray(images), np.asarray(masks)
        if images.shape != masks.shape or images.ndim < 2:
            raise ValueError(f"images {images.shape} and masks {masks.shape} must have the same "
                             f"shape (n, ...)")
        if masks.size and not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be 0 (hidden) or 1 (known)")
        pixels = int(np.prod(images.shape[1:]))
        if model.sizes[0] != 2 * pixels or model.sizes[-1] != pixels:
            raise ValueError(f"the loaded model has {model.sizes[0]} inputs and "
                             f"{model.sizes[-1]} outputs; images of {pixels} pixels need "
                             f"{2 * pixels} inputs and {pixels} outputs")
        if max_value is None:
            max_value = (1 << model.input_bits) - 1
        result = self.run(job_inputs(images, masks), seeds, samples, progress=progress)
        reconstructed = reconstruct_images(images, masks, result.counts, result.samples,
                                           max_value)
        return Reconstruction(**{f.name: getattr(result, f.name) for f in fields(JobResults)},
                              reconstructed=reconstructed)

    # ---- the jobs -----------------------------------------------------------------------------

    def _input_bodies(self, x, after=None):
        """WRITE bodies that load input ``x``; none if the design already holds it (or will, once
        the job before, with input ``after``, has been loaded)."""
        held = self._input if after is None else after
        if held is not None and np.array_equal(held, x):
            return []
        return write_bodies(input_writes(x), self.info.config, self.info.max_payload)

    def _run_timeout(self, expected):
        limit = expected / self.min_clock_hz
        if self._job_rate:
            limit = min(limit, 4 * expected / self._job_rate)
        return self.timeout + limit

    def _job(self, k, seed, samples, expected, reads, counts, work):
        """RUN job ``k`` and READ its counts into ``counts``; its cycles."""
        for attempt in range(self.retries + 1):
            cycles, resent = self._run_job(k, seed, samples, expected, work)
            try:
                for offset, count in reads:
                    counts[offset:offset + count] = self._read_counts(k, offset, count, samples)
                return cycles
            except ProtocolError as error:
                # An answer to a RUN sent more than once can be an early one's, with a duplicate
                # job still running; the READ aborts it, and the design drops the counts with it.
                if not resent or error.status != Status.OUT_OF_RANGE or attempt == self.retries:
                    raise
                self.stats.reruns += 1

    def _run_job(self, k, seed, samples, expected, work):
        """RUN job ``k``: its cycles, and whether the RUN was sent more than once."""
        what = f"RUN of job {k} (seed {seed}, {samples} samples)"
        began, sends = time.perf_counter(), self.stats.resends
        body = self._request(Opcode.RUN, run_body(seed, samples), what,
                             size=nbytes(RUN_RESPONSE), timeout=self._run_timeout(expected),
                             work=work)
        resent = self.stats.resends != sends
        if not resent:
            rate = expected / max(time.perf_counter() - began, 1e-9)
            self._job_rate = min(self._job_rate or rate, rate)     # the slowest seen
        cycles = unpack(RUN_RESPONSE, body)["cycles"]
        if cycles != expected:
            raise ProtocolError(
                f"{what} took {cycles} cycles, but the loaded model takes {expected}: the design "
                f"does not hold the model this client loaded (was it reset or reloaded?)")
        return cycles, resent

    def _read_counts(self, k, offset, count, samples):
        what = f"READ of job {k}'s counts {offset}..{offset + count - 1}"
        body = self._request(Opcode.READ, read_body(offset, count), what,
                             size=nbytes(READ_ELEMENT) * count)
        values = unpack_counts(body)
        if values.max(initial=0) > samples:
            raise ProtocolError(f"{what}: a count of {values.max()} exceeds the {samples} "
                                f"samples")
        return values

    # ---- requests -----------------------------------------------------------------------------

    def _request(self, opcode, body, what, *, size, timeout=None, work=None):
        """Send a request until an OK answer with its sequence number and a body of ``size``
        bytes (None: any) comes; that body.

        The client builds only well-formed requests, so BAD_LENGTH and OUT_OF_RANGE answers, like
        bodies of the wrong length, come from damage that passed the CRC (CRC-16/GENIBUS misses
        about one damaged frame in 2^16, ``docs/framing.md``): they are retried too, and only a
        refusal on every attempt is reported as one."""
        if self.port is None:
            raise LinkError(f"{what}: the client is closed")
        seq = self._seq
        self._seq = (self._seq + 1) % _SEQ_COUNT
        encoded = encode_frame(request(seq, opcode, body), self._max_payload)
        # A leading 0x00 ends whatever a damaged earlier frame left in the design's decoder.
        frame = b"\x00" + encoded
        timeout = timeout or self.timeout
        problems, refusal = [], None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.resends += 1
            self._write(frame, what)
            if work is not None:
                work()
                work = None
            answer = self._answer(seq, timeout, what, encoded[:-1])
            while (opcode == Opcode.RUN and isinstance(answer, tuple)
                   and answer[0] == Status.ABORTED.value):
                # This resend stopped the job the RUN before it started, so the wait was too
                # short: the resent one runs now, from the start; wait longer, for it and for any
                # later resend.
                self.stats.aborted += 1
                timeout *= 2
                answer = self._answer(seq, timeout, what, encoded[:-1])
            refusal = None
            if isinstance(answer, str):
                problems.append(answer)
                continue
            status, answer_body = answer
            if status != Status.OK.value:
                try:
                    status = Status(status)
                except ValueError:
                    raise ProtocolError(f"{what}: the design answered unknown status "
                                        f"{status}") from None
                refusal = ProtocolError(f"the design refused {what}: {status.name} "
                                        f"({_STATUS_MEANING.get(status, '')})", status)
                if status not in _RETRIED_STATUSES:
                    raise refusal
                problems.append(f"refused with {status.name}")
                continue
            if size is not None and len(answer_body) != size:
                self.stats.damaged += 1
                problems.append(f"an answer of {len(answer_body)} bytes, not {size}")
                continue
            self.stats.requests += 1
            return answer_body
        if refusal is not None:
            raise refusal
        raise LinkError(f"no valid answer to {what} from {self.url} after "
                        f"{self.retries + 1} attempts: {'; '.join(problems)}")

    def _answer(self, seq, timeout, what, sent):
        """(status, body) of the answer to request ``seq`` (whose frame is ``sent``, without its
        delimiter), or why it should be sent again."""
        deadline = time.monotonic() + timeout
        while True:
            while not self._frames:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stats.timeouts += 1
                    return f"no answer in {timeout:.3g} s"
                self._frames.extend(self._splitter.feed(self._read(remaining, what)))
            frame = self._frames.popleft()
            if frame == sent:
                raise LinkError(f"{self.url} echoes what is sent (a loopback adapter or a "
                                f"terminal?), no spinemu design answers there")
            try:
                payload = decode_frame(frame, self._max_payload)
            except FrameDecodeError as error:
                self.stats.damaged += 1
                return f"damaged answer ({error})"
            if len(payload) < _HEADER:
                self.stats.damaged += 1
                return "answer of one byte"
            header = unpack(RESPONSE_HEADER, payload[:_HEADER])
            if header["seq"] == UNREADABLE_SEQ and header["status"] == Status.BUSY.value:
                raise LinkError(f"the board at {self.url} is in use by another client")
            if header["seq"] == UNREADABLE_SEQ and header["status"] == Status.BAD_FRAME.value:
                self.stats.unreadable += 1
                return "the design could not read the request (BAD_FRAME)"
            if header["seq"] != seq:
                self.stats.stale += 1
                continue
            return header["status"], bytes(payload[_HEADER:])

    # ---- the link -----------------------------------------------------------------------------

    def _set_timeout(self, value):
        if value != self._port_timeout:
            self.port.timeout = value
            self._port_timeout = value

    def _read(self, remaining, what):
        began = time.perf_counter()
        try:
            self._set_timeout(min(remaining, 0.25))
            data = self.port.read(1)
            if data:
                self._set_timeout(0)
                data += self.port.read(65536)
        except serial.SerialException as error:
            raise LinkError(f"the link to {self.url} failed while waiting for the answer to "
                            f"{what}: {error}") from None
        finally:
            self.stats.wait_s += time.perf_counter() - began
        self.stats.bytes_in += len(data)
        return data

    def _write(self, data, what):
        began = time.perf_counter()
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as error:
            raise LinkError(f"the link to {self.url} failed while sending {what}: "
                            f"{error}") from None
        finally:
            self.stats.write_s += time.perf_counter() - began
        self.stats.bytes_out += len(data)

    # ---- helpers ------------------------------------------------------------------------------

    def _require_info(self):
        if self.info is None:
            self.identify()
        return self.info

    def _require_model(self):
        if self.model is None:
            raise SpinemuError("no model loaded: call load_model() first (a load that failed "
                               "leaves none)")
        return self.model

    def _bar(self, total, unit, desc, *, progress=None, minimum=1):
        from tqdm import tqdm
        show = self.progress if progress is None else progress
        disable = (not show) if show is not None else (None if total >= minimum else True)
        return tqdm(total=total, unit=unit, desc=desc, disable=disable, leave=False)

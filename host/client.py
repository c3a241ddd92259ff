"""The host's client for the design: a board, or the simulated board, behind a pyserial URL.

::

    from spinemu.host.client import Client

    with Client.connect("socket://127.0.0.1:7777") as dev:     # or "/dev/ttyUSB1"
        print(dev.info)                                         # what IDENTIFY said
        dev.load_model(model)                                   # ModelError if it does not fit
        result = dev.reconstruct(images, masks, seeds, samples=32)
        result.reconstructed, result.counts                     # numpy arrays
        for k, counts, cycles in dev.iter_run(inputs, seeds, 32):
            ...                                                 # each job as its answer comes

The link carries the frames of ``docs/framing.md`` and the commands of ``docs/protocol.md`` through
a window of requests (:mod:`spinemu.host.link`): the client keeps requests in flight up to the
design's receive window (IDENTIFY's ``window`` bytes, at most 64 requests), so the wire is never
idle for want of a request. Every request has a sequence number; an answer counts only if its frame
decodes, its sequence number is an unanswered request's, its status is OK and its body is what the
command implies. A lost request (a later one was answered first, the design could not read it, a
timeout) is sent again (every command is idempotent), up to ``retries`` times; then
:class:`LinkError` names the request and what went wrong. Duplicate answers of resent requests are
recognised and dropped. A refused request raises :class:`ProtocolError` naming the request and the
status; a simulated board serving another client (BUSY) and a line that echoes what is sent raise
:class:`LinkError`.

A job is one JOB request (seed, samples and the packed input; the answer: cycles and the packed
counts): one round trip per job, all jobs streamed in the window. Where a JOB or its answer would
not fit the design's frames, a job is WRITEs of its input, then RUN alone, then READs of its counts.
:meth:`Client.connect` opens with ABORT (a clean state, whatever a previous host left in flight),
then IDENTIFY; a design of another format version is refused with both versions named. Answers are
checked where the protocol allows: a job must report exactly the cycles the loaded model takes
(``docs/engine.md``), counts must not exceed the samples. So a result is never silently wrong,
missing or duplicated: it is returned checked, or an exception says why not. ``docs/host.md`` has
the details.
"""

import time
import warnings
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import serial

from spinemu.hdl.formats import NeuronFormat
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
    JOB_REQUEST,
    JOB_RESPONSE,
    READ_ELEMENT,
    READ_REQUEST,
    REQUEST_HEADER,
    RESPONSE_HEADER,
    RUN_RESPONSE,
    STATUS_RESPONSE,
    WRITE_HEADER,
    Opcode,
    Status,
    build_hash,
    count_bits,
    job_answer_bytes,
    job_body,
    job_input_bytes,
    nbytes,
    read_body,
    run_body,
    unpack,
    unpack_bits,
    unpack_counts,
    write_bodies,
)

from .errors import LinkError, ProtocolError, SpinemuError
from .jobs import reconstruct_images
from .link import MAX_IN_FLIGHT, Damaged, Link, LinkStats

__all__ = ["Client", "DesignInfo", "DesignStatus", "JobResults", "Reconstruction", "LinkStats",
           "SpinemuError", "LinkError", "ProtocolError", "ModelError", "DEFAULT_BAUD",
           "MAX_IN_FLIGHT"]

#: The boards' UART rate: 3 Mbaud, which the boards' firmware runs at (``firmware/boards.py``);
#: ignored by ``socket://`` URLs.
DEFAULT_BAUD = 3_000_000
#: Bytes of an answer's header (seq, status).
_HEADER = nbytes(RESPONSE_HEADER)
#: The smallest payload the protocol works with: a WRITE of one byte.
_MIN_PAYLOAD = nbytes(REQUEST_HEADER) + nbytes(WRITE_HEADER) + 1
#: The most counts one READ asks for (what its ``count`` field holds).
_READ_MAX = (1 << READ_REQUEST["count"].width) - 1
_VERSION_AT = IDENTIFY_RESPONSE["version"].offset // 8


def _versions(url, version):
    return (f"the design at {url} speaks protocol format version {version}; this client speaks "
            f"version {FORMAT_VERSION} (use the spinemu that built its gateware, or build the "
            f"gateware of this one)")


@dataclass(frozen=True)
class DesignInfo:
    """What IDENTIFY reports: the :class:`EngineConfig` it implies, the largest frame payload, the
    receive ``window`` (bytes of requests the design buffers: the client's credits) and the build
    hash. ``hash_matches`` says whether ``build_hash`` is the hash this spinemu computes for that
    configuration (False: the design was built from another version of the gateware).
    ``noise_hash`` is the hash of the noise table loaded now (``config.noise`` is the default: the
    table itself is not reported)."""

    version: int
    config: EngineConfig
    max_payload: int
    window: int
    build_hash: int
    hash_matches: bool
    noise_hash: int

    @classmethod
    def from_body(cls, body, url="the link"):
        """Decode an IDENTIFY answer body; :class:`ProtocolError` if it is not one. The version
        (the body's first byte) is judged first: a design of another version is refused with both
        versions named, whatever the length of its answer."""
        if not body:
            raise ProtocolError("IDENTIFY answered 0 bytes: not a spinemu design")
        if body[_VERSION_AT] != FORMAT_VERSION:
            raise ProtocolError(_versions(url, body[_VERSION_AT]))
        size = nbytes(IDENTIFY_RESPONSE)
        if len(body) != size:
            raise ProtocolError(f"IDENTIFY answered {len(body)} bytes, not {size}: not a spinemu "
                                f"design of format version {FORMAT_VERSION}")
        f = unpack(IDENTIFY_RESPONSE, body)
        version, max_payload, hash_ = f.pop("version"), f.pop("max_payload"), f.pop("build_hash")
        noise_hash, window = f.pop("noise_hash"), f.pop("window")
        fmt = {name: f.pop(name) for name in ("a_width", "theta_frac", "sigma_width",
                                              "sigma_frac")}
        try:
            config = EngineConfig(**f, fmt=NeuronFormat(**fmt))
        except ValueError as error:
            raise ProtocolError(f"IDENTIFY reports an impossible configuration: {error}") from None
        if max_payload < _MIN_PAYLOAD:
            raise ProtocolError(f"IDENTIFY reports frames of at most {max_payload} bytes; the "
                                f"protocol needs at least {_MIN_PAYLOAD}")
        return cls(version, config, max_payload, window, hash_,
                   hash_ == build_hash(config, max_payload, window), noise_hash)


@dataclass(frozen=True)
class DesignStatus:
    """The STATUS counters (``docs/protocol.md``): frame errors the design saw, refused requests,
    UART errors, frames lost with its receive window full, and jobs run since reset."""

    cobs_errors: int
    length_errors: int
    crc_errors: int
    bad_requests: int
    uart_frame_errors: int
    uart_overruns: int
    overflows: int
    jobs: int


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


def _sized(size):
    """A check that an answer body has ``size`` bytes (else it is damaged)."""
    def check(body):
        if len(body) != size:
            raise Damaged(f"an answer of {len(body)} bytes, not {size}")
        return body
    return check


class Client:
    """A connection to a design (see the module docstring). Use :meth:`connect`.

    ``port`` is an open pyserial port (or any object with its ``read``, ``write``, ``timeout`` and
    ``close``). ``timeout``: seconds to wait for an answer, on top of a job's own time;
    ``retries``: how often a request is sent again before :class:`LinkError`; ``min_clock_hz``:
    the slowest clock the design may run at, which bounds how long a job may take (the simulated
    board under Icarus or Amaranth is slow: pass 1000); ``max_in_flight``: the most requests
    unanswered at once (1..64; 1 is stop-and-wait); ``progress``: a progress bar over jobs (None:
    only on a terminal). :attr:`stats` counts what the link has seen (:class:`LinkStats`).
    """

    def __init__(self, port, *, url=None, timeout=1.0, retries=3, min_clock_hz=10_000,
                 max_in_flight=MAX_IN_FLIGHT, progress=None):
        if timeout <= 0 or retries < 0 or min_clock_hz <= 0:
            raise ValueError("timeout and min_clock_hz must be positive, retries at least 0")
        self.url = url or getattr(port, "portstr", None) or "the link"
        self.timeout, self.retries, self.min_clock_hz = timeout, retries, min_clock_hz
        self.progress = progress
        self.stats = LinkStats()
        self._link = Link(port, self.url, self.stats, timeout=timeout, retries=retries,
                          min_clock_hz=min_clock_hz, max_in_flight=max_in_flight)
        self.info = None
        self.model = None
        self._input = None                  # (link generation, the input vector the design holds)

    @property
    def port(self):
        """The open port (None once closed); it may be replaced by a wrapper of it."""
        return self._link.port

    @port.setter
    def port(self, port):
        self._link.port = port

    # ---- connection -----------------------------------------------------------------------------

    @classmethod
    def connect(cls, url, *, baudrate=DEFAULT_BAUD, identify=True, **options):
        """Open ``url`` (``/dev/ttyUSB1``, ``socket://127.0.0.1:PORT``, any pyserial URL), ABORT
        whatever the design holds in flight and IDENTIFY it (``identify=False``: neither).
        ``options`` go to :class:`Client`. Raises :class:`LinkError` if the link cannot be opened,
        the design does not answer, or a simulated board serves another client;
        :class:`ProtocolError` naming both versions for a design of another format version."""
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
        try:
            client = cls(port, url=url, **options)
            if identify:
                client.open()
        except BaseException:
            port.close()
            raise
        return client

    def open(self):
        """What :meth:`connect` does on a new link: :meth:`abort`, then :meth:`identify`. A design
        of another format version is refused (:class:`ProtocolError` naming both versions): one
        that answers ABORT with BAD_VERSION (a newer one: the body is its version), or one that
        does not know ABORT (BAD_OPCODE: IDENTIFY then tells its version)."""
        status, body = self._link.abort()
        if status == Status.BAD_VERSION:
            version = body[0] if len(body) == 1 else "unknown"
            raise ProtocolError(f"{_versions(self.url, version)}: it refused ABORT with "
                                f"BAD_VERSION", status)
        # The last host may have loaded a table: the first IDENTIFY may hash it first.
        info = self.identify(after_table=True)
        if status != Status.ABORTED:
            raise ProtocolError(f"the design at {self.url} refused ABORT with {status.name}, "
                                f"though it reports format version {info.version}", status)
        return info

    def abort(self):
        """ABORT: the design stops its job and drops every request it holds unanswered; the link is
        then empty (:class:`ProtocolError` if the design refuses it)."""
        self._link.resync()
        self._input = None

    def close(self):
        """Close the link (the design keeps its model)."""
        port = self._link.port
        if port is not None:
            try:
                port.close()
            finally:
                self._link.port = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        info = self.info
        what = (f"{info.config.lanes} lanes, max payload {info.max_payload}, window "
                f"{info.window}, build hash 0x{info.build_hash:08x}" if info else "not identified")
        model = f", model {'-'.join(map(str, self.model.sizes))}" if self.model else ""
        return f"<Client {self.url}: {what}{model}>"

    # ---- commands -------------------------------------------------------------------------------

    def identify(self, *, after_table=False):
        """IDENTIFY the design: a :class:`DesignInfo` (also kept as :attr:`info`). ``after_table``:
        NOISE entries may have been written (by this host or the last), so the design may hash its
        table first (:data:`HASH_CYCLES`): the wait allows for it."""
        size = nbytes(IDENTIFY_RESPONSE)

        def check(body):
            # A body of another length from a design of this version is a damaged answer; one of
            # another version is judged by DesignInfo.from_body.
            if body and body[_VERSION_AT] == FORMAT_VERSION and len(body) != size:
                raise Damaged(f"an answer of {len(body)} bytes, not {size}")
            return body

        body = self._call(Opcode.IDENTIFY, b"", "IDENTIFY", check=check,
                          cycles=HASH_CYCLES if after_table else 0)
        info = DesignInfo.from_body(body, self.url)
        if not info.hash_matches:
            warnings.warn(f"the design at {self.url} reports build hash 0x{info.build_hash:08x}, "
                          f"not 0x{build_hash(info.config, info.max_payload, info.window):08x} as "
                          f"this spinemu computes for its configuration: it was built from other "
                          f"gateware", stacklevel=2)
        self.info = info
        self._link.window, self._link.max_payload = info.window, info.max_payload
        return info

    def status(self):
        """The design's STATUS counters (:class:`DesignStatus`)."""
        body = self._call(Opcode.STATUS, b"", "STATUS", check=_sized(nbytes(STATUS_RESPONSE)))
        return DesignStatus(**unpack(STATUS_RESPONSE, body))

    def load_model(self, model):
        """Load ``model`` (a :class:`ModelImage`, its bytes, or the path of a model image).

        The model is checked against the identified design first: :class:`ModelError` says every
        reason it does not fit, and nothing is written. Then the WRITE frames of
        :func:`~spinemu.hdl.memory_map.model_writes` stream through the window (they write disjoint
        addresses, so their order does not matter), merged into frames as large as the design
        takes, the model's noise table last; once every one is answered, IDENTIFY checks that the
        design holds that table (:class:`ProtocolError` naming both hashes if not)."""
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
            for _ in self._pipeline(
                    (Opcode.WRITE, body, f"WRITE {i + 1} of {len(bodies)} of the model",
                     _sized(0), 0) for i, body in enumerate(bodies)):
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

    def iter_run(self, inputs, seeds, samples):
        """Run one job per row of ``inputs`` (shape ``(jobs, N_0)``, the engine's input vectors,
        see :func:`~spinemu.hdl.memory_map.job_inputs`) with its seed from ``seeds`` and
        ``samples`` samples, streamed through the window: yields ``(index, counts, cycles)`` (the
        job's index, its ``N_L`` int64 counts, its engine cycles) in job order, each as soon as its
        answer has come. The arguments are checked at once (ValueError). Stopping the iteration
        early gives up the jobs still in flight: the next request starts with ABORT, which drops
        them. One iteration at a time per client."""
        inputs, seeds, samples = self._check_jobs(inputs, seeds, samples)
        return self._jobs(inputs, seeds, samples)

    def run(self, inputs, seeds, samples, *, progress=None):
        """:meth:`iter_run` collected: a :class:`JobResults`, with a progress bar over the jobs
        (``progress``, default the client's)."""
        inputs, seeds, samples = self._check_jobs(inputs, seeds, samples)
        jobs, outputs = len(inputs), self.model.sizes[-1]
        counts = np.zeros((jobs, outputs), np.int64)
        cycles = np.zeros(jobs, np.int64)
        peak, self.stats.in_flight = self.stats.in_flight, 0
        before, began = self.stats.copy(), time.perf_counter()
        bar = self._bar(jobs, "job", None, progress=progress, minimum=2)
        try:
            for k, job_counts, job_cycles_ in self._jobs(inputs, seeds, samples):
                counts[k], cycles[k] = job_counts, job_cycles_
                bar.update()
        finally:
            bar.close()
            link = self.stats - before
            self.stats.in_flight = max(peak, self.stats.in_flight)
        return JobResults(counts, cycles, samples, seeds, time.perf_counter() - began, link)

    def reconstruct(self, images, masks, seeds, samples, *, max_value=None, progress=None):
        """Imagine the hidden pixels of occluded ``images``: one job per image, all streamed.

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

    # ---- the jobs -------------------------------------------------------------------------------

    def _check_jobs(self, inputs, seeds, samples):
        model = self._require_model()
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
        seeds = _check_seeds(seeds, len(inputs))
        if not isinstance(samples, (int, np.integer)) or not 1 <= samples < 1 << 16:
            raise ValueError(f"samples must be 1..65535, not {samples!r}")
        return inputs, seeds, int(samples)

    def fits_job(self, samples):
        """Whether a job of the loaded model with ``samples`` samples goes as one JOB request:
        the request (header, seed, samples and the packed input) and the answer (header, cycles
        and the packed counts) both fit the design's ``max_payload``; else it runs as WRITEs, RUN
        and READs."""
        model, info = self._require_model(), self._require_info()
        asked = (nbytes(REQUEST_HEADER) + nbytes(JOB_REQUEST)
                 + job_input_bytes(model.sizes[0], info.config.input_bits))
        answer = _HEADER + job_answer_bytes(model.sizes[-1], samples)
        return max(asked, answer) <= info.max_payload

    def _jobs(self, inputs, seeds, samples):
        if self.fits_job(samples):
            yield from self._job_stream(inputs, seeds, samples)
        else:
            yield from self._run_read_jobs(inputs, seeds, samples)

    def _job_stream(self, inputs, seeds, samples):
        """Every job one JOB request, streamed in the window."""
        model, c = self.model, self.info.config
        outputs, bits = model.sizes[-1], count_bits(samples)
        expected = job_cycles(model.sizes, c, samples)
        size, header = job_answer_bytes(outputs, samples), nbytes(JOB_RESPONSE)

        def request(k):
            what = f"JOB of job {k} (seed {seeds[k]}, {samples} samples)"

            def check(answer):
                if len(answer) != size:
                    raise Damaged(f"an answer of {len(answer)} bytes, not {size}")
                try:
                    counts = unpack_bits(answer[header:], bits, outputs)
                except ValueError as error:
                    raise Damaged(f"a damaged answer ({error})") from None
                cycles = unpack(JOB_RESPONSE, answer[:header])["cycles"]
                self._check_cycles(what, cycles, expected)
                self._check_counts(what, counts, samples)
                return counts, cycles

            body = job_body(int(seeds[k]), samples, inputs[k], c.input_bits)
            return Opcode.JOB, body, what, check, expected

        self._input = None                  # each JOB writes the inputs anew
        try:
            for k, (counts, cycles) in enumerate(self._pipeline(map(request,
                                                                    range(len(inputs))))):
                yield k, counts, cycles
        except ProtocolError as error:
            if error.status != Status.BAD_LENGTH:
                raise
            # A JOB's length follows the input size written to the design's CONFIG.
            raise ProtocolError(f"{error}: the design's input size is not the loaded model's "
                                f"{model.sizes[0]} (was it reset, or given another model?)",
                                error.status) from None

    def _run_read_jobs(self, inputs, seeds, samples):
        """Jobs too large for JOB: per job its input's WRITEs (streamed; none if the design holds
        that input), then RUN alone, then the READs of its counts (streamed). A READ reads the last
        job's counts, so no other job's request is ever in flight with them."""
        model, c, link = self.model, self.info.config, self._link
        outputs = model.sizes[-1]
        per_read = min(_READ_MAX, (self.info.max_payload - _HEADER) // nbytes(READ_ELEMENT))
        reads = [(o, min(per_read, outputs - o)) for o in range(0, outputs, per_read)]
        expected = job_cycles(model.sizes, c, samples)
        for k, x in enumerate(inputs):
            held = self._input
            if held is None or held[0] != link.generation or not np.array_equal(held[1], x):
                self._input = None
                bodies = write_bodies(input_writes(x), c, self.info.max_payload)
                for _ in self._pipeline(
                        (Opcode.WRITE, body, f"WRITE {i + 1} of {len(bodies)} of job {k}'s input",
                         _sized(0), 0) for i, body in enumerate(bodies)):
                    pass
                self._input = (link.generation, x)
            what = f"RUN of job {k} (seed {seeds[k]}, {samples} samples)"

            def run_check(answer, what=what):
                if len(answer) != nbytes(RUN_RESPONSE):
                    raise Damaged(f"an answer of {len(answer)} bytes, not "
                                  f"{nbytes(RUN_RESPONSE)}")
                cycles = unpack(RUN_RESPONSE, answer)["cycles"]
                self._check_cycles(what, cycles, expected)
                return cycles

            cycles = self._call(Opcode.RUN, run_body(int(seeds[k]), samples), what,
                                check=run_check, cycles=expected)

            def read(spec, k=k):
                offset, count = spec
                what = f"READ of job {k}'s counts {offset}..{offset + count - 1}"

                def check(answer):
                    if len(answer) != nbytes(READ_ELEMENT) * count:
                        raise Damaged(f"an answer of {len(answer)} bytes, not "
                                      f"{nbytes(READ_ELEMENT) * count}")
                    values = unpack_counts(answer)
                    self._check_counts(what, values, samples)
                    return values

                return Opcode.READ, read_body(offset, count), what, check, 0

            counts = np.concatenate(list(self._pipeline(map(read, reads))))
            yield k, counts, cycles

    @staticmethod
    def _check_cycles(what, cycles, expected):
        if cycles != expected:
            raise ProtocolError(
                f"{what} took {cycles} cycles, but the loaded model takes {expected}: the design "
                f"does not hold the model this client loaded (was it reset or reloaded?)")

    @staticmethod
    def _check_counts(what, counts, samples):
        if counts.max(initial=0) > samples:
            raise ProtocolError(f"{what}: a count of {counts.max()} exceeds the {samples} "
                                f"samples")

    # ---- requests -------------------------------------------------------------------------------

    def _call(self, opcode, body, what, *, check=None, cycles=0):
        """One request, answered: its checked result."""
        link = self._link
        return link.wait(link.submit(opcode, body, what, check=check, cycles=cycles))

    def _pipeline(self, requests):
        """Send ``(opcode, body, what, check, cycles)`` requests through the window as credits
        allow; yield their results in order, each once it has come. Stopped early (or failed),
        it leaves the rest to be given up (the next request starts with ABORT)."""
        link, pending = self._link, deque()
        try:
            for opcode, body, what, check, cycles in requests:
                pending.append(link.submit(opcode, body, what, check=check, cycles=cycles))
                while pending and pending[0].done:
                    yield pending.popleft().result
            while pending:
                yield link.wait(pending.popleft())
        finally:
            if pending:
                link.forget()

    # ---- helpers --------------------------------------------------------------------------------

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

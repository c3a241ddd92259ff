"""Images per second through the simulated board, through it behind a latency, and what each board
would reach (the figures of `spinemu bench board` and `spinemu bench link`).

:func:`stream_digits` streams occluded held-out digits through the shipped model on the native
simulated board (:mod:`spinemu.sim.board.native`, the configuration of ``spinemu demo``) with the
host's :class:`~spinemu.host.client.Client`, checks every result against the golden model and
splits the wall time of the stream into the simulator (the board's own time working: moving bytes
and clocking the design, from its ``stats.json``), the host's Python (the process's CPU time, less
what it spent while the board ran a job) and the transport (the rest: loopback sockets, wake-ups,
scheduling).

:func:`stream_link` streams the same digits through the same board directly and then through a
:class:`~spinemu.host.latency_proxy.LatencyProxy` at each round trip of :data:`LINK_RTTS_S` (half
of it each way), in one run: images/s against the direct rate, whether the results are the direct
run's, the wire bytes per image each way (the client's :class:`~spinemu.host.client.LinkStats`)
and the model's load time, judged against the targets of issue #14 (:func:`link_targets`).

:func:`board_rows` says what a board would reach: with a window of requests in flight and one
round trip per job (format 4's JOB), a board runs at the slower of its engine (``job_cycles / f``
per image) and its UART, which is full duplex, so the bound is the larger direction
(``max(request, answer bytes) x 10 / baud``, 8N1); and, at a round-trip latency, at most the
requests its receive window holds per round trip (:func:`throughput`). Its model load time at
each latency is :func:`pipelined_seconds` of the load's frames. The bytes are the protocol's own
frames (:func:`job_frame_bytes`, :func:`load_frame_bytes`; :func:`job_wire_bytes` for format 3's
WRITE, RUN and READ). ``docs/boards.md`` ("Throughput") and ``docs/link.md`` describe the figures.
"""

import json
import statistics
import time
from collections import deque
from pathlib import Path

import numpy as np

from spinemu.firmware.boards import BOARDS
from spinemu.hdl.framing import MAX_PAYLOAD, encode_frame
from spinemu.hdl.memory_map import (
    EngineConfig,
    check_fits,
    fitted_config,
    input_writes,
    job_cycles,
    model_writes,
)
from spinemu.hdl.model_image import ModelError
from spinemu.hdl.protocol import (
    HASH_CYCLES,
    JOB_RESPONSE,
    WINDOW,
    Opcode,
    Status,
    count_bits,
    identify_body,
    job_answer_bytes,
    job_body,
    nbytes,
    pack,
    pack_bits,
    read_body,
    request,
    run_body,
    write_bodies,
)

from .datasets import load_dataset
from .errors import InputError, SpinemuError
from .jobs import image_jobs
from .latency_proxy import LatencyProxy
from .link import MAX_IN_FLIGHT
from .runners import open_runner

__all__ = ["start_board", "stream_digits", "stream_designs", "stream_link", "link_targets",
           "job_wire_bytes", "job_frame_bytes", "load_frame_bytes", "pipelined_seconds", "throughput",
           "load_reports", "board_rows", "BITS_PER_BYTE", "DEMO_SEED",
           "LINK_RTTS_S", "RATIO_TARGET"]

#: 8N1: a start bit, 8 data bits and a stop bit per byte on the UART.
BITS_PER_BYTE = 10
#: The round trips `spinemu bench link` adds (half each way) and at which `bench board` gives each
#: board's rate and load time: an FTDI's latency timer at 4 ms, and at 8 ms, each way.
LINK_RTTS_S = (0.008, 0.016)
#: Issue #14: images/s through each latency at least this share of the direct rate, same run.
RATIO_TARGET = 0.9
# How long the board's statistics may take to cover the last answer (it writes them once idle).
_STATS_TIMEOUT_S = 10.0


#: The run seed of ``spinemu demo``'s jobs, which the bench streams too.
DEMO_SEED = 1


def _occluded_digits(count):
    """The first ``count`` of ``spinemu demo``'s jobs (:class:`~spinemu.host.jobs.ImageJobs`)
    and the digits' largest pixel value."""
    dataset = load_dataset("digits")
    return image_jobs(dataset, "bottom", DEMO_SEED, count), dataset.max_value


def start_board(config, max_payload):
    """The native simulated board of ``config``, serving until stopped;
    :class:`~spinemu.host.errors.SpinemuError` saying why if it cannot start."""
    from spinemu.sim.board import ServeError
    from spinemu.sim.board.native import start_native_server
    try:
        return start_native_server(config, max_payload, once=False)
    except (ServeError, OSError) as error:
        raise SpinemuError(f"the simulated board could not start: {error}") from None


class _TimedPort:
    """A client's port that also counts the host's CPU time from sending a request to its last
    read of the answer: work the client does while the board works (the next job's frames,
    built during a RUN; the parts of an answer that came first), hidden behind the board's time."""

    def __init__(self, port):
        self.port, self._hidden, self._sent, self._read = port, 0.0, None, None

    @property
    def hidden_s(self):
        """CPU seconds spent between each request and the last read of its answer."""
        last = self._read - self._sent if self._read is not None else 0.0
        return self._hidden + last

    @property
    def timeout(self):
        return self.port.timeout

    @timeout.setter
    def timeout(self, value):
        self.port.timeout = value

    def write(self, data):
        self._hidden = self.hidden_s
        written = self.port.write(data)
        self._sent, self._read = time.process_time(), None
        return written

    def read(self, size):
        if self._sent is not None:
            self._read = time.process_time()
        return self.port.read(size)

    def close(self):
        self.port.close()

    def __getattr__(self, name):            # anything else a client asks of its port
        return getattr(self.port, name)


def _board_stats(board, client, offset=(0, 0)):
    """The board's ``stats.json`` once it covers every byte the client has sent and received
    (``offset``: the board's ``bytes_in`` and ``bytes_out`` when the client connected)."""
    deadline = time.monotonic() + _STATS_TIMEOUT_S
    while time.monotonic() < deadline:
        stats = board.stats()
        if (stats.get("bytes_in", 0) == offset[0] + client.stats.bytes_out
                and stats.get("bytes_out", 0) == offset[1] + client.stats.bytes_in):
            return stats
        time.sleep(0.002)
    raise SpinemuError(f"the simulated board's statistics ({board.out_dir / 'stats.json'}) did not "
                    f"catch up with the link in {_STATS_TIMEOUT_S:g} s")


def _settled_offset(board, flushes):
    """The board's ``(bytes_in, bytes_out)`` once its statistics cover ``flushes`` departed
    clients (it writes them after each flush)."""
    deadline = time.monotonic() + _STATS_TIMEOUT_S
    while time.monotonic() < deadline:
        stats = board.stats()
        if stats.get("flushes", 0) >= flushes:
            return stats.get("bytes_in", 0), stats.get("bytes_out", 0)
        time.sleep(0.002)
    raise SpinemuError(f"the simulated board's statistics ({board.out_dir / 'stats.json'}) did not "
                    f"count the client that left in {_STATS_TIMEOUT_S:g} s")


def stream_digits(model, count=64, samples=32, lanes=16, inputs_per_cycle=1, *, progress=None):
    """Stream ``count`` occluded digits with ``samples`` samples through ``model`` on the native
    simulated board with ``lanes`` lanes of ``inputs_per_cycle`` inputs a cycle; the figures as a
    JSON-able dict (see ``docs/boards.md``).

    ``bit_exact`` says whether every count equals the golden model's."""
    from .client import Client

    jobs, top = _occluded_digits(count)
    images, masks, seeds, inputs = jobs.images, jobs.masks, jobs.seeds, jobs.inputs
    config = fitted_config(model, lanes, inputs_per_cycle)
    began = time.perf_counter()
    board = start_board(config, MAX_PAYLOAD)
    started_s = time.perf_counter() - began
    with board:
        with Client.connect(board.url, min_clock_hz=1000, timeout=5.0) as dev:
            began = time.perf_counter()
            dev.load_model(model)
            load_s = time.perf_counter() - began
            dev.port = port = _TimedPort(dev.port)
            before, cpu = _board_stats(board, dev), time.process_time()
            result = dev.reconstruct(images, masks, seeds, samples, max_value=top,
                                     progress=progress)
            cpu = time.process_time() - cpu
            after = _board_stats(board, dev)
    delta = {key: after[key] - before[key] for key in before}
    # The board's time simulating while it waited for the client's next request is not work the
    # stream waited for: the client was running then (its Python) or its bytes were on the way.
    sim = delta["compute_s"] - delta["idle_compute_s"]
    wall, python = result.seconds, cpu - port.hidden_s
    seconds = {"simulator": sim, "python": python, "transport": wall - sim - python}
    golden = open_runner("golden", model=model, lanes=lanes).run(inputs, seeds, samples).counts
    mismatched = int(np.sum(np.any(golden != result.counts, axis=1)))
    cycles = job_cycles(model.sizes, config, samples)
    return {
        "images": count, "samples": samples, "lanes": lanes, "inputs_per_cycle": inputs_per_cycle,
        "config": str(config),
        "start_s": started_s, "load_s": load_s,
        "seconds": wall, "images_per_s": count / wall,
        "split_s": seconds, "shares": {name: value / wall for name, value in seconds.items()},
        "engine_cycles_per_image": cycles,
        "cycles_match_model": bool(np.all(result.cycles == cycles)),
        "sim_cycles_per_image": delta["sim_cycles"] / count,
        "sim_cycles_per_s": delta["sim_cycles"] / delta["compute_s"],
        "engine_cycles_per_s": int(result.cycles.sum()) / wall,
        "bytes_in_per_image": delta["bytes_in"] / count,
        "bytes_out_per_image": delta["bytes_out"] / count,
        # the first job's bytes as the protocol makes them, with format 3's WRITE, RUN and READ
        # and with format 4's JOB: the link's bytes must be one of them
        "job_wire_bytes": job_wire_bytes(model, config, MAX_PAYLOAD, inputs[0], int(seeds[0]),
                                         samples, golden[0]),
        "job_frame_bytes": job_frame_bytes(model, config, MAX_PAYLOAD, inputs[0], int(seeds[0]),
                                           samples, golden[0]),
        "python_cpu_s": cpu, "python_hidden_s": port.hidden_s,
        "python_s_per_image": cpu / count,
        "bit_exact": mismatched == 0, "mismatched_images": mismatched,
    }


def stream_designs(model, urls, count=64, samples=32, *, progress=None):
    """Stream ``count`` occluded digits with ``samples`` samples through ``model`` on the designs
    at ``urls`` (one, or a pool of several: boards or ``spinemu serve``); the figures as a
    JSON-able dict, ``bit_exact`` saying whether every count equals the golden model's."""
    jobs, _ = _occluded_digits(count)
    began = time.perf_counter()
    with open_runner(url=list(urls), model=model, timeout=5.0) as runner:
        load_s = time.perf_counter() - began
        result = runner.run(jobs.inputs, jobs.seeds, samples, progress=progress)
        where = runner.where()
    golden = open_runner("golden", model=model).run(jobs.inputs, jobs.seeds, samples).counts
    mismatched = int(np.sum(np.any(golden != result.counts, axis=1)))
    return {"urls": list(urls), "images": count, "samples": samples, "load_s": load_s,
            "seconds": result.seconds, "images_per_s": count / result.seconds,
            "left": where.get("left", []), "bit_exact": mismatched == 0,
            "mismatched_images": mismatched}


def _stream_once(url, model, jobs, top, samples, progress, board=None, offset=(0, 0)):
    """Connect to ``url``, load ``model`` and stream ``jobs``: (load seconds, Reconstruction,
    the board's figures over the stream or None). ``board``: a board with ``stats.json`` whose
    ``bytes_in`` and ``bytes_out`` were ``offset`` when this client connected."""
    from .client import Client

    with Client.connect(url, min_clock_hz=1000, timeout=5.0) as dev:
        began = time.perf_counter()
        dev.load_model(model)
        load_s = time.perf_counter() - began
        before = _board_stats(board, dev, offset) if board is not None else None
        result = dev.reconstruct(jobs.images, jobs.masks, jobs.seeds, samples, max_value=top,
                                 progress=progress)
        after = _board_stats(board, dev, offset) if board is not None else None
    if board is None:
        return load_s, result, None
    delta = {key: after[key] - before[key] for key in ("sim_cycles", "compute_s",
                                                        "idle_compute_s")}
    working = delta["compute_s"] - delta["idle_compute_s"]
    return load_s, result, {"sim_cycles_per_s": delta["sim_cycles"] / delta["compute_s"],
                            "working_share": working / result.seconds}


def stream_link(model, count=64, samples=32, lanes=16, inputs_per_cycle=1, *, rtts=LINK_RTTS_S,
                rounds=1, start=start_board, progress=None):
    """Stream ``count`` occluded digits with ``samples`` samples through ``model`` on one simulated
    board with ``lanes`` lanes of ``inputs_per_cycle`` inputs a cycle (``start(config,
    max_payload)``: the native board), directly and through a
    :class:`~spinemu.host.latency_proxy.LatencyProxy` adding each round trip of ``rtts`` (seconds,
    half each way), in turns, ``rounds`` times; each run connects, loads the model and streams the
    same jobs. The figures as a JSON-able dict (``docs/link.md``): per latency the median images/s,
    the median over rounds of its ratio to the direct run of the same round, whether every run's
    counts and cycles are the direct run's, the wire bytes per image each way (the client's
    LinkStats), the load time and, from the native board's ``stats.json``, its simulator's cycles/s
    and the share of the stream's wall time it worked (not waiting for a request: what latency the
    window did not hide shows there) and the ratio corrected for the simulator's speed
    (``ratio_at_direct_sim_speed``: the machine's load changes it from run to run); every other
    round runs the latencies in the opposite order. The direct run is checked against the golden
    model (``bit_exact``)."""
    if rounds < 1 or count < 1:
        raise ValueError("rounds and count must be at least 1")
    jobs, top = _occluded_digits(count)
    config = fitted_config(model, lanes, inputs_per_cycle)
    latencies = (0.0, *rtts)
    runs = {rtt: [] for rtt in latencies}
    began = time.perf_counter()
    board = start(config, MAX_PAYLOAD)
    started_s = time.perf_counter() - began
    measured = board if getattr(board, "backend", None) == "native" else None
    with board:
        done = 0
        for k in range(rounds):
            # every other round in the opposite order, so that a drift in the machine's load
            # does not favour one latency
            for rtt in latencies if k % 2 == 0 else latencies[::-1]:
                offset = _settled_offset(measured, done) if measured is not None else (0, 0)
                if rtt:
                    with LatencyProxy(board.url, rtt / 2) as url:
                        run = _stream_once(url, model, jobs, top, samples, progress, measured,
                                           offset)
                else:
                    run = _stream_once(board.url, model, jobs, top, samples, progress, measured,
                                       offset)
                runs[rtt].append(run)
                done += 1
    golden = open_runner("golden", model=model, lanes=lanes).run(jobs.inputs, jobs.seeds,
                                                                 samples).counts
    reference = runs[0.0][0][1]
    direct_rates = [count / result.seconds for _, result, _ in runs[0.0]]
    direct_speeds = [figures and figures["sim_cycles_per_s"] for _, _, figures in runs[0.0]]
    rows = []
    for rtt in latencies:
        rates = [count / result.seconds for _, result, _ in runs[rtt]]
        links = [result.link for _, result, _ in runs[rtt]]
        boards = [figures for _, _, figures in runs[rtt] if figures is not None]
        # the ratio were the simulator as fast as in the direct run of the same round
        at_speed = [r / d * speed / figures["sim_cycles_per_s"]
                    for r, d, speed, (_, _, figures) in zip(rates, direct_rates, direct_speeds,
                                                            runs[rtt], strict=True)
                    if figures is not None]
        rows.append({
            "rtt_s": rtt,
            "images_per_s": statistics.median(rates), "images_per_s_rounds": rates,
            "ratio": statistics.median(r / d for r, d in zip(rates, direct_rates, strict=True)),
            "ratio_at_direct_sim_speed": statistics.median(at_speed) if at_speed else None,
            "identical": all(np.array_equal(result.counts, reference.counts)
                             and np.array_equal(result.cycles, reference.cycles)
                             for _, result, _ in runs[rtt]),
            "load_s": statistics.median(load for load, _, _ in runs[rtt]),
            "load_s_rounds": [load for load, _, _ in runs[rtt]],
            # the largest over the rounds: a target on bytes must hold in every run
            "bytes_out_per_image": max(link.bytes_out for link in links) / count,
            "bytes_in_per_image": max(link.bytes_in for link in links) / count,
            "resends": sum(link.resends for link in links),
            # the most requests unanswered at once (a client without a window: 1)
            "in_flight": max(getattr(link, "in_flight", 1) for link in links),
            "board": {key: statistics.median(b[key] for b in boards)
                      for key in ("sim_cycles_per_s", "working_share")} if boards else None,
            "timeouts": sum(link.timeouts for link in links),
        })
    x, seed = jobs.inputs[0], int(jobs.seeds[0])
    return {
        "images": count, "samples": samples, "lanes": lanes, "inputs_per_cycle": inputs_per_cycle,
        "config": str(config), "rounds": rounds, "start_s": started_s,
        "bit_exact": bool(np.array_equal(golden, reference.counts)),
        "stop_and_wait_bytes": list(job_wire_bytes(model, config, MAX_PAYLOAD, x, seed, samples,
                                                   golden[0])),
        "job_frame_bytes": list(job_frame_bytes(model, config, MAX_PAYLOAD, x, seed, samples,
                                                golden[0])),
        "runs": rows,
    }


def link_targets(figures):
    """The targets of issue #14 for :func:`stream_link`'s ``figures``: a list of dicts with
    ``target`` (what), ``value`` and ``met``. Wire bytes per image (both ways) at most half of
    format 3's (:func:`job_wire_bytes` of the same job), in every run; at each latency images/s
    at least :data:`RATIO_TARGET` of the direct rate; every run's results the direct run's, and
    the direct run's the golden model's."""
    today = sum(figures["stop_and_wait_bytes"])
    limit = today // 2
    targets = []
    for run in figures["runs"]:
        if run["rtt_s"]:
            targets.append({"target": f"images/s at {run['rtt_s'] * 1e3:g} ms >= {RATIO_TARGET:g}"
                                      f" x direct", "value": run["ratio"],
                            "met": run["ratio"] >= RATIO_TARGET})
    worst = max(run["bytes_out_per_image"] + run["bytes_in_per_image"] for run in figures["runs"])
    targets.append({"target": f"wire bytes per image <= {limit} (half of format 3's {today})",
                    "value": worst, "met": worst <= limit})
    identical = figures["bit_exact"] and all(run["identical"] for run in figures["runs"])
    targets.append({"target": "results identical to the direct run (bit-exact against the "
                              "golden model)", "value": identical, "met": identical})
    return targets


def job_wire_bytes(model, config, max_payload, x, seed, samples, counts):
    """Bytes on the wire of one job of ``model`` with input ``x`` whose results are ``counts``, as
    a format-3 client sends it to a design with ``config``, stop-and-wait: ``(requests,
    answers)``, each frame counted with its COBS overhead, CRC and delimiter, each request with
    the 0x00 the client sends before it (``docs/host.md``). Frames: the input WRITE(s), RUN, the
    READ(s) of the counts. (RUN and READ stay in format 4 for answers too large for JOB.)"""
    counts = np.asarray(counts, dtype="<u2")
    cycles = job_cycles(model.sizes, config, samples).to_bytes(4, "little")
    per_read = min(255, (max_payload - 2) // 2)         # the client's READ size
    exchanges = [(Opcode.WRITE, body, b"")
                 for body in write_bodies(input_writes(x), config, max_payload)]
    exchanges.append((Opcode.RUN, run_body(seed, samples), cycles))
    exchanges += [(Opcode.READ, read_body(o, len(counts[o:o + per_read])),
                   counts[o:o + per_read].tobytes()) for o in range(0, len(counts), per_read)]
    sent = answered = 0
    for seq, (opcode, body, answer) in enumerate(exchanges):
        sent += 1 + len(encode_frame(request(seq, opcode, body), max_payload))
        answered += len(encode_frame(bytes([seq, Status.OK.value]) + answer, max_payload))
    return sent, answered


def job_frame_bytes(model, config, max_payload, x, seed, samples, counts):
    """Bytes on the wire of one job as one JOB request and its answer (format 4,
    ``docs/protocol.md``): ``(request, answer)``, each frame with its COBS overhead, CRC and
    delimiter; a request goes out alone, its predecessor's delimiter ending what came before
    (:mod:`spinemu.host.link`: only a resend gets a 0x00 before it). The inputs are packed at
    the design's ``input_bits``, the counts at :func:`~spinemu.hdl.protocol.count_bits` of
    ``samples``. ValueError if the JOB or its answer
    does not fit ``max_payload`` (RUN and READ are then the way: :func:`job_wire_bytes`)."""
    counts = np.asarray(counts)
    header = nbytes(JOB_RESPONSE)
    answer_body = (pack(JOB_RESPONSE, cycles=job_cycles(model.sizes, config, samples))
                   + pack_bits(counts, count_bits(samples)))
    assert len(answer_body) == job_answer_bytes(len(counts), samples)
    payload = request(0, Opcode.JOB, job_body(seed, samples, x, config.input_bits))
    answer = bytes([0, Status.OK.value]) + answer_body
    if max(len(payload), len(answer)) > max_payload:
        raise ValueError(f"a JOB of {len(x)} inputs and {len(counts)} outputs at S = {samples} "
                         f"takes {len(payload)} bytes and its answer {len(answer)} (answer body "
                         f"{header} + counts), over the design's {max_payload}")
    return len(encode_frame(payload, max_payload)), len(encode_frame(answer, max_payload))


def load_frame_bytes(model, config, max_payload):
    """The exchanges of a model load as a client makes them (``Client.load_model``): a list of
    ``(request bytes, answer bytes, cycles)``, one per WRITE of
    :func:`~spinemu.hdl.memory_map.model_writes` merged into frames of ``max_payload`` and the
    IDENTIFY after them, whose answer waits for the noise table's hash
    (:data:`~spinemu.hdl.protocol.HASH_CYCLES`); the design handles a WRITE as its bytes arrive
    (a few cycles after its last one, counted as 0). Bytes as :func:`job_frame_bytes` counts
    them."""
    key = (model.to_bytes(), config, max_payload)
    if key not in _LOAD_FRAMES:             # seconds of CRCs: kept for the next board_rows
        if len(_LOAD_FRAMES) >= 8:
            _LOAD_FRAMES.clear()
        _LOAD_FRAMES[key] = _load_frame_bytes(model, config, max_payload)
    return list(_LOAD_FRAMES[key])


_LOAD_FRAMES = {}


def _load_frame_bytes(model, config, max_payload):
    bodies = write_bodies(model_writes(model, config), config, max_payload)
    exchanges = []
    for k, body in enumerate(bodies):
        seq = k % 255
        exchanges.append((len(encode_frame(request(seq, Opcode.WRITE, body), max_payload)),
                          len(encode_frame(bytes([seq, Status.OK.value]), max_payload)), 0))
    seq = len(bodies) % 255
    identify = bytes([seq, Status.OK.value]) + identify_body(config, max_payload)
    exchanges.append((len(encode_frame(request(seq, Opcode.IDENTIFY), max_payload)),
                      len(encode_frame(identify, max_payload)), HASH_CYCLES))
    return exchanges


def pipelined_seconds(exchanges, clock_hz, baud, window, rtt_s, *, max_in_flight=MAX_IN_FLIGHT):
    """Seconds from the first request byte sent to the last answer received, for ``exchanges``
    (``(request bytes, answer bytes, cycles)`` each, in order) on a full-duplex UART of ``baud``
    (8N1) with ``rtt_s`` of round-trip latency (half each way), a design at ``clock_hz`` that
    handles requests in order once each has arrived, and a host that keeps at most ``window``
    request bytes and ``max_in_flight`` requests unanswered (the credits of ``docs/protocol.md``,
    the client's limit of :mod:`spinemu.host.link`) and sends each request as soon as they and the
    line allow."""
    byte_s = BITS_PER_BYTE / baud
    up_free = board_free = down_free = finished = 0.0
    unanswered, credit = deque(), 0
    for sent, answered, cycles in exchanges:
        if sent > window:
            raise ValueError(f"a request of {sent} bytes does not fit a window of {window}")
        start = up_free
        while credit + sent > window or len(unanswered) >= max_in_flight:
            # answers come in order: the oldest first
            at, size = unanswered.popleft()
            credit -= size
            start = max(start, at)
        credit += sent
        up_free = start + sent * byte_s
        board_free = max(up_free + rtt_s / 2, board_free) + cycles / clock_hz
        down_free = max(board_free, down_free) + answered * byte_s
        finished = down_free + rtt_s / 2
        unanswered.append((finished, sent))
    return finished


def throughput(cycles, request_bytes, answer_bytes, clock_hz, baud, *, window=WINDOW,
               rtts=(0.0, *LINK_RTTS_S), max_in_flight=MAX_IN_FLIGHT):
    """A board's images/s with requests in flight and one round trip per job: per job ``cycles``
    of engine time at ``clock_hz``, ``request_bytes`` to the board and ``answer_bytes`` back on
    a full-duplex UART at ``baud`` (8N1). The engine and the link work at once, so the rate is
    the slower of the two (the link's time being its larger direction), not their sum; at a
    round trip ``rtt`` the window (``window`` bytes of requests: ``window // request_bytes``
    requests in flight, at most the client's ``max_in_flight``) also bounds it:
    ``in_flight / (rtt + request + engine + answer time)`` (Little's law, each job taking at
    least that long from its send to its answer)."""
    byte_s = BITS_PER_BYTE / baud
    engine_s, up_s, down_s = cycles / clock_hz, request_bytes * byte_s, answer_bytes * byte_s
    link_s = max(up_s, down_s)
    engine, link = 1 / engine_s, 1 / link_s
    both = min(engine, link)
    in_flight = min(window // request_bytes, max_in_flight)
    at_rtt = []
    for rtt in rtts:
        bound = in_flight / (rtt + up_s + engine_s + down_s)
        rate = min(both, bound)
        at_rtt.append({"rtt_s": rtt, "window_bound": bound, "images_per_s": rate,
                       "ratio": rate / both,
                       "bottleneck": "window" if bound < both else
                       ("engine" if engine_s >= link_s else "link")})
    return {"clock_hz": clock_hz, "baud": baud, "window": window, "in_flight": in_flight,
            "engine_s": engine_s, "link_s": link_s, "up_s": up_s, "down_s": down_s,
            "images_per_s": {"engine": engine, "link": link, "both": both},
            "engine_to_link": engine / link,
            "bottleneck": "engine" if engine_s >= link_s else "link", "at_rtt": at_rtt}


def _report_spec(spec):
    """``BOARD=PATH`` or ``PATH`` -> (board or None, path of the report.json)."""
    name, sep, rest = spec.partition("=")
    board, path = (name, Path(rest)) if sep and name in BOARDS else (None, Path(spec))
    return board, path / "report.json" if path.is_dir() else path


def load_reports(specs):
    """``{board: (path, report)}`` of the ``--report`` arguments (``[BOARD=]PATH``, a build's
    ``report.json`` or its folder); :class:`~spinemu.host.errors.InputError` naming the file and
    the problem."""
    reports = {}
    for spec in specs or ():
        named, path = _report_spec(spec)
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: cannot read the build report: {error}") from None
        missing = [key for key in ("board", "fmax_mhz", "clock_mhz", "baud", "lanes", "config",
                                   "max_payload") if key not in report]
        if missing:
            raise InputError(f"{path}: not a `spinemu build` report (no {', '.join(missing)})")
        board = report["board"]
        if board not in BOARDS or named not in (None, board):
            raise InputError(f"{path}: a report of board {board!r}, not of "
                            f"{named or 'one of ' + ', '.join(BOARDS)}")
        if board in reports:
            raise InputError(f"two reports for {board}: {reports[board][0]} and {path}")
        reports[board] = (path, report)
    return reports


def _report_config(report):
    """The :class:`~spinemu.hdl.memory_map.EngineConfig` a build report describes."""
    return EngineConfig.from_dict(report["config"])


def _link_point(cycles, sent, answered, load, clock_hz, baud, window, rtts):
    point = throughput(cycles, sent, answered, clock_hz, baud, window=window, rtts=rtts)
    point["load_s"] = [{"rtt_s": rtt, "seconds": pipelined_seconds(load, clock_hz, baud, window,
                                                                   rtt)} for rtt in rtts]
    return point


def board_rows(model, samples, reports, *, rtts=(0.0, *LINK_RTTS_S)):
    """What each board reaches on ``model`` with ``samples`` samples: one dict per board, with
    its :func:`throughput` and model load time (:func:`pipelined_seconds` of
    :func:`load_frame_bytes`) at each round trip of ``rtts``, at its clock and baud
    (:attr:`~spinemu.firmware.boards.Board.clock_hz` and ``baud``, or a build's ``clock_mhz``
    and ``baud`` where ``reports``, see :func:`load_reports`, has one) and, with a build, at its
    Fmax. The bytes are those of the first
    occluded digit's job as one JOB (``frames: "JOB"``), or as WRITE, RUN and READ where a JOB's
    answer would not fit the frames (``frames: "RUN+READ"``); ``stop_and_wait_bytes`` are format
    3's. A board whose build cannot hold the model gets ``fits: False`` and the reason."""
    jobs, _ = _occluded_digits(1)
    x, seed = jobs.inputs[0], int(jobs.seeds[0])
    rows = []
    for name, board in BOARDS.items():
        path, report = reports.get(name, (None, None))
        if report is None:
            config, max_payload, window = board.config, MAX_PAYLOAD, board.window
            clock_hz, baud = board.clock_hz, board.baud
        else:
            config, clock_hz = _report_config(report), report["clock_mhz"] * 1e6
            baud, max_payload = report["baud"], report["max_payload"]
            window = report.get("window", WINDOW)
        row = {"board": name, "report": str(path) if path else None, "lanes": config.lanes,
               "inputs_per_cycle": config.inputs_per_cycle, "baud": baud, "window": window}
        try:
            check_fits(model, config)
        except ModelError as error:
            rows.append({**row, "fits": False, "reason": str(error)})
            continue
        golden = open_runner("golden", model=model, lanes=config.lanes)
        counts = golden.run([x], [seed], samples).counts[0]
        old = job_wire_bytes(model, config, max_payload, x, seed, samples, counts)
        try:
            (sent, answered), frames = job_frame_bytes(model, config, max_payload, x, seed,
                                                       samples, counts), "JOB"
        except ValueError:
            (sent, answered), frames = old, "RUN+READ"
        cycles = job_cycles(model.sizes, config, samples)
        load = load_frame_bytes(model, config, max_payload)
        row.update(fits=True, cycles=cycles, frames=frames, request_bytes=sent,
                   answer_bytes=answered, stop_and_wait_bytes=list(old),
                   load_bytes=sum(r for r, _, _ in load), load_frames=len(load),
                   at_clock=_link_point(cycles, sent, answered, load, clock_hz, baud, window,
                                        rtts))
        if report is not None:
            row["at_fmax"] = _link_point(cycles, sent, answered, load, report["fmax_mhz"] * 1e6,
                                         baud, window, rtts)
        rows.append(row)
    return rows

"""Images per second through the simulated board, and what each board would reach (the figures of
`spinemu bench board`).

:func:`stream_digits` streams occluded held-out digits through the shipped model on the native
simulated board (:mod:`spinemu.sim.board.native`, the configuration of ``spinemu demo``) with the
host's :class:`~spinemu.host.client.Client`, checks every result against the golden model and
splits the wall time of the stream into the simulator (the board's own time working: moving bytes
and clocking the design, from its ``stats.json``), the host's Python (the process's CPU time, less
what it spent while the board ran a job) and the transport (the rest: loopback sockets, wake-ups,
scheduling).

:func:`board_rows` says what a board would reach: stop-and-wait, a job takes its engine time
(``job_cycles / f``) plus its bytes on the UART (``bytes x 10 / baud``, 8N1), at the board's clock
and, given a build's ``report.json``, at the Fmax nextpnr reported; the slower of the two is the
bottleneck. ``docs/boards.md`` ("Throughput") describes the figures.
"""

import json
import time
from pathlib import Path

import numpy as np

from spinemu.firmware.boards import BOARDS, DEFAULT_BAUD
from spinemu.hdl.framing import MAX_PAYLOAD, encode_frame
from spinemu.hdl.memory_map import EngineConfig, check_fits, fitted_config, input_writes, job_cycles
from spinemu.hdl.model_image import ModelError
from spinemu.hdl.protocol import Opcode, Status, read_body, request, run_body, write_bodies

from .datasets import load_dataset
from .errors import InputError, SpinemuError
from .jobs import image_jobs
from .runners import open_runner

__all__ = ["start_board", "stream_digits", "job_wire_bytes", "throughput", "load_reports",
           "board_rows", "BITS_PER_BYTE", "DEMO_SEED"]

#: 8N1: a start bit, 8 data bits and a stop bit per byte on the UART.
BITS_PER_BYTE = 10
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


def _board_stats(board, client):
    """The board's ``stats.json`` once it covers every byte the client has sent and received."""
    deadline = time.monotonic() + _STATS_TIMEOUT_S
    while time.monotonic() < deadline:
        stats = board.stats()
        if (stats.get("bytes_in") == client.stats.bytes_out
                and stats.get("bytes_out") == client.stats.bytes_in):
            return stats
        time.sleep(0.002)
    raise SpinemuError(f"the simulated board's statistics ({board.out_dir / 'stats.json'}) did not "
                    f"catch up with the link in {_STATS_TIMEOUT_S:g} s")


def stream_digits(model, count=64, samples=32, lanes=16, *, progress=None):
    """Stream ``count`` occluded digits with ``samples`` samples through ``model`` on the native
    simulated board with ``lanes`` lanes; the figures as a JSON-able dict (see ``docs/boards.md``).

    ``bit_exact`` says whether every count equals the golden model's."""
    from .client import Client

    jobs, top = _occluded_digits(count)
    images, masks, seeds, inputs = jobs.images, jobs.masks, jobs.seeds, jobs.inputs
    config = fitted_config(model, lanes)
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
    cycles = job_cycles(model.sizes, lanes, samples)
    return {
        "images": count, "samples": samples, "lanes": lanes, "config": str(config),
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
        # the first job's bytes as the protocol makes them: a check of job_wire_bytes
        "job_wire_bytes": job_wire_bytes(model, config, MAX_PAYLOAD, inputs[0], int(seeds[0]),
                                         samples, golden[0]),
        "python_cpu_s": cpu, "python_hidden_s": port.hidden_s,
        "python_s_per_image": cpu / count,
        "bit_exact": mismatched == 0, "mismatched_images": mismatched,
    }


def job_wire_bytes(model, config, max_payload, x, seed, samples, counts):
    """Bytes on the wire of one job of ``model`` with input ``x`` whose results are ``counts``, as
    the client sends it to a design with ``config``: ``(requests, answers)``, each frame counted
    with its COBS overhead, CRC and delimiter, each request with the 0x00 the client sends before
    it (``docs/host.md``). Frames: the input WRITE(s), RUN, the READ(s) of the counts."""
    counts = np.asarray(counts, dtype="<u2")
    cycles = job_cycles(model.sizes, config.lanes, samples).to_bytes(4, "little")
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


def throughput(cycles, wire_bytes, clock_hz, baud):
    """Stop-and-wait throughput of a board: per job ``cycles`` of engine time at ``clock_hz`` and
    ``wire_bytes`` on a UART at ``baud`` (8N1). Images per second of the engine alone, the UART
    alone and both in series, and the bottleneck (the slower one)."""
    engine_s, uart_s = cycles / clock_hz, wire_bytes * BITS_PER_BYTE / baud
    return {"clock_hz": clock_hz, "engine_s": engine_s, "uart_s": uart_s,
            "images_per_s": {"engine": 1 / engine_s, "uart": 1 / uart_s,
                             "combined": 1 / (engine_s + uart_s)},
            "bottleneck": "engine" if engine_s >= uart_s else "UART"}


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


def board_rows(model, samples, reports):
    """What each board reaches on ``model`` with ``samples`` samples: one dict per board, with
    its throughput at its clock and, where ``reports`` (see :func:`load_reports`) has a build of
    it, at that build's Fmax. The bytes are those of the first occluded digit's job; a board
    whose build cannot hold the model gets ``fits: False`` and the reason."""
    jobs, _ = _occluded_digits(1)
    x, seed = jobs.inputs[0], int(jobs.seeds[0])
    rows = []
    for name, board in BOARDS.items():
        path, report = reports.get(name, (None, None))
        if report is None:
            config, clock_hz, baud, max_payload = board.config, board.clk_hz, DEFAULT_BAUD, MAX_PAYLOAD
        else:
            config, clock_hz = _report_config(report), report["clock_mhz"] * 1e6
            baud, max_payload = report["baud"], report["max_payload"]
        row = {"board": name, "report": str(path) if path else None, "lanes": config.lanes,
               "baud": baud}
        try:
            check_fits(model, config)
        except ModelError as error:
            rows.append({**row, "fits": False, "reason": str(error)})
            continue
        golden = open_runner("golden", model=model, lanes=config.lanes)
        counts = golden.run([x], [seed], samples).counts[0]
        sent, answered = job_wire_bytes(model, config, max_payload, x, seed, samples, counts)
        cycles = job_cycles(model.sizes, config.lanes, samples)
        row.update(fits=True, cycles=cycles, request_bytes=sent, answer_bytes=answered,
                   at_clock=throughput(cycles, sent + answered, clock_hz, baud))
        if report is not None:
            row["at_fmax"] = throughput(cycles, sent + answered, report["fmax_mhz"] * 1e6, baud)
        rows.append(row)
    return rows

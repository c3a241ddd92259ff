"""`spinemu bench board`: images per second through the simulated board, and on the boards.

:func:`stream_digits` streams occluded held-out digits through the shipped model on the native
simulated board (:mod:`spinemu.sim.native_serve`, the configuration of ``spinemu demo``) with the
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

from .cli import UserError

__all__ = ["stream_digits", "job_wire_bytes", "throughput", "load_reports", "board_rows", "run",
           "BITS_PER_BYTE"]

#: 8N1: a start bit, 8 data bits and a stop bit per byte on the UART.
BITS_PER_BYTE = 10
# How long the board's statistics may take to cover the last answer (it writes them once idle).
_STATS_TIMEOUT_S = 10.0


def _occluded_digits(count):
    """The first ``count`` of ``spinemu demo``'s jobs: ``(images, masks, seeds, max_value)``."""
    from .datasets import load_dataset, split
    from .demo_cmd import occluded_jobs

    dataset = load_dataset("digits")
    indices, masks, seeds = occluded_jobs(dataset, split(dataset)[1], count)
    return dataset.images[indices], masks, [int(s) for s in seeds], dataset.max_value


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
    raise UserError(f"the simulated board's statistics ({board.out_dir / 'stats.json'}) did not "
                    f"catch up with the link in {_STATS_TIMEOUT_S:g} s")


def stream_digits(model, count=64, samples=32, lanes=16, *, progress=None):
    """Stream ``count`` occluded digits with ``samples`` samples through ``model`` on the native
    simulated board with ``lanes`` lanes; the figures as a JSON-able dict (see ``docs/boards.md``).

    ``bit_exact`` says whether every count equals the golden model's."""
    from spinemu.hdl.framing import MAX_PAYLOAD
    from spinemu.sim.engine_backends import default_config
    from spinemu.sim.engine_model import job_cycles, job_inputs, run_jobs

    from .client import Client
    from .demo_cmd import start_board

    images, masks, seeds, top = _occluded_digits(count)
    config = default_config(model, lanes)
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
    inputs = job_inputs(images, masks)
    golden = run_jobs(model, inputs, seeds, samples, lanes)
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
        "job_wire_bytes": job_wire_bytes(model, config, MAX_PAYLOAD, inputs[0], seeds[0],
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
    from spinemu.hdl.engine import input_writes
    from spinemu.hdl.framing import encode_frame
    from spinemu.hdl.protocol import Opcode, Status, read_body, request, run_body, write_bodies
    from spinemu.sim.engine_model import job_cycles

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
    from spinemu.firmware.boards import BOARDS

    name, sep, rest = spec.partition("=")
    board, path = (name, Path(rest)) if sep and name in BOARDS else (None, Path(spec))
    return board, path / "report.json" if path.is_dir() else path


def load_reports(specs):
    """``{board: (path, report)}`` of the ``--report`` arguments (``[BOARD=]PATH``, a build's
    ``report.json`` or its folder); UserError naming the file and the problem."""
    from spinemu.firmware.boards import BOARDS

    reports = {}
    for spec in specs or ():
        named, path = _report_spec(spec)
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: cannot read the build report: {error}") from None
        missing = [key for key in ("board", "fmax_mhz", "clock_mhz", "baud", "lanes", "config",
                                   "max_payload") if key not in report]
        if missing:
            raise UserError(f"{path}: not a `spinemu build` report (no {', '.join(missing)})")
        board = report["board"]
        if board not in BOARDS or named not in (None, board):
            raise UserError(f"{path}: a report of board {board!r}, not of "
                            f"{named or 'one of ' + ', '.join(BOARDS)}")
        if board in reports:
            raise UserError(f"two reports for {board}: {reports[board][0]} and {path}")
        reports[board] = (path, report)
    return reports


def _report_config(report):
    """The :class:`~spinemu.hdl.engine.EngineConfig` a build report describes."""
    from spinemu.hdl.engine import EngineConfig
    from spinemu.hdl.neuron import NeuronFormat

    config = dict(report["config"])
    return EngineConfig(**{**config, "fmt": NeuronFormat(**config["fmt"])})


def board_rows(model, samples, reports):
    """What each board reaches on ``model`` with ``samples`` samples: one dict per board, with
    its throughput at its clock and, where ``reports`` (see :func:`load_reports`) has a build of
    it, at that build's Fmax. The bytes are those of the first occluded digit's job; a board
    whose build cannot hold the model gets ``fits: False`` and the reason."""
    from spinemu.firmware.boards import BOARDS, DEFAULT_BAUD
    from spinemu.hdl.engine import check_fits
    from spinemu.hdl.framing import MAX_PAYLOAD
    from spinemu.hdl.model_image import ModelError
    from spinemu.sim.engine_model import job_cycles, job_inputs, run_jobs

    images, masks, seeds, _ = _occluded_digits(1)
    x, seed = job_inputs(images, masks)[0], seeds[0]
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
        counts = run_jobs(model, [x], [seed], samples, config.lanes)[0]
        sent, answered = job_wire_bytes(model, config, max_payload, x, seed, samples, counts)
        cycles = job_cycles(model.sizes, config.lanes, samples)
        row.update(fits=True, cycles=cycles, request_bytes=sent, answer_bytes=answered,
                   at_clock=throughput(cycles, sent + answered, clock_hz, baud))
        if report is not None:
            row["at_fmax"] = throughput(cycles, sent + answered, report["fmax_mhz"] * 1e6, baud)
        rows.append(row)
    return rows


def _print_simulated(sim, sizes, board):
    seconds, shares = sim["split_s"], sim["shares"]
    print(f"simulated board (native Verilator; {sim['lanes']} lanes as on the {board}, sized for "
          f"the model as in `spinemu demo`): model {'-'.join(map(str, sizes))}, "
          f"{sim['images']} occluded digits, "
          f"S = {sim['samples']}; started in {sim['start_s']:.1f} s, model loaded in "
          f"{sim['load_s']:.1f} s")
    print(f"  {sim['images_per_s']:.2f} images/s ({sim['seconds']:.2f} s); bit-exact against "
          f"the golden model: {'yes' if sim['bit_exact'] else 'NO'}"
          + ("" if sim["bit_exact"] else f" ({sim['mismatched_images']} images differ)"))
    print(f"  wall time: simulator {shares['simulator']:.1%} ({seconds['simulator']:.2f} s), "
          f"Python {shares['python']:.1%} ({seconds['python']:.2f} s), transport "
          f"{shares['transport']:.1%} ({seconds['transport']:.2f} s)")
    print(f"    simulator: the board's time moving bytes and clocking the design (its stats.json: "
          f"compute_s - idle_compute_s); Python: the host process's CPU time "
          f"({sim['python_cpu_s']:.2f} s) less the {sim['python_hidden_s']:.2f} s it spent while "
          f"the board ran a job; transport: the rest (sockets, wake-ups, scheduling)")
    print(f"  cycles per image: engine {sim['engine_cycles_per_image']:,} (the RUN answers: "
          f"{'as documented' if sim['cycles_match_model'] else 'NOT as documented'}), simulated "
          f"{sim['sim_cycles_per_image']:,.0f} (with the bytes and the idle cycles between "
          f"requests)")
    print(f"  simulator speed {sim['sim_cycles_per_s']:,.0f} cycles/s; engine cycles through the "
          f"link {sim['engine_cycles_per_s']:,.0f}/s")
    sent, answered = sim["job_wire_bytes"]
    print(f"  bytes per image on the link: {sim['bytes_in_per_image']:.0f} to the board, "
          f"{sim['bytes_out_per_image']:.0f} back (the protocol's frames of the first job: "
          f"{sent} + {answered})")


def _print_boards(rows, sim):
    print(f"boards: per image the engine's cycles at the clock, then the job's bytes on the UART "
          f"(8N1, {BITS_PER_BYTE} bits per byte), one after the other (stop-and-wait); images/s "
          f"of the engine alone, the UART alone, and both")
    print(f"  {'board':<11} {'lanes':>5} {'clock':<30} {'cycles':>9} {'bytes':>9} "
          f"{'engine ms':>9} {'UART ms':>8} {'engine/s':>9} {'UART/s':>9} {'both/s':>9}  "
          f"bottleneck")
    for row in rows:
        if not row["fits"]:
            print(f"  {row['board']:<11} {row['lanes']:>5} the model does not fit the build of "
                  f"{row['report']}: {row['reason']}")
            continue
        points = [("at_clock", "nominal board clock" if row["report"] is None else "board clock")]
        if "at_fmax" in row:
            points.append(("at_fmax", "Fmax of the build"))
        for key, label in points:
            t, rate = row[key], row[key]["images_per_s"]
            clock = f"{t['clock_hz'] / 1e6:.1f} MHz ({label})"
            wire = f"{row['request_bytes']}+{row['answer_bytes']}"
            print(f"  {row['board']:<11} {row['lanes']:>5} {clock:<30} {row['cycles']:>9,} "
                  f"{wire:>9} {t['engine_s'] * 1e3:>9.2f} {t['uart_s'] * 1e3:>8.2f} "
                  f"{rate['engine']:>9.1f} {rate['uart']:>9.1f} {rate['combined']:>9.1f}  "
                  f"{t['bottleneck']}")
    for row in rows:
        if row["report"] is not None and row["fits"]:
            print(f"  {row['board']}: clock, Fmax, lanes and baud rate from {row['report']}")
    bauds = ", ".join(f"{b:,}" for b in sorted({row["baud"] for row in rows}))
    print(f"  UART {bauds} baud; bytes: requests + answers of one job, frames with their COBS, "
          f"CRC and delimiter, and the 0x00 the client sends before each request")
    print(f"  not modelled: the host's time per job (its Python took "
          f"{sim['python_s_per_image'] * 1e3:.2f} ms of CPU per image above) and the USB-serial "
          f"adapter's latency on each of the job's round trips")


def run(args):
    """``spinemu bench board`` (arguments from :mod:`spinemu.host.bench_cmd`); exit status."""
    from spinemu.firmware.boards import board as find_board

    from .model_cmd import load_model, resolve_model

    if not 1 <= args.job_samples < 1 << 16:
        raise UserError(f"--job-samples must be 1..65535, not {args.job_samples}")
    reports = load_reports(args.report)
    path = resolve_model("default")
    model = load_model(path)
    try:
        lanes = find_board(args.board).lanes
    except KeyError as error:
        raise UserError(f"--board: {error.args[0]}") from None
    sim = stream_digits(model, args.count, args.job_samples, lanes)
    rows = board_rows(model, args.job_samples, reports)
    _print_simulated(sim, model.sizes, args.board)
    _print_boards(rows, sim)
    if args.json is not None:
        figures = {"model": str(path), "sizes": list(model.sizes), "simulated": sim,
                   "boards": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if sim["bit_exact"] and sim["cycles_match_model"] else 1

"""cocotb bench of the simulated board: the design's byte stream (``i``/``o``) on a TCP socket.

Started by :class:`spinemu.sim.board.cocotb.RTLServer`. It listens on ``host:port`` (port 0: a free
one), writes ``ready.json`` (``host``, ``port``, ``pid``) into ``out_dir`` and serves one connection
at a time (a second client is answered :data:`~spinemu.sim.board.base.BUSY_ANSWER` and closed), until
the client leaves (``once``), SIGTERM or SIGINT arrives, or the process that started the simulator
dies. When a client leaves, the design is flushed (:class:`~spinemu.sim.board.base.Flush`, given as
``flush`` in the configuration: ABORT, then ABORTED and a silence) before the next one is served; a
design that does not answer the flush in time ends the bench, with the reason in ``error.txt``.
Time accounting goes to ``stats.json``.

Bytes move at falling clock edges, one per cycle each way: a byte offered on ``i`` while ``ready``
is high (the design's receive window keeps ``i`` always ready, so the bytes of however many
requests the client keeps in flight go in one a cycle), and every ``o`` byte (``o.ready`` is always
high, as a UART transmitter's FIFO would be). Answers are counted against the frames taken in, so
the bench knows when one is still to come.
When nothing moves, Python does not step the clock: during a job it waits in the simulator for
``o.valid`` to rise (or :data:`~spinemu.sim.board.base.CHUNK_CYCLES`), and when the design has
answered everything it blocks on the socket (simulated time stands still until the client sends).
"""

import json
import os
import signal
import time
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
from cocotb.utils import get_sim_time

from spinemu.hdl.framing import DELIMITER
from spinemu.sim.benches.common import PERIOD_NS, config, start
from spinemu.sim.board.base import CHUNK_CYCLES, Flush, LinkSocket, quiet_cycles


class _Stop:
    """A stop request: SIGTERM, SIGINT, or the parent process gone."""

    def __init__(self):
        self.requested = False
        self.parent = os.getppid()

    def install(self):
        """Take SIGTERM and SIGINT over from the simulator (Icarus installs its own handlers when
        the simulation starts, so this must run after the first simulated time step)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handler)

    def _handler(self, signum, frame):
        self.requested = True

    def __call__(self):
        if os.getppid() != self.parent:
            self.requested = True
        return self.requested


class _Stats:
    def __init__(self, out_dir, link):
        self.path, self.link = Path(out_dir) / "stats.json", link
        self.values = {"connections": 0, "bytes_in": 0, "bytes_out": 0, "answers": 0,
                       "wait_client_s": 0.0, "compute_s": 0.0, "compute_cycles": 0,
                       "stream_s": 0.0, "stream_cycles": 0, "quiet_waits": 0,
                       "client_waits": 0, "refused": 0, "flushes": 0}
        self.dirty = True

    def add(self, **values):
        for key, value in values.items():
            self.values[key] += value
        self.dirty = True

    def write(self):
        self.dirty = False
        self.values["sim_cycles"] = int(get_sim_time("ns")) // PERIOD_NS
        self.values["refused"] = self.link.refused
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.values, indent=1))
        tmp.replace(self.path)


async def _session(dut, link, stats, stop, quiet):
    """Serve one connection until the client leaves or a stop is requested; returns the last byte
    the design sent."""
    fall = FallingEdge(dut.clk)
    o_rise = RisingEdge(dut.o__valid)
    i_rise = RisingEdge(dut.i__ready)
    chunk = Timer(CHUNK_CYCLES * PERIOD_NS, unit="ns")
    quiet_timer = Timer(quiet * PERIOD_NS, unit="ns")
    i_valid, i_payload, i_ready = dut.i__valid, dut.i__payload, dut.i__ready
    o_valid, o_payload, busy = dut.o__valid, dut.o__payload, dut.busy
    pending, head = bytearray(), 0          # bytes from the socket not yet in the design
    out = bytearray()                       # answer bytes not yet sent
    offering = False
    outstanding = 0                         # request frames not yet answered
    last_in = last_out = DELIMITER
    streamed = 0

    def receive():
        data = link.receive(0)
        if data:
            stats.add(bytes_in=len(data))
        return data

    began = time.perf_counter()
    while not stop():
        await fall
        moved = False
        if o_valid.value:
            # o.ready is always high: this byte is taken at the next rising edge.
            byte = o_payload.value.to_unsigned()
            out.append(byte)
            last_out, moved = byte, True
            if byte == DELIMITER:
                link.send(bytes(out))
                stats.add(bytes_out=len(out), answers=1)
                out.clear()
                outstanding = max(0, outstanding - 1)
        if head < len(pending) and i_ready.value:
            # i.ready is high until the next rising edge, which takes the byte offered now.
            byte = pending[head]
            i_payload.value = byte
            if not offering:
                i_valid.value = 1
                offering = True
            head += 1
            outstanding += byte == DELIMITER and last_in != DELIMITER
            last_in, moved = byte, True
        elif offering:
            i_valid.value = 0
            offering = False
        if moved:
            streamed += 1
            if head == len(pending) or streamed % 64 == 0:
                data = receive()
                if data is None:
                    break
                if head == len(pending):
                    pending, head = bytearray(), 0
                pending += data
            continue

        # Nothing moved at this edge.
        now = time.perf_counter()
        stats.add(stream_s=now - began, stream_cycles=streamed)
        streamed = 0
        if head == len(pending):
            pending, head = bytearray(), 0
        data = receive()
        if data is None:
            break
        if data:
            pending += data
            began = time.perf_counter()
            continue
        cycles_before = get_sim_time("ns")
        if pending or busy.value:
            # A job, or the decoder holding a frame: run until the design answers or takes bytes.
            if out:
                link.send(bytes(out))
                out.clear()
            triggers = (o_rise, i_rise, chunk) if pending else (o_rise, chunk)
            await First(*triggers)
            began = time.perf_counter()
            stats.add(compute_s=began - now,
                      compute_cycles=int(get_sim_time("ns") - cycles_before) // PERIOD_NS)
            continue
        if outstanding:
            # A request is being handled; its answer starts within `quiet` cycles.
            await First(o_rise, quiet_timer)
            began = time.perf_counter()
            stats.add(compute_s=began - now, quiet_waits=1,
                      compute_cycles=int(get_sim_time("ns") - cycles_before) // PERIOD_NS)
            if not o_valid.value and not busy.value:
                outstanding = 0                 # a frame the design does not answer
            continue
        # The design has answered everything: wait for the client without simulating.
        if out:
            link.send(bytes(out))
            out.clear()
        data = b""
        while data == b"" and not stop():
            data = link.receive(0.1)
            if data == b"" and stats.dirty and time.perf_counter() - now > 0.2:
                stats.write()               # a snapshot whenever the design has been idle
        began = time.perf_counter()
        stats.add(wait_client_s=began - now, client_waits=1)
        if data is None:
            break
        pending += data
        stats.add(bytes_in=len(data))
    if offering:
        i_valid.value = 0
    return last_out


async def _flush(dut, flush, last_out, stats):
    """Flush the design after its client left, its output dropped; False if it did not answer
    and fall silent in time."""
    fall, o_rise = FallingEdge(dut.clk), RisingEdge(dut.o__valid)
    data, watch = bytearray(flush.request), flush.watch(last_out)
    began, start = time.perf_counter(), int(get_sim_time("ns"))

    def now():
        return (int(get_sim_time("ns")) - start) // PERIOD_NS

    while not watch.done(now()) and not watch.late(now()):
        # At a falling edge, as in _session: a byte offered now is taken at the next rising edge
        # (i is always ready; a design that is not leaves the byte offered until it is).
        if dut.o__valid.value:
            watch.take(dut.o__payload.value.to_unsigned(), now())
        if data:
            if dut.i__ready.value:
                dut.i__payload.value = data.pop(0)
                dut.i__valid.value = 1
            else:
                dut.i__valid.value = 0
            await fall
        elif dut.o__valid.value:
            dut.i__valid.value = 0
            await fall
        else:
            # Nothing to feed and nothing out: run in the simulator to the design's next byte,
            # or as long as the flush could still end or fail without one.
            dut.i__valid.value = 0
            wait = Timer(min(watch.wait(now()), CHUNK_CYCLES) * PERIOD_NS, unit="ns")
            await First(o_rise, wait)
            await fall
    dut.i__valid.value = 0
    stats.add(compute_s=time.perf_counter() - began, flushes=1)
    return watch.done(now())


@cocotb.test()
async def serve(dut):
    cfg = config()
    stop = _Stop()
    out_dir = Path(cfg["out_dir"])
    try:
        link = LinkSocket(cfg["host"], cfg["port"], stop)
    except OSError as error:
        (out_dir / "error.txt").write_text(f"cannot listen on {cfg['host']}:{cfg['port']}: "
                                           f"{error.strerror or error}")
        raise
    stats = _Stats(out_dir, link)

    await start(dut, o__ready=1)    # the clock toggles in the simulator (GPI): no Python per cycle
    stop.install()
    # Ready: listening, and a stop request is now heard.
    ready = out_dir / "ready.json"
    ready.with_suffix(".tmp").write_text(json.dumps({"host": link.host, "port": link.port,
                                                      "pid": os.getpid()}))
    ready.with_suffix(".tmp").replace(ready)
    given = cfg["flush"]
    flush = Flush(bytes.fromhex(given["request"]), bytes.fromhex(given["answer"]),
                  given["cycles"], given["settle"])
    try:
        while link.accept():
            stats.add(connections=1)
            last_out = await _session(dut, link, stats, stop, quiet_cycles(cfg["max_payload"]))
            link.drop()
            stats.write()
            if cfg.get("once") or stop():
                break
            if not await _flush(dut, flush, last_out, stats):
                error = flush.failure(cfg["simulator"])
                (out_dir / "error.txt").write_text(str(error))
                raise error
    finally:
        link.close()
        stats.write()

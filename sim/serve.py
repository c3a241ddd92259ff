"""The simulated board: the design's byte stream on a loopback TCP port.

A host talks to the simulated board exactly as to a board, through the pyserial URL
``socket://127.0.0.1:PORT`` instead of a serial port (``docs/host.md``). :func:`start_server`
starts one of four backends, each behind a loopback TCP socket:

``golden``
    :class:`~spinemu.sim.board_model.GoldenBoard` in a thread: the exact answer bytes, no clock.
``amaranth``
    :class:`~spinemu.hdl.protocol_engine.ProtocolEngine` in the Amaranth simulator, in a thread.
``icarus``
    the generated Verilog of the ProtocolEngine under a cocotb bench
    (:mod:`spinemu.sim.benches.serve_bench`) in a simulator process; the build is cached
    (:func:`spinemu.sim.rtl.run_bench`), so only the first start of a design compiles it.
``verilator``
    the native board (:mod:`spinemu.sim.native_serve`): the same Verilog compiled by Verilator
    with a C++ main that runs the clock and the socket itself, many times faster than a cocotb
    bench; cached the same way.

The byte stream is the ProtocolEngine's ``i``/``o`` (the UART PHY of a board top is bypassed: it
would only slow the simulation down, and the bytes are the same). The design keeps its state (a
loaded model) from one connection to the next, as a board does; one connection is served at a time.
The server never steps Python once per clock cycle while the design computes: it waits for the
design's first answer byte (or a bounded time) in the simulator, and reads the socket only between
such waits and while bytes are moving.
"""

import abc
import json
import os
import select
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from spinemu.hdl.engine import EngineConfig
from spinemu.hdl.framing import DELIMITER, MAX_PAYLOAD

__all__ = ["BACKENDS", "DEFAULT_HOST", "ServeError", "LinkSocket", "Server", "start_server",
           "quiet_cycles", "CHUNK_CYCLES"]

BACKENDS = ("golden", "amaranth", "icarus", "verilator")
DEFAULT_HOST = "127.0.0.1"
#: Longest stretch the simulator runs without Python looking at the socket and the stop request.
CHUNK_CYCLES = 20_000
_POLL_S = 0.1


class ServeError(RuntimeError):
    """The simulated board could not start or failed; the message says why (and names a log)."""


def quiet_cycles(max_payload):
    """Cycles after a request's last byte by which the design has answered or started a job."""
    return 4 * (max_payload + 3) + 256


class LinkSocket:
    """The socket side of a simulated board: one listening socket, one connection at a time.

    ``stopping()`` is polled while waiting, so a stop request is seen within about 0.1 s.
    """

    def __init__(self, host, port, stopping):
        self.stopping = stopping
        self.listener = socket.create_server((host, port))
        self.host, self.port = self.listener.getsockname()[:2]
        self.conn = None

    def accept(self):
        """Wait for a connection; False if a stop was requested first."""
        while not self.stopping():
            ready, _, _ = select.select([self.listener], [], [], _POLL_S)
            if ready:
                conn, _ = self.listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.conn = conn
                return True
        return False

    def receive(self, timeout=0.0):
        """Bytes from the client (``b""`` if none came within ``timeout``); None once it is gone."""
        if self.conn is None:
            return None
        try:
            ready, _, _ = select.select([self.conn], [], [], timeout)
            if not ready:
                return b""
            data = self.conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop()
            return None
        return data

    def wait_data(self):
        """Block until the client sends bytes (returned), leaves (None) or a stop is requested
        (``b""``)."""
        while not self.stopping():
            data = self.receive(_POLL_S)
            if data is None or data:
                return data
        return b""

    def send(self, data):
        """Send ``data``; False if the client is gone (the bytes are dropped, as on a cut line)."""
        if self.conn is None:
            return False
        try:
            self.conn.sendall(data)
            return True
        except OSError:
            self.drop()
            return False

    def drop(self):
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def close(self):
        self.drop()
        self.listener.close()


class Server(abc.ABC):
    """A running simulated board (see :func:`start_server`); a context manager that stops it.

    ``url`` is what a client connects to; ``stats()`` gives the server's time accounting (the RTL
    backends: seconds waiting for the client, computing in the simulator and streaming bytes).
    """

    backend = None

    def __init__(self, config, max_payload, host, port, once):
        self.config, self.max_payload = config, max_payload
        self.host, self.port, self.once = host, port, once
        self.error = None
        self._thread = None

    @property
    def url(self):
        return f"socket://{self.host}:{self.port}"

    def wait(self, timeout=None):
        """Wait until the server has ended (``--once`` and the client left, a stop, a failure);
        True if it has. Raises :class:`ServeError` if it failed."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self.error is not None:
            raise ServeError(f"the {self.backend} board failed: {self.error}{self._log_hint()}"
                             ) from self.error
        return True

    def _log_hint(self):
        return ""

    def running(self):
        return self._thread is not None and self._thread.is_alive()

    @abc.abstractmethod
    def stop(self, timeout=10.0):
        """Ask the server to stop and wait for it (at most ``timeout`` seconds)."""

    def stats(self):
        return {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class _ThreadServer(Server):
    """A backend served from a thread of this process (golden, amaranth)."""

    def __init__(self, *args):
        super().__init__(*args)
        self._stop = threading.Event()
        self.link = LinkSocket(self.host, self.port, self._stop.is_set)
        self.port = self.link.port
        self._thread = threading.Thread(target=self._main, name=f"spinemu-serve-{self.backend}",
                                        daemon=True)
        self._thread.start()

    def _main(self):
        try:
            self._serve()
        except BaseException as error:          # reported by wait()
            self.error = error
        finally:
            self.link.close()

    def stop(self, timeout=10.0):
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.error is not None:
            raise ServeError(f"the {self.backend} board failed: {self.error}") from self.error


class GoldenServer(_ThreadServer):
    """The golden board (:class:`~spinemu.sim.board_model.GoldenBoard`) behind the socket."""

    backend = "golden"

    def __init__(self, *args):
        from .board_model import GoldenBoard
        self.board = GoldenBoard(args[0], args[1])
        super().__init__(*args)

    def _serve(self):
        while self.link.accept():
            while True:
                data = self.link.wait_data()
                if not data:
                    break
                answer = self.board.feed(data)
                if answer:
                    self.link.send(answer)
            self.link.drop()
            if self.once or self._stop.is_set():
                break


class AmaranthServer(_ThreadServer):
    """The ProtocolEngine in the Amaranth simulator behind the socket (slow: for checking)."""

    backend = "amaranth"

    def _serve(self):
        from amaranth.sim import Simulator

        from spinemu.hdl.protocol_engine import ProtocolEngine

        dut = ProtocolEngine(self.config, self.max_payload)
        link, period = self.link, 1e-8
        quiet = quiet_cycles(self.max_payload)

        async def bench(ctx):
            ctx.set(dut.o.ready, 1)
            while link.accept():
                pending, out, outstanding, last_in = bytearray(), bytearray(), 0, DELIMITER
                while not self._stop.is_set():
                    offer = bool(pending)
                    ctx.set(dut.i.valid, offer)
                    if offer:
                        ctx.set(dut.i.payload, pending[0])
                    _, _, i_ready, o_valid, o_byte, busy = await ctx.tick().sample(
                        dut.i.ready, dut.o.valid, dut.o.payload, dut.busy)
                    moved = False
                    if offer and i_ready:
                        byte = pending.pop(0)
                        outstanding += byte == DELIMITER and last_in != DELIMITER
                        last_in, moved = byte, True
                    if o_valid:
                        out.append(o_byte)
                        moved = True
                        if o_byte == DELIMITER:
                            link.send(bytes(out))
                            out.clear()
                            outstanding = max(0, outstanding - 1)
                    if moved:
                        continue
                    data = link.receive(0)
                    if data is None:
                        break
                    if data:
                        pending += data
                        continue
                    # Sampled values are those at the last edge; the wait starts after it.
                    if ctx.get(dut.o.valid) or (pending and ctx.get(dut.i.ready)):
                        continue
                    if pending or busy:
                        # Blocked input or a job: let the simulator run to the next event.
                        await ctx.posedge(dut.o.valid).posedge(dut.i.ready).delay(
                            CHUNK_CYCLES * period)
                        continue
                    if outstanding:
                        await ctx.posedge(dut.o.valid).delay(quiet * period)
                        if not ctx.get(dut.o.valid) and not ctx.get(dut.busy):
                            outstanding = 0     # a frame the design does not answer
                        continue
                    if out:
                        link.send(bytes(out))
                        out.clear()
                    data = link.wait_data()
                    if data is None:
                        break
                    pending += data
                link.drop()
                ctx.set(dut.i.valid, 0)
                if self.once or self._stop.is_set():
                    return

        sim = Simulator(dut)
        sim.add_clock(period)
        sim.add_testbench(bench)
        sim.run()


class RTLServer(Server):
    """The generated Verilog under a cocotb bench (:mod:`spinemu.sim.benches.serve_bench`) on
    ``backend``, a simulator of :data:`spinemu.sim.rtl.SIMULATORS` (:func:`start_server` uses it for
    Icarus), in a simulator process started by :func:`spinemu.sim.rtl.run_bench` from a thread of
    this one.
    """

    def __init__(self, backend, config, max_payload, host, port, once, start_timeout=600.0):
        from spinemu.hdl.protocol_engine import ProtocolEngine

        self.backend = backend
        super().__init__(config, max_payload, host, port, once)
        self.out_dir = Path(tempfile.mkdtemp(prefix=f"spinemu-serve-{backend}-"))
        self.pid = None
        bench_config = {"host": host, "port": port, "once": once, "max_payload": max_payload,
                        "out_dir": str(self.out_dir)}
        component = ProtocolEngine(config, max_payload)

        def main():
            try:
                _run_serve_bench(component, backend, bench_config)
            except BaseException as error:
                self.error = error

        self._thread = threading.Thread(target=main, name=f"spinemu-serve-{backend}", daemon=True)
        self._thread.start()
        ready = self.out_dir / "ready.json"
        deadline = time.monotonic() + start_timeout
        while not ready.exists():
            if not self._thread.is_alive():
                reason = self.out_dir / "error.txt"
                reason = reason.read_text() if reason.exists() else self.error
                raise ServeError(f"the {backend} board did not start: {reason}; see "
                                 f"{self.out_dir / 'sim.log'}")
            if time.monotonic() > deadline:
                self._kill()
                raise ServeError(f"the {backend} board did not start in {start_timeout:g} s; "
                                 f"see {self.out_dir / 'sim.log'}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.host, self.port, self.pid = info["host"], info["port"], info["pid"]

    def _signal(self, signum):
        if self.pid is not None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def _kill(self):
        self._signal(signal.SIGKILL)

    def stop(self, timeout=10.0):
        if self._thread.is_alive():
            self._signal(signal.SIGTERM)
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._kill()
                self._thread.join(5.0)
                raise ServeError(f"the {self.backend} board did not stop in {timeout:g} s and "
                                 f"was killed; see {self.out_dir / 'sim.log'}")
        if self.error is not None:
            raise ServeError(f"the {self.backend} board failed: {self.error}; see {self.log}"
                             ) from self.error

    def stats(self):
        path = self.out_dir / "stats.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _log_hint(self):
        return f"; see {self.log}"

    @property
    def log(self):
        return self.out_dir / "sim.log"


def _run_serve_bench(component, simulator, config):
    from . import rtl
    try:
        rtl.run_bench(component, simulator=simulator,
                      test_module="spinemu.sim.benches.serve_bench", config=config)
    except rtl.BenchError as error:
        raise ServeError(f"the {simulator} bench failed: {error}") from None


def start_server(backend, config=EngineConfig(), max_payload=MAX_PAYLOAD, *, host=DEFAULT_HOST,
                 port=0, once=False):
    """Start the simulated board of ``config`` on ``backend`` and return its :class:`Server` once
    it listens on ``host:port`` (port 0: a free one, see ``server.url``).

    ``once``: stop when the first client disconnects. The design keeps its state between
    connections otherwise. Verilator (the native board, which listens on 127.0.0.1 only) and
    Icarus compile the design the first time (cached).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "golden":
        return GoldenServer(config, max_payload, host, port, once)
    if backend == "amaranth":
        return AmaranthServer(config, max_payload, host, port, once)
    if backend == "verilator":
        from .native_serve import start_native_server     # it imports this module
        return start_native_server(config, max_payload, host=host, port=port, once=once)
    return RTLServer(backend, config, max_payload, host, port, once)

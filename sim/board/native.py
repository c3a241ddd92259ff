"""The native simulated board: the ProtocolEngine's Verilog compiled by Verilator with a C++ main
(:data:`SOURCE`, ``native/serve_main.cpp`` in this package) that runs the clock and the socket
itself, with no cocotb.

It serves the same byte stream as the other backends of :mod:`spinemu.sim.board` on
``socket://127.0.0.1:PORT`` but runs the clock in C++ (no Python callback per edge), so it is many
times faster than the cocotb Verilator bench. The C++ knows no protocol: the bytes that refuse a
second client and flush the design after a client left
(:data:`~spinemu.sim.board.base.BUSY_ANSWER`, :class:`~spinemu.sim.board.base.Flush`: ABORT, the
ABORTED that answers it and the silence after) are given on its command line. The build is cached by
the hash of the Verilog and the C++ source under ``cache_dir()/native/<hash>`` (a file lock lets
parallel starts share it).
"""

import hashlib
import json
import os
import platform
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import EngineConfig
from spinemu.hdl.protocol import WINDOW
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.sim import rtl

from .base import BUSY_ANSWER, DEFAULT_HOST, ServeError, Server, quiet_cycles

__all__ = ["NativeServer", "build_native", "start_native_server", "SOURCE"]

SOURCE = Path(__file__).parent / "native" / "serve_main.cpp"
TOPLEVEL = "top"
#: The native board's exit status when its design did not answer a flush (``serve_main.cpp``).
_FLUSH_FAILED = 3
# -march=native: the board is built on the machine that runs it (about 10% more cycles/s).
_VERILATOR_ARGS = ["--cc", "--exe", "--build", "-O2", "--x-assign", "fast", "-Wno-fatal",
                   "-Wno-lint", "-Wno-style", "--top-module", TOPLEVEL, "-MAKEFLAGS",
                   "OPT_FAST='-O2 -march=native' OPT_GLOBAL='-O2 -march=native' OPT_SLOW=-O1"]


def _cpu():
    """What -march=native compiles for, so that a cache shared by two machines keeps a build per
    CPU: its instruction-set flags (Linux), or the platform's name for the processor."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    flags = [line for line in info.splitlines() if line.startswith("flags")]
    return flags[0] if flags else f"{platform.machine()} {platform.processor()}"


def build_native(config=EngineConfig(), max_payload=MAX_PAYLOAD, *, window=WINDOW, log=None):
    """Build (or find in the cache) the native server of ``config`` with a receive window of
    ``window`` bytes; returns its executable.

    Raises :class:`ServeError` (naming the build log) if Verilator fails."""
    rtl.simulator_environment("verilator")
    text = verilog.convert(ProtocolEngine(config, max_payload, window), name=TOPLEVEL,
                           emit_src=False)
    cpp = SOURCE.read_text()
    key = hashlib.sha256(f"{_VERILATOR_ARGS}\0{_cpu()}\0{text}\0{cpp}".encode()).hexdigest()[:16]
    build_dir = rtl.cache_dir() / "native" / key
    exe = build_dir / "obj_dir" / "Vtop"
    with rtl._locked(build_dir.with_suffix(".lock")):
        if exe.exists():
            return exe
        build_dir.mkdir(parents=True, exist_ok=True)
        (build_dir / "top.v").write_text(text)
        (build_dir / "serve_main.cpp").write_text(cpp)
        build_log = build_dir / "build.log"
        jobs = str(max(1, os.cpu_count() or 1))
        cmd = ["verilator", *_VERILATOR_ARGS, "-j", jobs, "--Mdir", "obj_dir", "top.v",
               "serve_main.cpp"]
        with open(build_log, "w") as out:
            result = subprocess.run(cmd, cwd=build_dir, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0 or not exe.exists():
            raise ServeError(f"the native Verilator build failed (exit {result.returncode}); "
                             f"see {build_log}")
    return exe


class NativeServer(Server):
    """A running native board process (see :func:`start_native_server`)."""

    backend = "native"

    def __init__(self, config, max_payload, host, port, once, window=WINDOW, start_timeout=900.0,
                 poll=4096):
        super().__init__(config, max_payload, host, port, once, window)
        if host not in ("127.0.0.1", "localhost"):
            raise ServeError("the native board listens on 127.0.0.1 only")
        self.exe = build_native(config, max_payload, window=window)
        self.out_dir = Path(tempfile.mkdtemp(prefix="spinemu-serve-native-"))
        self.log = self.out_dir / "sim.log"
        flush = self.flush
        cmd = [str(self.exe), str(port), "--quiet", str(quiet_cycles(max_payload)),
               "--poll", str(poll), "--stats", str(self.out_dir / "stats.json"),
               "--busy", BUSY_ANSWER.hex(), "--flush", flush.request.hex(),
               "--flush-answer", flush.answer.hex(), "--flush-cycles", str(flush.cycles),
               "--flush-settle", str(flush.settle)]
        if once:
            cmd.append("--once")
        self._log_file = open(self.log, "w")
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log_file,
                                        text=True)
        self.pid = self.process.pid
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.process.kill()
            self.process.wait()
            self._log_file.close()
            logged = self.log.read_text().strip().splitlines()
            said = line.strip() or (logged[-1] if logged else "no output")
            raise ServeError(f"the native board did not start: {said}; see {self.log}")
        self.host, self.port = "127.0.0.1", int(line.split()[1])

    def running(self):
        return self.process.poll() is None

    def wait(self, timeout=None):
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if code != 0:
            raise self._failure(code)
        return True

    def _failure(self, code):
        if code == _FLUSH_FAILED:
            return ServeError(f"{self.flush.failure(self.backend)}; see {self.log}")
        return ServeError(f"the native board exited with status {code}; see {self.log}")

    def stop(self, timeout=10.0):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise ServeError(f"the native board did not stop in {timeout:g} s and was killed;"
                                 f" see {self.log}") from None
        self.process.stdout.close()
        self._log_file.close()
        code = self.process.returncode
        if code not in (0, -signal.SIGTERM):
            raise self._failure(code)

    def stats(self):
        path = self.out_dir / "stats.json"
        for _ in range(3):
            try:
                return json.loads(path.read_text()) if path.exists() else {}
            except ValueError:
                time.sleep(0.01)
        return {}

    def _log_hint(self):
        return f"; see {self.log}"


def start_native_server(config=EngineConfig(), max_payload=MAX_PAYLOAD, *, window=WINDOW,
                        host=DEFAULT_HOST, port=0, once=False):
    """Build (cached) and start the native board of ``config``; returns its :class:`Server` once it
    listens on ``host:port`` (port 0: a free one, see ``server.url``)."""
    return NativeServer(config, max_payload, host, port, once, window)

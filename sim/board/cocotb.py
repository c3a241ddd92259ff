"""The generated Verilog of the ProtocolEngine under a cocotb bench, behind the socket.

The bench (:mod:`spinemu.sim.benches.serve_bench`) runs in a simulator process and listens itself,
with the flush of :class:`~spinemu.sim.board.base.Flush` given in its configuration; the build is
cached (:func:`spinemu.sim.rtl.run_bench`), so only the first start of a design compiles it.
"""

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from spinemu.hdl.protocol import WINDOW
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.sim import rtl

from .base import ServeError, Server

__all__ = ["RTLServer"]


class RTLServer(Server):
    """The generated Verilog under a cocotb bench (:mod:`spinemu.sim.benches.serve_bench`) on
    ``simulator``, one of :data:`spinemu.sim.rtl.SIMULATORS` (the ``icarus`` board), in a simulator
    process started by :func:`spinemu.sim.rtl.run_bench` from a thread of this one.
    """

    def __init__(self, config, max_payload, host, port, once, *, window=WINDOW,
                 simulator="icarus", start_timeout=600.0):
        self.backend = simulator
        super().__init__(config, max_payload, host, port, once, window)
        self.out_dir = Path(tempfile.mkdtemp(prefix=f"spinemu-serve-{simulator}-"))
        self.pid = None
        flush = self.flush
        bench_config = {"host": host, "port": port, "once": once, "max_payload": max_payload,
                        "out_dir": str(self.out_dir), "simulator": simulator,
                        "flush": {"request": flush.request.hex(), "answer": flush.answer.hex(),
                                  "cycles": flush.cycles, "settle": flush.settle}}
        component = ProtocolEngine(config, max_payload, window)

        def main():
            try:
                _run_serve_bench(component, simulator, bench_config, self.out_dir)
            except BaseException as error:
                self.error = error

        self._thread = threading.Thread(target=main, name=f"spinemu-serve-{simulator}", daemon=True)
        self._thread.start()
        ready = self.out_dir / "ready.json"
        deadline = time.monotonic() + start_timeout
        while not ready.exists():
            if not self._thread.is_alive():
                reason = self.out_dir / "error.txt"
                reason = reason.read_text() if reason.exists() else self.error
                raise ServeError(f"the {simulator} board did not start: {reason}; see "
                                 f"{self.out_dir / 'sim.log'}")
            if time.monotonic() > deadline:
                self._kill()
                raise ServeError(f"the {simulator} board did not start in {start_timeout:g} s; "
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


def _run_serve_bench(component, simulator, config, out_dir):
    try:
        rtl.run_bench(component, simulator=simulator,
                      test_module="spinemu.sim.benches.serve_bench", config=config)
    except rtl.BenchError as error:
        reason = out_dir / "error.txt"      # what the bench said, if it did
        raise ServeError(reason.read_text() if reason.exists()
                         else f"the {simulator} bench failed: {error}") from None

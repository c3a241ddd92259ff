"""What every simulated board shares: the server base class, the socket side and its timing.

A server (:class:`Server`) puts the design's byte stream on a loopback TCP socket
(:class:`LinkSocket`); :mod:`spinemu.sim.board` lists the backends.
"""

import abc
import select
import socket
import threading

from ..errors import SimulationError

__all__ = ["DEFAULT_HOST", "CHUNK_CYCLES", "ServeError", "quiet_cycles", "LinkSocket", "Server",
           "ThreadServer"]

DEFAULT_HOST = "127.0.0.1"
#: Longest stretch the simulator runs without Python looking at the socket and the stop request.
CHUNK_CYCLES = 20_000
_POLL_S = 0.1


class ServeError(SimulationError):
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
    """A running simulated board (see :func:`spinemu.sim.board.start_server`); a context manager
    that stops it.

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


class ThreadServer(Server):
    """A backend served from a thread of this process (golden, amaranth): ``_serve()`` runs there
    on :attr:`link`."""

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

    @abc.abstractmethod
    def _serve(self):
        """Serve connections on :attr:`link` until a stop is requested (or, ``once``, the first
        client has left)."""

    def stop(self, timeout=10.0):
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.error is not None:
            raise ServeError(f"the {self.backend} board failed: {self.error}") from self.error

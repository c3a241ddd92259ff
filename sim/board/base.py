"""What every simulated board shares: the server base class, the socket side and its timing.

A server (:class:`Server`) puts the design's byte stream on a loopback TCP socket
(:class:`LinkSocket`); :mod:`spinemu.sim.board` lists the backends. Every backend serves one client
at a time and tells a second one at once that the board is in use (:data:`BUSY_ANSWER`); when a
client leaves, it drops what the design still sends for it and flushes the design (:class:`Flush`)
before it serves the next one.
"""

import abc
import select
import socket
import threading
import time
from dataclasses import dataclass

from spinemu.hdl.framing import DELIMITER, encode_frame
from spinemu.hdl.memory_map import job_cycles
from spinemu.hdl.protocol import (
    ABORT_FRAME,
    ABORT_SEQ,
    HASH_CYCLES,
    RESPONSE_HEADER,
    UNREADABLE_SEQ,
    WINDOW,
    Status,
    pack,
)

from ..errors import SimulationError

__all__ = ["DEFAULT_HOST", "CHUNK_CYCLES", "BUSY_ANSWER", "ServeError", "quiet_cycles",
           "settle_cycles", "flush_cycles", "FLUSH_REQUEST", "FLUSH_ANSWER", "Flush", "FrameWatch",
           "FlushWatch", "LinkSocket", "Server", "ThreadServer"]

DEFAULT_HOST = "127.0.0.1"
#: Longest stretch the simulator runs without Python looking at the socket and the stop request
#: (about a quarter second under Icarus): how soon a new client is refused, or a departed one seen.
CHUNK_CYCLES = 5_000
_POLL_S = 0.1
#: What a client connecting while another is served gets before its connection is closed.
BUSY_ANSWER = encode_frame(pack(RESPONSE_HEADER, seq=UNREADABLE_SEQ, status=Status.BUSY.value))
#: A refused connection is sent :data:`BUSY_ANSWER` when its client first sends, or this long
#: after it came, and is closed once its client has gone, or this long after that.
_REFUSED_S = 1.0


class ServeError(SimulationError):
    """The simulated board could not start or failed; the message says why (and names a log)."""


def quiet_cycles(max_payload):
    """Cycles after a request's last byte, or after the answer to the request before it in the
    window, by which the design has answered it or started its job: the frame taken from the
    window, the hash of the noise table for an IDENTIFY (:data:`HASH_CYCLES`) and an answer of up to
    ``max_payload`` bytes, with room to spare."""
    return 4 * (max_payload + 3) + 256 + HASH_CYCLES


def settle_cycles(window=WINDOW):
    """Cycles a flushed design must stay silent after its ABORTED answer (:class:`Flush`): room
    for a second ABORTED, the answer to an ABORT the departed client sent itself just before the
    flush's, after the design has emptied a full window of ``window`` bytes."""
    return window + 256


def flush_cycles(config, max_payload, window=WINDOW):
    """The cycles a design gets to answer a :class:`Flush` and fall silent, from its first byte.

    The ABORT (:data:`~spinemu.hdl.protocol.ABORT_FRAME`, after a delimiter) is recognised on the
    line as its last byte arrives, whatever the window holds. Then

    * the request being handled finishes and is answered as usual (a job excepted), within
      :func:`quiet_cycles`: the rest of its frame from the window, a WRITE's elements, a RUN's or
      JOB's configuration check, the noise table's hash for an IDENTIFY after NOISE writes
      (:data:`HASH_CYCLES`), an answer of up to ``max_payload`` bytes one a cycle (the servers take
      every ``o`` byte at once);
    * a running job stops, within a whole one-sample job on the largest network the design holds
      (``job_cycles``), so that an abort taking effect only at the end of a phase of the job fits,
      and a job that the finishing RUN or JOB starts stops the same way;
    * the design empties the window (at most ``window`` bytes) and answers ABORTED;
    * it stays silent for :func:`settle_cycles`.

    The bound is four times the sum of those (the flush's own bytes included), then the settle:
    a design that needs more has lost the ABORT, or keeps answering after it.
    """
    largest = (config.max_inputs,) + (config.max_width,) * config.max_layers
    handled = quiet_cycles(max_payload) + job_cycles(largest, config, 1)
    return 4 * (len(FLUSH_REQUEST) + handled + window + 256) + settle_cycles(window)


#: What a flush feeds the design: a delimiter, which ends a frame the departed client left
#: unfinished (an empty frame otherwise, which is no frame), then ABORT.
FLUSH_REQUEST = bytes([DELIMITER]) + ABORT_FRAME
#: The design's answer to the flush's ABORT.
FLUSH_ANSWER = encode_frame(pack(RESPONSE_HEADER, seq=ABORT_SEQ, status=Status.ABORTED.value))


@dataclass(frozen=True)
class Flush:
    """What a server feeds the design after its client has left, so that nothing the client left
    reaches the next one: :attr:`request` (:data:`FLUSH_REQUEST`: ABORT, ahead of whatever the
    window holds), then the design runs, its output dropped, until :attr:`answer` (ABORTED) has come
    out and :attr:`settle` cycles have passed after it with no byte out (:class:`FlushWatch`); the
    server fails if that has not happened after :attr:`cycles` (:func:`flush_cycles`).

    The ABORT stops a job the departed client left running and drops the requests it left queued
    in the window unanswered; what the design still sends before ABORTED (the answer to the request
    it was handling, and any before it) is dropped. The settle drops a second ABORTED, when the
    client sent an ABORT itself just before it left: the design answers the ABORTs that arrive
    before it is next between requests with one ABORTED, and one that arrives later (while that
    ABORTED goes out, say) with another.
    """

    request: bytes
    answer: bytes
    cycles: int
    settle: int

    @classmethod
    def of(cls, config, max_payload, window=WINDOW):
        """The flush of a design with ``config``, ``max_payload`` and a window of ``window``
        bytes."""
        return cls(FLUSH_REQUEST, FLUSH_ANSWER, flush_cycles(config, max_payload, window),
                   settle_cycles(window))

    def watch(self, last_out):
        """A :class:`FlushWatch` for this flush, given the last byte the design sent
        (:data:`DELIMITER` if none)."""
        return FlushWatch(self, mid_frame=last_out != DELIMITER)

    def failure(self, backend):
        """The error of a design that did not answer in time (or kept sending after it)."""
        return ServeError(f"the {backend} board's design did not answer the flush after a client "
                          f"left (ABORT, answered ABORTED and then silent for {self.settle} "
                          f"cycles, within {self.cycles} cycles): a job it did not stop?")


class FrameWatch:
    """Finds one exact frame in a design's output, byte by byte (:meth:`take`). ``mid_frame``: the
    output is in the middle of a frame, whose tail is not a frame."""

    def __init__(self, frame, mid_frame):
        self.frame, self._skip, self._got = frame, mid_frame, bytearray()

    def take(self, byte):
        """True once ``byte`` ends :attr:`frame`."""
        self._got.append(byte)
        if byte != DELIMITER:
            return False
        found = not self._skip and self._got == self.frame
        self._skip = False
        self._got.clear()
        return found


class FlushWatch:
    """A flush in progress, told each byte the design sends and when (:meth:`take`): done
    (:meth:`done`) once the flush's answer has come and :attr:`Flush.settle` cycles have passed
    after the last byte out since; :meth:`wait` says how long the server may simulate without
    looking."""

    def __init__(self, flush, mid_frame):
        self.flush = flush
        self._frame = FrameWatch(flush.answer, mid_frame)
        self.answered = False
        self._last = 0              # the cycle of the last byte out, once answered

    def take(self, byte, cycle):
        """The design sent ``byte`` at ``cycle`` (cycles counted from the flush's start)."""
        if self._frame.take(byte):
            self.answered = True
        self._last = cycle

    def done(self, cycle):
        return self.answered and cycle - self._last >= self.flush.settle

    def wait(self, cycle):
        """Cycles from ``cycle`` to the next moment :meth:`done` or the deadline could change,
        if no byte comes out meanwhile (at least 1)."""
        end = self.flush.cycles
        if self.answered:
            end = min(end, self._last + self.flush.settle)
        return max(1, end - cycle)

    def late(self, cycle):
        """True once the flush's cycles have passed without it being done."""
        return cycle >= self.flush.cycles and not self.done(cycle)


class LinkSocket:
    """The socket side of a simulated board: one listening socket, one connection at a time.

    A connection that comes while one is served is refused (while the server waits on the socket
    or polls it): its first request, or its silence for :data:`_REFUSED_S`, is answered
    :data:`BUSY_ANSWER` and the connection closed; the one served is not disturbed.
    ``stopping()`` is polled while waiting, so a stop request is seen within about 0.1 s.
    """

    def __init__(self, host, port, stopping):
        self.stopping = stopping
        self.listener = socket.create_server((host, port))
        self.host, self.port = self.listener.getsockname()[:2]
        self.conn = None
        self.refused = 0
        self._lingering = {}            # refused connections: (told, when to act anyway)

    def accept(self):
        """Wait for a connection; False if a stop was requested first."""
        while not self.stopping():
            if self.listener in self._select([self.listener], _POLL_S):
                conn, _ = self.listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.conn = conn
                return True
        return False

    def receive(self, timeout=0.0):
        """Bytes from the client (``b""`` if none came within ``timeout``); None once it is gone.

        A new connection is refused only while the client has nothing more to read: one that
        came as the client left (its last bytes, then the end, still unread) is the next client.
        """
        if self.conn is None:
            return None
        data = b""
        try:
            ready = self._select([self.conn, self.listener], timeout)
            if self.conn in ready:
                data = self.conn.recv(65536) or None
            if data is not None and self.listener in ready \
                    and not select.select([self.conn], [], [], 0)[0]:
                self._refuse()
        except OSError:
            data = None
        if data is None:
            self.drop()
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
        for sock in self._lingering:
            sock.close()
        self._lingering.clear()
        self.listener.close()

    def _select(self, socks, timeout):
        """The sockets of ``socks`` ready to read within ``timeout``; meanwhile the refused
        connections are served (:meth:`_refuse`)."""
        ready, _, _ = select.select([*socks, *self._lingering], [], [], timeout)
        now = time.monotonic()
        for sock, (told, until) in list(self._lingering.items()):
            try:
                data = sock.recv(65536) if sock in ready else None
                if data == b"":
                    gone = True                         # its client has gone
                elif not told and (data or now > until):
                    sock.sendall(BUSY_ANSWER)
                    sock.shutdown(socket.SHUT_WR)
                    self._lingering[sock] = (True, now + _REFUSED_S)
                    gone = False
                else:
                    gone = told and now > until
            except OSError:
                gone = True
            if gone:
                sock.close()
                del self._lingering[sock]
        return ready

    def _refuse(self):
        """Take a new connection to refuse. Its client is told :data:`BUSY_ANSWER` when it first
        sends (pyserial's ``socket://`` drops what arrives before it has opened the port), and
        what it sends is dropped; the connection is closed once the client has gone: closing it
        with the client's bytes unread would reset it, which can destroy the answer before the
        client reads it."""
        sock, _ = self.listener.accept()
        self.refused += 1
        self._lingering[sock] = (False, time.monotonic() + _REFUSED_S)


class Server(abc.ABC):
    """A running simulated board (see :func:`spinemu.sim.board.start_server`); a context manager
    that stops it.

    ``url`` is what a client connects to; ``stats()`` gives the server's time accounting (the RTL
    backends: seconds waiting for the client, computing in the simulator and streaming bytes,
    connections served and refused); ``flush`` is what the design is fed after a client leaves.
    """

    backend = None

    def __init__(self, config, max_payload, host, port, once, window=WINDOW):
        self.config, self.max_payload, self.window = config, max_payload, window
        self.host, self.port, self.once = host, port, once
        self.flush = Flush.of(config, max_payload, window)
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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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

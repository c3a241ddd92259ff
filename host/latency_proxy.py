"""A loopback TCP proxy that delays the bytes of a ``socket://`` link by a fixed time each way: a
USB-serial adapter's latency in front of the simulated board.

::

    from spinemu.host.latency_proxy import LatencyProxy

    with LatencyProxy(board.url, delay_s=0.004) as url:      # 4 ms each way: 8 ms a round trip
        with Client.connect(url) as dev:
            ...

An FTDI adapter holds what it receives from the board until its buffer fills or its latency timer
(1 to 16 ms, 16 by default) runs out, and the host's USB stack adds its own frame time the other
way; :class:`LatencyProxy` models both as one fixed delay per direction. Each chunk of bytes read
from one side is written to the other side ``delay_s`` after it was read: never earlier, never held
back for a later chunk (chunks that are due together go out together), never reordered. It does not
limit the rate: the simulated board has no UART, and this proxy adds none.

Ends are passed on: when one side shuts its sending direction (or closes), the other side's
receiving direction is shut once the bytes before it have been delivered (``delay_s`` later), and
a connection whose two directions have both ended is closed. If one side goes away entirely (a
reset, or an end whose own bytes can no longer be delivered), the other side gets the bytes still
due to it and is then closed. Each client connection gets its own connection to the target, made
when the client connects; if that fails, the client's connection is closed and :attr:`errors`
says why.

The proxy runs an asyncio loop in a thread of its own, so it is started and stopped by its user:
:meth:`LatencyProxy.start` (or ``with``) returns the URL to connect to, :meth:`LatencyProxy.stop`
closes the listening socket and every connection (bytes still held are dropped) and joins the
thread. A proxy that cannot listen raises :class:`~spinemu.host.errors.LinkError` naming the
address and the reason.
"""

import asyncio
import socket
import threading
from collections import deque
from urllib.parse import urlsplit

from .errors import LinkError

__all__ = ["LatencyProxy", "parse_socket_url"]

# How long start() and stop() wait for the proxy's thread.
_THREAD_TIMEOUT_S = 10.0
# Bytes read from a socket at a time.
_CHUNK = 65536


def parse_socket_url(url):
    """``(host, port)`` of a ``socket://HOST:PORT`` URL; ValueError naming the URL otherwise."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "socket" or not parts.hostname or port is None:
        raise ValueError(f"{url!r} is not a socket://HOST:PORT URL")
    return parts.hostname, port


class _Side(asyncio.Protocol):
    """One end of a proxied connection: the client's (``"client"``) or the target's
    (``"target"``)."""

    def __init__(self, pair, name):
        self.pair, self.name, self.transport = pair, name, None

    def connection_made(self, transport):
        sock = transport.get_extra_info("socket")
        if sock is not None:        # no Nagle delay on top of the one the proxy adds
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport
        self.pair.made(self)

    def data_received(self, data):
        self.pair.pipe_from(self).push(data)

    def eof_received(self):
        self.pair.pipe_from(self).push(None)
        return True                 # keep the other direction open (a half close)

    def connection_lost(self, exc):
        self.pair.lost(self)

    def pause_writing(self):
        self.pair.other(self).pause_reading()

    def resume_writing(self):
        self.pair.other(self).resume_reading()

    def pause_reading(self):
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self):
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class _Pipe:
    """One direction of a connection: chunks read from ``source``, each written to ``dest`` at
    its release time (read time + delay), in order; ``None`` in the queue is the source's end."""

    def __init__(self, pair, source, dest):
        self.pair, self.source, self.dest = pair, source, dest
        self.queue = deque()        # (release time, chunk or None)
        self.timer = None
        self.done = False           # the end has been delivered, or the destination is gone

    def push(self, data):
        if self.done:
            return
        loop = self.pair.loop
        self.queue.append((loop.time() + self.pair.delay_s, data))
        if self.timer is None:
            self._schedule()

    def _schedule(self):
        self.timer = self.pair.loop.call_at(self.queue[0][0], self.release)

    def release(self):
        """Write every chunk that is due; wait for the next one."""
        self.timer = None
        if self.done:
            return
        if self.dest.transport is None:         # the target is still being connected to
            return                              # (release() is called again once it is)
        now = self.pair.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if data is None:
                self._end()
                return
            self.dest.transport.write(data)
        if self.queue:
            self._schedule()

    def _end(self):
        transport = self.dest.transport
        try:
            transport.write_eof()
        except (OSError, NotImplementedError):  # the destination is gone already
            transport.abort()
        self.finish()

    def finish(self):
        """Stop this direction: nothing more is written."""
        self.done = True
        self.queue.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pair.check_done()


class _Pair:
    """A client's connection and its connection to the target."""

    def __init__(self, proxy):
        self.proxy, self.loop, self.delay_s = proxy, proxy._loop, proxy.delay_s
        self.client, self.target = _Side(self, "client"), _Side(self, "target")
        self.up = _Pipe(self, self.client, self.target)        # client -> target
        self.down = _Pipe(self, self.target, self.client)      # target -> client
        self.closed = False

    def other(self, side):
        return self.target if side is self.client else self.client

    def pipe_from(self, side):
        return self.up if side is self.client else self.down

    def pipe_to(self, side):
        return self.down if side is self.client else self.up

    def made(self, side):
        if side is self.client:
            self.proxy._pairs.add(self)
            self.loop.create_task(self._connect())
        elif self.closed:                       # the client left while the target was connecting
            side.transport.abort()
        else:
            self.up.release()                   # what the client sent meanwhile, if due

    async def _connect(self):
        host, port = self.proxy.target_address
        try:
            await self.loop.create_connection(lambda: self.target, host, port)
        except OSError as error:
            self.proxy.errors.append(f"cannot connect to {self.proxy.target}: {error}")
            self.up.finish()
            self.down.finish()
            self.client.transport.abort()

    def lost(self, side):
        """``side`` is gone: what it sent still goes to the other side, then that closes."""
        self.pipe_to(side).finish()
        self.pipe_from(side).push(None)
        self.check_done()

    def check_done(self):
        if self.closed or not (self.up.done and self.down.done):
            return
        self.closed = True
        for side in (self.client, self.target):
            if side.transport is not None:
                side.transport.close()          # after what is buffered has been written
        self.proxy._pairs.discard(self)

    def abort(self):
        self.closed = True
        for pipe in (self.up, self.down):
            pipe.done = True
            if pipe.timer is not None:
                pipe.timer.cancel()
        for side in (self.client, self.target):
            if side.transport is not None:
                side.transport.abort()


class LatencyProxy:
    """Forward a ``socket://`` ``target`` through a loopback port, ``delay_s`` seconds later each
    way (see the module docstring). ``host`` and ``port`` (0: a free one) are where it listens.

    :meth:`start` (or ``with``) returns :attr:`url`, the ``socket://`` URL to connect to; every
    client that connects gets its own connection to ``target``. :attr:`errors` lists the
    connections to the target that failed; :attr:`open_connections` counts the client
    connections not yet closed."""

    def __init__(self, target, delay_s, *, host="127.0.0.1", port=0):
        if not delay_s >= 0:
            raise ValueError(f"the delay must be at least 0 s, not {delay_s!r}")
        self.target, self.target_address = target, parse_socket_url(target)
        self.delay_s, self.host, self.port = float(delay_s), host, port
        self.errors = []
        self._loop = self._thread = self._server = None
        self._pairs = set()

    @property
    def url(self):
        """The URL to connect to (once started)."""
        if self._server is None:
            raise RuntimeError("the latency proxy is not running")
        return f"socket://{self.host}:{self.port}"

    @property
    def open_connections(self):
        return len(self._pairs)

    def start(self):
        """Listen and forward; the URL to connect to. :class:`LinkError` if it cannot listen."""
        if self._thread is not None:
            raise RuntimeError("the latency proxy is already running")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"latency proxy to {self.target}")
        self._thread.start()
        listening = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            listening.result(_THREAD_TIMEOUT_S)
        except OSError as error:
            self._end_thread()
            raise LinkError(f"the latency proxy cannot listen on {self.host}:{self.port}: "
                            f"{error.strerror or error}") from None
        return self.url

    async def _listen(self):
        self._server = await self._loop.create_server(lambda: _Pair(self).client, self.host,
                                                      self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self):
        """Close the listening socket and every connection (bytes still held are dropped) and
        join the thread. Stopping a stopped proxy does nothing."""
        if self._thread is None:
            return
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(_THREAD_TIMEOUT_S)
        self._end_thread()

    async def _close(self):
        self._server.close()
        for pair in list(self._pairs):
            pair.abort()
        self._pairs.clear()
        await self._server.wait_closed()
        await asyncio.sleep(0)          # let the aborted transports finish closing

    def _end_thread(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_THREAD_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()
        self._thread = self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        where = self.url if self._server is not None else "stopped"
        return (f"<LatencyProxy {where} -> {self.target}, {self.delay_s * 1e3:g} ms each way>")

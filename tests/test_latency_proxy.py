"""The latency proxy (spinemu.host.latency_proxy): bytes unchanged and in order both ways, each chunk
``delay`` late and no later than a loaded 2-core machine makes it, ends passed on, a clear error if
it cannot listen."""

import random
import socket
import statistics
import threading
import time

import pytest

from spinemu.host.errors import LinkError
from spinemu.host.latency_proxy import LatencyProxy, parse_socket_url

# What a loaded 2-core machine may add to a round trip (median over many), and to one chunk.
TOLERANCE_S = 0.020
WAIT_S = 5.0


def _nodelay(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Target:
    """A loopback TCP server for one connection at a time: ``serve(conn)`` in a thread."""

    def __init__(self, serve):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.serve, self.errors, self.results = serve, [], []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with _nodelay(conn):
                try:
                    self.results.append(self.serve(conn))
                except Exception as error:      # reported by the test
                    self.errors.append(error)

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)        # wakes the accept() (Linux)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(WAIT_S)


def _echo(conn):
    while data := conn.recv(65536):
        conn.sendall(data)


def _recv_until_eof(conn):
    chunks = []
    while data := conn.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def _connect(url):
    host, port = parse_socket_url(url)
    sock = _nodelay(socket.create_connection((host, port), timeout=WAIT_S))
    return sock


def _wait(condition):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def echo():
    target = Target(_echo)
    yield target
    target.close()
    assert not target.errors


def test_bytes_pass_unchanged_both_ways():
    rng = random.Random(1)
    up = rng.randbytes(300_000)
    down = rng.randbytes(200_000)

    def serve(conn):                    # sends its own stream while it reads the client's
        sender = threading.Thread(target=lambda: (conn.sendall(down),
                                                  conn.shutdown(socket.SHUT_WR)))
        sender.start()
        got = _recv_until_eof(conn)
        sender.join()
        return got

    target = Target(serve)
    try:
        with LatencyProxy(target.url, 0.002) as url, _connect(url) as sock:
            offset = 0
            while offset < len(up):     # chunks of random sizes, sent as they come
                size = rng.randrange(1, 5000)
                sock.sendall(up[offset:offset + size])
                offset += size
            sock.shutdown(socket.SHUT_WR)
            received = _recv_until_eof(sock)
            # The down stream can end before the up stream has been delivered; stopping the proxy
            # drops what it still holds, so wait for the target to have read to its end first.
            target.close()
    finally:
        target.close()
    assert not target.errors
    assert received == down
    assert target.results == [up]


@pytest.mark.parametrize("delay", [0.004, 0.008])
def test_round_trip_is_twice_the_delay_and_not_much_more(echo, delay):
    times = []
    with LatencyProxy(echo.url, delay) as url, _connect(url) as sock:
        for k in range(40):
            message = bytes([k]) * (1 + k % 7)
            began = time.perf_counter()
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                got += sock.recv(65536)
            times.append(time.perf_counter() - began)
            assert got == message
    assert min(times) >= 2 * delay
    assert statistics.median(times) < 2 * delay + TOLERANCE_S


def test_each_chunk_is_released_at_its_own_time():
    # Chunks 100 ms apart through 30 ms each way: each arrives 30 ms after it was sent (the
    # median within the tolerance), before the next one is due (not held back for it), in order.
    delay, gap, chunks = 0.030, 0.100, 4
    arrivals = []

    def serve(conn):
        got = b""
        while data := conn.recv(65536):
            got += data
            arrivals.append((time.perf_counter(), len(got)))
        return got

    target = Target(serve)
    sent = []
    try:
        with LatencyProxy(target.url, delay) as url, _connect(url) as sock:
            for k in range(chunks):
                sent.append(time.perf_counter())
                sock.sendall(bytes([k + 1]) * 100)
                time.sleep(gap)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b""
        target.close()
    finally:
        target.close()
    assert target.results == [b"".join(bytes([k + 1]) * 100 for k in range(chunks))]
    late = []
    for k in range(chunks):
        arrived = next(t for t, size in arrivals if size >= 100 * (k + 1))
        assert delay <= arrived - sent[k] < delay + gap
        late.append(arrived - sent[k])
    assert statistics.median(late) < delay + TOLERANCE_S


def test_a_client_that_closes_is_seen_by_the_target_and_both_are_closed(echo):
    proxy = LatencyProxy(echo.url, 0.005)
    with proxy as url:
        sock = _connect(url)
        sock.sendall(b"hello")
        assert sock.recv(5) == b"hello"
        assert proxy.open_connections == 1
        began = time.perf_counter()
        sock.close()
        # The echo target sees the end (after the delay), returns and closes; so does the proxy.
        _wait(lambda: echo.results == [None])
        assert time.perf_counter() - began >= 0.005
        _wait(lambda: proxy.open_connections == 0)
    assert not proxy.errors


def test_a_target_that_closes_is_seen_by_the_client_and_both_are_closed():
    def greet_and_close(conn):
        conn.sendall(b"bye")            # then Target closes the connection

    target = Target(greet_and_close)
    proxy = LatencyProxy(target.url, 0.005)
    try:
        with proxy as url:
            with _connect(url) as sock:
                assert _recv_until_eof(sock) == b"bye"      # the bytes, then the target's end
                sock.sendall(b"late")                       # the other direction still works
            _wait(lambda: proxy.open_connections == 0)
    finally:
        target.close()
    assert not target.errors and not proxy.errors


def test_stop_closes_open_connections_and_the_thread(echo):
    proxy = LatencyProxy(echo.url, 0.001)
    url = proxy.start()
    sock = _connect(url)
    sock.sendall(b"a")
    assert sock.recv(1) == b"a"
    thread = proxy._thread
    proxy.stop()
    assert not thread.is_alive()
    sock.settimeout(WAIT_S)
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass
    sock.close()
    with pytest.raises(OSError):
        _connect(url).close()
    proxy.stop()                        # a second stop does nothing
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.url


def test_a_port_in_use_is_a_clear_error(echo):
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        with pytest.raises(LinkError, match=f"cannot listen on 127.0.0.1:{port}"):
            LatencyProxy(echo.url, 0.001, port=port).start()
    finally:
        busy.close()


def test_an_unreachable_target_closes_the_client_and_says_why():
    free = socket.create_server(("127.0.0.1", 0))
    target = f"socket://127.0.0.1:{free.getsockname()[1]}"
    free.close()
    proxy = LatencyProxy(target, 0.001)
    with proxy as url, _connect(url) as sock:
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        _wait(lambda: proxy.open_connections == 0)
    assert len(proxy.errors) == 1 and f"cannot connect to {target}" in proxy.errors[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="not a socket://HOST:PORT URL"):
        LatencyProxy("/dev/ttyUSB1", 0.004)
    with pytest.raises(ValueError, match="at least 0"):
        LatencyProxy("socket://127.0.0.1:1", -1)
    assert parse_socket_url("socket://127.0.0.1:7777?logging=debug") == ("127.0.0.1", 7777)

"""The simulated board: the design's byte stream on a loopback TCP port.

A host talks to the simulated board exactly as to a board, through the pyserial URL
``socket://127.0.0.1:PORT`` instead of a serial port (``docs/host.md``). :func:`start_server`
starts the board of one of the :data:`~spinemu.sim.backends.BACKENDS`
(:meth:`~spinemu.sim.backends.Backend.board`), each behind a loopback TCP socket:

``golden``
    :class:`~spinemu.sim.board.model.GoldenBoard` in a thread: the exact answer bytes, no clock
    (:mod:`.golden`).
``amaranth``
    :class:`~spinemu.hdl.protocol_engine.ProtocolEngine` in the Amaranth simulator, in a thread
    (:mod:`.amaranth`).
``icarus``
    the generated Verilog of the ProtocolEngine under a cocotb bench
    (:mod:`spinemu.sim.benches.serve_bench`) in a simulator process (:mod:`.cocotb`); the build is
    cached (:func:`spinemu.sim.rtl.run_bench`), so only the first start of a design compiles it.
``verilator``
    the native board (:mod:`.native`): the same Verilog compiled by Verilator with a C++ main that
    runs the clock and the socket itself, many times faster than a cocotb bench; cached the same
    way.

The byte stream is the ProtocolEngine's ``i``/``o`` (the UART PHY of a board top is bypassed: it
would only slow the simulation down, and the bytes are the same). Bytes go into ``i`` as they come
from the socket, one a cycle: the design's receive window keeps ``i`` always ready, so a client may
keep up to ``window`` bytes of requests in flight (IDENTIFY reports it), as on a board. The design
keeps its state (a loaded model) from one connection to the next, as a board does; one connection is
served at a time. A client that connects meanwhile is answered :data:`~.base.BUSY_ANSWER` (status
BUSY) and its connection closed. When a client leaves, every byte the design still sends for it is
dropped and the design is flushed (:class:`~.base.Flush`: a delimiter and ABORT, which stops a job
the client left running and drops the requests it left queued, answered ABORTED) before the next
client is served; a design that does not answer the flush in time (:func:`~.base.flush_cycles`)
fails the server with a :class:`ServeError`.
The servers never step Python once per clock cycle while the design computes: they wait for the
design's first answer byte (or a bounded time) in the simulator, and read the socket only between
such waits and while bytes are moving.
"""

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import EngineConfig
from spinemu.hdl.protocol import WINDOW

from ..backends import find_backend
from .base import DEFAULT_HOST, ServeError, Server

__all__ = ["DEFAULT_HOST", "ServeError", "Server", "start_server"]


def start_server(backend, config=EngineConfig(), max_payload=MAX_PAYLOAD, *, window=WINDOW,
                 host=DEFAULT_HOST, port=0, once=False):
    """Start the simulated board of ``config`` and a receive window of ``window`` bytes on
    ``backend`` and return its :class:`Server` once
    it listens on ``host:port`` (port 0: a free one, see ``server.url``).

    ``once``: stop when the first client disconnects. The design keeps its state between
    connections otherwise (a job a departed client left running is stopped by ABORT, and the
    requests it left in flight are dropped). Verilator (the native board, which listens on
    127.0.0.1 only) and Icarus compile the design the first time (cached).
    """
    return find_backend(backend).board()(config, max_payload, host, port, once, window=window)

"""The ProtocolEngine in the Amaranth simulator behind the socket, in a thread (slow: for checking).

Bytes move as the socket gives and takes them: one a cycle into ``i`` (always ready: the design's
receive window takes them, however many requests the client keeps in flight) and out of ``o``
(always ready, no random stalls); while the design computes, the simulator runs to its next answer
byte without a Python step per cycle. When a client leaves, the design is flushed
(:class:`~spinemu.sim.board.base.Flush`: ABORT, then ABORTED) in the simulator.
"""

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from spinemu.hdl.framing import DELIMITER
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.sim.streams import PERIOD

from .base import ThreadServer, quiet_cycles

__all__ = ["AmaranthServer"]

#: Longest stretch simulated without looking at the socket: during a job the Amaranth simulator
#: runs a few thousand cycles a second, fewer on a loaded machine, so a new client is refused (or a
#: stop seen) well within the seconds that `tests/test_serve.py` allows.
_CHUNK_CYCLES = 500


class AmaranthServer(ThreadServer):
    """The ProtocolEngine in the Amaranth simulator behind the socket (slow: for checking)."""

    backend = "amaranth"

    def _serve(self):
        dut = ProtocolEngine(self.config, self.max_payload, self.window)
        top = Module()
        top.submodules.dut = dut
        cycle = Signal(64)                  # simulated cycles, which bound a flush
        top.d.sync += cycle.eq(cycle + 1)
        link, flush = self.link, self.flush
        quiet = quiet_cycles(self.max_payload)

        async def flush_design(ctx, last_out):
            # From the flush's first byte: ABORT fed one byte a cycle (i is always ready), the
            # output dropped until ABORTED has come and the design has been silent after it.
            data, watch = bytearray(flush.request), flush.watch(last_out)
            start = ctx.get(cycle)
            while not self._stop.is_set():
                now = ctx.get(cycle) - start
                if watch.done(now):
                    break
                if watch.late(now):
                    raise flush.failure(self.backend)
                ctx.set(dut.i.valid, bool(data))
                if data:
                    ctx.set(dut.i.payload, data[0])
                elif not ctx.get(dut.o.valid):
                    # Nothing to feed and nothing out: run to the next byte out, or as long as
                    # the flush could still end or fail without one.
                    await ctx.posedge(dut.o.valid).delay(
                        min(watch.wait(now), _CHUNK_CYCLES) * PERIOD)
                    continue
                _, _, i_ready, o_valid, o_byte = await ctx.tick().sample(
                    dut.i.ready, dut.o.valid, dut.o.payload)
                if data and i_ready:
                    data.pop(0)
                if o_valid:
                    watch.take(o_byte, ctx.get(cycle) - start)
            ctx.set(dut.i.valid, 0)

        async def bench(ctx):
            ctx.set(dut.o.ready, 1)
            while link.accept():
                pending, out, outstanding = bytearray(), bytearray(), 0
                last_in = last_out = DELIMITER
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
                        last_out, moved = o_byte, True
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
                            _CHUNK_CYCLES * PERIOD)
                        continue
                    if outstanding:
                        await ctx.posedge(dut.o.valid).delay(quiet * PERIOD)
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
                # What the design still sends for the departed client is dropped.
                await flush_design(ctx, last_out)

        sim = Simulator(top)
        sim.add_clock(PERIOD)
        sim.add_testbench(bench)
        sim.run()

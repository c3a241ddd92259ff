"""cocotb bench for a design behind a byte stream (``i``/``o``) that answers every frame in order: a
host that keeps requests in flight within a window of credits, as ``docs/protocol.md`` says.

Configuration: ``requests`` (hex strings, each sent whole, in order), ``frames`` (how many answer
frames each gets: 0 for one an ABORT drops), ``window`` (the credits: request bytes sent and not yet
answered), ``barrier`` (for each request: send it only once every earlier request has been answered,
as after an ABORT, or for stop-and-wait), ``after_busy`` (for each request: null, or a number of
cycles to wait after the design's ``busy`` is seen high before sending it: a request that must come
while a job runs), ``valid_p`` / ``ready_p`` (per-cycle probabilities of offering a byte and of
taking one), ``stall_seed``, ``max_cycles`` (the run ends there, complete or not), ``stall_cycles``
(it ends early when nothing has moved for that long while answers are still due) and ``tail``
(cycles it runs on after the last answer due, so that an answer too many is seen).

A request's bytes count against the credits from its first byte offered until its answers have all
come (a request answered by no frame, one an ABORT drops: until the next frame, the ABORTED that
says it is lost); a request longer than the window is sent only with nothing else in flight.
Writes ``answers.json`` into ``out_dir``: ``frames`` (every frame that came, hex, delimiter
included), ``sent`` (for each request, the cycle its last byte was taken), ``ends`` (for each frame,
the cycle its delimiter was taken), ``complete`` (every answer due came within the limits) and
``cycles``. The bench itself passes either way: the caller compares the frames with the golden
board's.
"""

import json
import random
from bisect import bisect_right
from itertools import accumulate
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge
from cocotb.utils import get_sim_time

from spinemu.sim.benches.common import PERIOD_NS, Handshake, config, start

DELIMITER = 0


def _now():
    return int(get_sim_time(unit="ns")) // PERIOD_NS


@cocotb.test()
async def window(dut):
    cfg = config()
    rng = random.Random(cfg.get("stall_seed", 0))
    requests = [bytes.fromhex(text) for text in cfg["requests"]]
    n = len(requests)
    due = list(accumulate(cfg["frames"]))          # frames due once request k is answered
    barrier = cfg.get("barrier") or [False] * n
    after_busy = cfg.get("after_busy") or [None] * n
    credits, max_cycles = cfg["window"], cfg["max_cycles"]
    stall_cycles, tail = cfg.get("stall_cycles", 200_000), cfg.get("tail", 1000)
    await start(dut)
    streams = Handshake(dut, rng, cfg.get("valid_p", 1.0), cfg.get("ready_p", 1.0))

    frames, ends, sent = [], [], []
    frame = bytearray()
    k = 0                   # the request being sent, or next to send
    sending = False
    busy_at = None          # for request k's after_busy: the cycle busy was seen high
    began = last_move = _now()
    total = due[-1] if due else 0

    sizes = [0, *accumulate(len(r) for r in requests)]
    # The frames that free request k's credits: its answers, or for one answered by none (dropped
    # by an ABORT), the next frame (ABORTED, which says it is lost). Answers come in order, so
    # the requests in flight are those from the first not yet freed on.
    free = [d + (f == 0) for d, f in zip(due, cfg["frames"], strict=True)]

    def in_flight():
        """Bytes of the requests sent (or being sent) and not yet answered."""
        end = k + sending
        return sizes[end] - sizes[min(bisect_right(free, len(frames)), end)]

    def may_send():
        """Whether request k may start now (False: later, or never again)."""
        nonlocal busy_at
        if k >= n:
            return False
        if barrier[k] and k and len(frames) < due[k - 1]:
            return False
        if after_busy[k] is not None:
            if busy_at is None:
                if not dut.busy.value:
                    return False
                busy_at = _now()
            if _now() - busy_at < after_busy[k]:
                return False
        used = in_flight()
        return used == 0 or used + len(requests[k]) <= credits

    while True:
        now = _now()
        done = k >= n and len(frames) >= total
        if now - began >= max_cycles or (not done and now - last_move >= stall_cycles):
            break
        if done and now - last_move >= tail:
            break
        if not sending and may_send():
            streams.feed(requests[k])
            sending, busy_at = True, None
        if not sending and not streams.offering and not dut.o__valid.value:
            # Nothing to send yet and nothing coming out: run in the simulator to the design's
            # next byte (or busy, which a request waits for), or to the next limit.
            dut.i__valid.value = 0
            limit = max_cycles - (now - began)
            limit = min(limit, (tail if done else stall_cycles) - (now - last_move))
            if k < n and after_busy[k] is not None:
                if busy_at is None and not dut.busy.value:
                    triggers = (RisingEdge(dut.o__valid), RisingEdge(dut.busy))
                else:
                    limit = min(limit, max(1, after_busy[k] - (now - (busy_at or now))))
                    triggers = (RisingEdge(dut.o__valid),)
            else:
                triggers = (RisingEdge(dut.o__valid),)
            await First(*triggers, ClockCycles(dut.clk, max(1, limit)))
            await FallingEdge(dut.clk)
            continue
        before = streams.sent
        byte = await streams.cycle()
        if streams.sent != before or byte is not None:
            last_move = _now()
        if sending and streams.sent == len(requests[k]):
            sent.append(_now())
            k, sending = k + 1, False
        if byte is not None:
            frame.append(byte)
            if byte == DELIMITER:
                frames.append(frame.hex())
                ends.append(_now())
                frame = bytearray()
    dut.i__valid.value = 0
    complete = k >= n and len(frames) >= total and not frame
    (Path(cfg["out_dir"]) / "answers.json").write_text(json.dumps(
        {"frames": frames, "sent": sent, "ends": ends, "complete": complete,
         "cycles": _now() - began, "partial": frame.hex()}))

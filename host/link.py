"""The link to a design: a window of requests in flight, matched to their answers, resent when lost.

:class:`Link` carries the frames of ``docs/framing.md`` over a pyserial port for
:class:`~spinemu.host.client.Client`, which builds the commands; ``docs/host.md`` has the rules in
full. In short:

* **Credits.** The design buffers received bytes in a receive window of ``window`` bytes (IDENTIFY
  reports it) and handles requests one at a time, in order, answering each frame in that order. The
  link keeps at most ``window`` request bytes on the line (sent, not yet known to be taken by the
  design) and at most ``max_in_flight`` requests unanswered; a request that does not fit waits for
  answers. Before IDENTIFY (``window`` None) one request at a time; a request larger than the
  window goes when the line is empty.
* **Copies.** Every send of a request (a *copy*) is remembered in the order sent, which is the order
  the design takes them. An answer with sequence number ``s`` comes from a copy of the request of
  ``s``, so every copy sent before that request's earliest copy still on the line has been taken:
  its bytes no longer count, and a request none of whose copies is left on the line, unanswered, is
  lost and sent again at once. (Without resends that is: an answer to ``s`` means every request
  sent before ``s`` and still unanswered is lost.)
* **Frames the design could not read.** A BAD_FRAME answer (seq 0xFF) stands in the place of the
  frame it judged: the first copy on the line is taken as lost. A damaged answer (CRC, COBS,
  length) likewise: the first copy's answer is taken as lost. OVERFLOW (seq 0xFF) says that a frame
  *after* the request in hand was dropped with the window full ("nothing earlier is lost",
  ``docs/protocol.md``): it is counted, and the lost frame is found by the answers after it, or by
  its timeout.
* **Timeouts.** The first copy on the line of an unanswered request must be answered within
  ``timeout`` plus the time the design needs (its ``cycles`` at ``min_clock_hz``, or at a quarter
  of the slowest rate seen, doubled after each timeout of it, plus that of duplicates queued before
  it), counted from its send or the last frame received, whichever is later; else it is taken as
  lost and sent again.
* **Duplicates.** A resend may leave two copies on the line; the answer of the second is stale (its
  request was answered) and dropped. A sequence number is used again only when every copy of its
  previous request is known to have been taken (an answer to a later copy came), so a stale answer
  is never taken for a new request's: never a duplicated or misplaced result.
* **Retries.** A request is sent at most ``retries + 1`` times; then :class:`LinkError` names it,
  the URL and what went wrong each time, or the refusal it got every time (BAD_LENGTH and
  OUT_OF_RANGE are retried, as damage the CRC missed can cause them); other refusals raise
  :class:`ProtocolError` at once.
* **A clean state.** :meth:`Link.abort` sends 0x00 and ``ABORT_FRAME`` (recognised on the line, ahead
  of the design's queue), resent on timeout, and drops every frame before its (0, ABORTED) answer.
  After an error, with requests possibly left in flight, the next request starts with it.

Wire bytes: a frame goes out alone, its predecessor's delimiter ending whatever came before; a
resend (after damage or loss) and ABORT go out after an extra 0x00, which ends whatever damaged
bytes the design's decoder holds.
"""

import time
from collections import deque
from dataclasses import dataclass, fields, replace

import serial

from spinemu.hdl.framing import FrameDecodeError, FrameSplitter, decode_frame, encode_frame
from spinemu.hdl.protocol import (
    ABORT_FRAME,
    ABORT_SEQ,
    IDENTIFY_RESPONSE,
    RESPONSE_HEADER,
    UNREADABLE_SEQ,
    Status,
    nbytes,
    request,
)

from .errors import LinkError, ProtocolError

__all__ = ["MAX_IN_FLIGHT", "SPLIT_LIMIT", "RETRIED_STATUSES", "LinkStats", "Damaged", "Request",
           "Link"]

#: The most requests the link keeps unanswered at once: well below the 254 sequence numbers
#: (1..254: 0 is ABORT's, 0xFF marks unreadable frames), so that one is always free to use again.
MAX_IN_FLIGHT = 64
#: Answers are cut out of the byte stream with room for any design's largest frame (as large as
#: IDENTIFY can report); they are then judged against the design's own ``max_payload``.
SPLIT_LIMIT = (1 << IDENTIFY_RESPONSE["max_payload"].width) - 1
#: Refusals that a well-formed request gets only when damage slipped past the CRC: retried.
RETRIED_STATUSES = (Status.BAD_LENGTH, Status.OUT_OF_RANGE)

_HEADER = nbytes(RESPONSE_HEADER)
_FIRST_SEQ, _LAST_SEQ = 1, UNREADABLE_SEQ - 1
_STATUS_MEANING = {
    Status.BAD_OPCODE: "the design does not know the command",
    Status.BAD_LENGTH: "the request's body has the wrong length",
    Status.OUT_OF_RANGE: "a region, address, value, sample count or read window is out of range",
    Status.NO_MODEL: "no model is loaded (was the design reset?)",
    Status.BAD_FRAME: "the design could not read the request",
    Status.BAD_CONFIG: "the configuration written is incomplete or does not fit the memories",
    Status.ABORTED: "the answer to ABORT only",
    Status.OVERFLOW: "a frame arrived with the design's receive window full",
    Status.BAD_VERSION: "the design speaks another protocol format version",
}


@dataclass
class LinkStats:
    """What the link has seen since the client connected (:attr:`Client.stats
    <spinemu.host.client.Client.stats>`).

    ``requests``: requests answered; ``resends``: requests (and ABORTs) sent again; ``timeouts``:
    waits that ended without an answer; ``damaged``: answers that did not decode (CRC, COBS,
    length) or whose body cannot be right; ``unreadable``: BAD_FRAME answers (the design could not
    read a frame); ``overflows``: OVERFLOW answers (a frame arrived with the design's window full:
    the client's credits should prevent it); ``stale``: answers to requests already answered
    (duplicates after a resend) or from before the last ABORT, dropped; ``in_flight``: the most
    requests unanswered at once (a peak: in a batch's :class:`LinkStats`, the batch's); ``bytes_out``
    and ``bytes_in``: bytes written and read; ``wait_s``: time blocked reading the link,
    ``write_s``: time writing to it.
    """

    requests: int = 0
    resends: int = 0
    timeouts: int = 0
    damaged: int = 0
    unreadable: int = 0
    overflows: int = 0
    stale: int = 0
    in_flight: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    wait_s: float = 0.0
    write_s: float = 0.0

    def copy(self):
        return replace(self)

    def __sub__(self, other):
        """The counts since ``other``; ``in_flight`` (a peak) is this one's."""
        return LinkStats(*(getattr(self, f.name) if f.name == "in_flight"
                           else getattr(self, f.name) - getattr(other, f.name)
                           for f in fields(self)))


class Damaged(Exception):
    """Raised by a request's ``check`` for an answer body that cannot be right (a length or padding
    that damage past the CRC explains): the request is sent again."""


class Request:
    """One request on the link: ``opcode``, ``body``, ``what`` (its name in messages), ``check``
    (the OK answer's body -> the result; may raise :class:`Damaged` or :class:`ProtocolError`),
    ``cycles`` (engine cycles it takes the design). ``done`` once answered; ``result`` then."""

    __slots__ = ("opcode", "body", "what", "check", "cycles", "seq", "frame", "sends", "indices",
                 "online", "problems", "refusal", "queued", "done", "result", "slack", "sent_at")

    def __init__(self, opcode, body, what, check, cycles):
        self.opcode, self.body, self.what, self.check, self.cycles = opcode, body, what, check, cycles
        self.seq = self.frame = self.refusal = self.result = None
        self.sends, self.online, self.slack, self.sent_at = 0, 0, 1.0, 0.0
        self.indices, self.problems = [], []
        self.queued = self.done = False

    def __repr__(self):
        return f"<Request {self.what} seq {self.seq} sends {self.sends} done {self.done}>"


class _Copy:
    """One send of a request, on the line until the design is known (or taken) to have read it."""

    __slots__ = ("request", "nbytes", "sent_at", "index")

    def __init__(self, request, nbytes, sent_at, index):
        self.request, self.nbytes, self.sent_at, self.index = request, nbytes, sent_at, index


class Link:
    """Requests in flight to a design behind ``port`` (an open pyserial port, or any object with its
    ``read``, ``write``, ``timeout`` and ``close``), within its window (see the module docstring).

    :meth:`submit` sends a request as soon as credits allow (handling answers meanwhile) and returns
    its :class:`Request`; :meth:`wait` handles answers until a request is answered and returns its
    result. ``window`` and ``max_payload`` are set from
    IDENTIFY by the client. Errors (:class:`LinkError`, :class:`ProtocolError`) come from whichever
    call is handling answers when a request fails; the requests still in flight are then forgotten,
    and the next :meth:`submit` starts with :meth:`abort`.
    """

    def __init__(self, port, url, stats, *, timeout, retries, min_clock_hz,
                 max_in_flight=MAX_IN_FLIGHT):
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be 1..{MAX_IN_FLIGHT}, not {max_in_flight}")
        self._port, self._port_timeout = port, None
        self.url, self.stats = url, stats
        self.timeout, self.retries, self.min_clock_hz = timeout, retries, min_clock_hz
        self.max_in_flight = max_in_flight
        self.window = None              # bytes; None: one request at a time
        self.max_payload = SPLIT_LIMIT
        #: ABORTs answered: each emptied the design's queue (what it held may have changed).
        self.generation = 0
        self._splitter = FrameSplitter(SPLIT_LIMIT)
        self._frames = deque()          # received, not yet handled
        self._copies = deque()          # on the line, in the order sent
        self._bytes = 0                 # bytes of those copies: the credits in use
        self._outstanding = {}          # seq -> unanswered Request (sent, or waiting to be resent)
        self._resend = deque()          # lost requests to send again, first
        self._by_seq = {}               # seq -> the last Request sent with it
        self._next_seq = _FIRST_SEQ
        self._index = 0                 # copies sent so far
        self._horizon = 0               # every copy with a smaller index has been taken
        self._event = time.monotonic()  # when the last frame came
        self._rate = None               # the slowest engine cycles per second seen
        self._dirty = False

    @property
    def port(self):
        return self._port

    @port.setter
    def port(self, port):
        self._port, self._port_timeout = port, None

    # ---- the API --------------------------------------------------------------------------------

    def submit(self, opcode, body, what, *, check=None, cycles=0):
        """Send request ``opcode`` with ``body`` as soon as credits allow; its :class:`Request`."""
        if self._port is None:
            raise LinkError(f"{what}: the client is closed")
        if self._dirty:
            self.resync()
        req = Request(opcode, body, what, check, cycles)
        try:
            while True:
                self._fill()
                if self._send_new(req):
                    return req
                if not self._copies and not self._frames:
                    self.resync()       # no sequence number free, nothing to wait for
                    continue
                self._pump(what)
        except BaseException:
            self._dirty = True
            raise

    def wait(self, req):
        """Handle answers until ``req`` is answered; its result."""
        try:
            while not req.done:
                if self._outstanding.get(req.seq) is not req:
                    raise LinkError(f"{req.what}: given up (the link was reset since)")
                self._fill()
                self._pump(req.what)
        except BaseException:
            self._dirty = True
            raise
        return req.result

    @property
    def idle(self):
        """Whether no request is unanswered."""
        return not self._outstanding

    def forget(self):
        """Give up the requests in flight (their answers will be dropped): the next request starts
        with :meth:`abort`."""
        if self._outstanding:
            self._dirty = True

    def resync(self):
        """:meth:`abort`, refused by nothing: a clean state after requests were left in flight."""
        status, _ = self.abort()
        if status != Status.ABORTED:
            raise ProtocolError(f"the design at {self.url} refused ABORT: {status.name}", status)

    def abort(self):
        """Send 0x00 and ``ABORT_FRAME`` (again on each timeout, up to ``retries`` times) and drop
        every frame until the design answers it: ``(Status.ABORTED, b"")``, or the refusal of a
        design of another version, ``(Status.BAD_VERSION, its version byte)`` or ``(status,
        body)`` (a design that does not know ABORT: BAD_OPCODE). The link is then empty."""
        if self._port is None:
            raise LinkError("ABORT: the client is closed")
        self._clear()
        self._dirty = True
        problems = []
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.resends += 1
            self._write(bytes(1) + ABORT_FRAME, "ABORT")
            deadline = time.monotonic() + self.timeout
            while True:
                if not self._frames:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.stats.timeouts += 1
                        problems.append(f"no answer in {self.timeout:.3g} s")
                        break
                    self._frames.extend(self._splitter.feed(self._read(remaining, "ABORT")))
                    continue
                answer = self._abort_answer(self._frames.popleft())
                if answer is not None:
                    self._clear()
                    self._horizon = self._index
                    self._event = time.monotonic()
                    self.generation += 1
                    self._dirty = False
                    return answer
        raise LinkError(f"no valid answer to ABORT from {self.url} after {self.retries + 1} "
                        f"attempts: {'; '.join(problems)}")

    # ---- sending --------------------------------------------------------------------------------

    def _fits(self, nbytes):
        if not self._copies:
            return True
        return self.window is not None and self._bytes + nbytes <= self.window

    def _fill(self):
        """Send the lost requests again, first come first, while credits allow."""
        while self._resend and self._fits(len(self._resend[0].frame) + 1):
            req = self._resend.popleft()
            req.queued = False
            self._send(req)

    def _send_new(self, req):
        if self._resend or len(self._outstanding) >= self.max_in_flight:
            return False
        seq = self._free_seq()
        if seq is None:
            return False
        frame = encode_frame(request(seq, req.opcode, req.body), self.max_payload)
        if not self._fits(len(frame)):
            return False
        req.seq, req.frame = seq, frame
        self._next_seq = seq + 1 if seq < _LAST_SEQ else _FIRST_SEQ
        self._by_seq[seq] = req
        self._outstanding[seq] = req
        self._send(req)
        return True

    def _free_seq(self):
        """The next sequence number whose last request is answered and all of whose copies the
        design has taken, so that no answer to them can still come; None if there is none."""
        seq = self._next_seq
        for _ in range(_LAST_SEQ - _FIRST_SEQ + 1):
            last = self._by_seq.get(seq)
            if last is None or (seq not in self._outstanding
                                and max(last.indices, default=-1) < self._horizon):
                return seq
            seq = seq + 1 if seq < _LAST_SEQ else _FIRST_SEQ
        return None

    def _send(self, req):
        data = bytes(1) + req.frame if req.sends else req.frame
        self._write(data, req.what)
        if req.sends:
            self.stats.resends += 1
        req.sends += 1
        req.sent_at = time.monotonic()
        req.indices.append(self._index)
        req.online += 1
        self._copies.append(_Copy(req, len(data), req.sent_at, self._index))
        self._index += 1
        self._bytes += len(data)
        self.stats.in_flight = max(self.stats.in_flight, len(self._outstanding))

    # ---- receiving ------------------------------------------------------------------------------

    def _need(self, req):
        """Seconds the design may take for ``req`` beyond the link's timeout."""
        if not req.cycles:
            return 0.0
        limit = req.cycles / self.min_clock_hz
        if self._rate:
            limit = min(limit, 4 * req.cycles / self._rate)
        return limit * req.slack

    def _head(self):
        """The copies up to the first one of an unanswered request (all of them if none is):
        ``(count, that request or None, the time by which its answer is due, the wait)``."""
        need = 0.0
        for i, copy in enumerate(self._copies):
            req = copy.request
            need += self._need(req)
            if self._outstanding.get(req.seq) is req:
                wait = self.timeout + need
                return i + 1, req, max(copy.sent_at, self._event) + wait, wait
        wait = self.timeout + need
        return len(self._copies), None, max(self._copies[-1].sent_at, self._event) + wait, wait

    def _pump(self, what):
        """Handle the frames received, or wait for some until the first answer due is late."""
        if not self._frames:
            if not self._copies:
                raise RuntimeError("the link waits for an answer with nothing on the line")
            count, req, deadline, wait = self._head()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._late(count, req, wait)
                return
            data = self._read(remaining, req.what if req is not None else what)
            self._frames.extend(self._splitter.feed(data))
        now = time.monotonic()
        while self._frames:
            self._frame(self._frames.popleft(), now)

    def _release(self, count):
        """Take the first ``count`` copies off the line; them."""
        released = [self._copies.popleft() for _ in range(count)]
        for copy in released:
            self._bytes -= copy.nbytes
            copy.request.online -= 1
        return released

    def _late(self, count, req, wait):
        """The answer due first did not come in time: its copy (and any stale ones before it) is
        taken as lost."""
        released = self._release(count)
        if req is None:
            return                      # only duplicates of answered requests: forget them
        self.stats.timeouts += 1
        if req.cycles:
            req.slack *= 2              # the design may be slower than thought: wait longer
        self._lost_among(released, f"no answer in {wait:.3g} s")

    def _lost_among(self, released, problem, answered=None):
        """Send again every unanswered request (but ``answered``) none of whose copies is left on
        the line among those just taken off it."""
        for copy in released:
            req = copy.request
            if (req is not answered and not req.queued and req.online == 0
                    and self._outstanding.get(req.seq) is req):
                self._lost(req, problem)

    def _lost(self, req, problem, refusal=None):
        req.problems.append(problem)
        req.refusal = refusal
        if req.sends > self.retries:
            del self._outstanding[req.seq]
            if refusal is not None:
                raise refusal
            raise LinkError(f"no valid answer to {req.what} from {self.url} after {req.sends} "
                            f"attempts: {'; '.join(req.problems)}")
        req.queued = True
        self._resend.append(req)

    def _echo_error(self):
        return LinkError(f"{self.url} echoes what is sent (a loopback adapter or a terminal?), no "
                         f"spinemu design answers there")

    def _echo(self, frame):
        return any(len(frame) + 1 == len(c.request.frame) and frame == c.request.frame[:-1]
                   for c in self._copies)

    def _unplaced(self, problem):
        """A frame in the place of the first copy on the line, not its answer."""
        if self._copies:
            self._lost_among(self._release(1), problem)

    def _frame(self, frame, now):
        previous, self._event = self._event, now
        if self._echo(frame):
            raise self._echo_error()
        try:
            payload = decode_frame(frame, self.max_payload)
        except FrameDecodeError as error:
            self.stats.damaged += 1
            self._unplaced(f"damaged answer ({error})")
            return
        if len(payload) < _HEADER:
            self.stats.damaged += 1
            self._unplaced("answer of one byte")
            return
        seq, status, body = payload[0], payload[1], bytes(payload[_HEADER:])
        if seq == UNREADABLE_SEQ:
            if status == Status.BUSY.value:
                raise LinkError(f"the board at {self.url} is in use by another client")
            if status == Status.OVERFLOW.value:
                self.stats.overflows += 1    # a later frame was dropped: its successors tell
            else:
                self.stats.unreadable += 1
                self._unplaced("the design could not read the request (BAD_FRAME)")
            return
        req = self._by_seq.get(seq)
        later = [i for i in req.indices if i >= self._horizon] if req is not None else []
        if not later:
            self.stats.stale += 1           # from before the last ABORT, or long taken
            return
        # The answer comes from a copy of req at or after its earliest one not yet known taken:
        # every copy before that one has been taken.
        self._horizon = later[0] + 1
        count = 0
        while count < len(self._copies) and self._copies[count].index < self._horizon:
            count += 1
        self._lost_among(self._release(count), "lost (an answer to a later request came first)",
                         answered=req)
        if self._outstanding.get(seq) is not req:
            self.stats.stale += 1           # a duplicate: req was answered already
            return
        self._answer(req, status, body, now - max(req.sent_at, previous))

    def _answer(self, req, status, body, elapsed):
        if req.queued:                      # taken as lost, but its answer came after all
            self._resend.remove(req)
            req.queued = False
        try:
            status = Status(status)
        except ValueError:
            del self._outstanding[req.seq]
            raise ProtocolError(f"{req.what}: the design answered unknown status {status}") from None
        if status != Status.OK:
            refusal = ProtocolError(f"the design refused {req.what}: {status.name} "
                                    f"({_STATUS_MEANING.get(status, '')})", status)
            if status in RETRIED_STATUSES:
                self._lost(req, f"refused with {status.name}", refusal)
                return
            del self._outstanding[req.seq]
            raise refusal
        try:
            result = req.check(body) if req.check is not None else body
        except Damaged as damage:
            self.stats.damaged += 1
            self._lost(req, str(damage))
            return
        except ProtocolError:
            del self._outstanding[req.seq]
            raise
        del self._outstanding[req.seq]
        req.done, req.result = True, result
        self.stats.requests += 1
        if req.cycles and req.sends == 1 and elapsed > 0:
            rate = req.cycles / elapsed     # at most the design's: the link's time is in it
            self._rate = min(self._rate or rate, rate)

    def _abort_answer(self, frame):
        """The answer to ABORT in ``frame`` (see :meth:`abort`), or None for one to drop."""
        if frame == ABORT_FRAME[:-1]:
            raise self._echo_error()
        try:
            payload = decode_frame(frame, self.max_payload)
        except FrameDecodeError:
            self.stats.damaged += 1
            return None
        if len(payload) < _HEADER:
            self.stats.damaged += 1
            return None
        seq, status = payload[0], payload[1]
        if seq == UNREADABLE_SEQ and status == Status.BUSY.value:
            raise LinkError(f"the board at {self.url} is in use by another client")
        if seq == ABORT_SEQ and status in (Status.ABORTED.value, Status.BAD_VERSION.value,
                                           Status.BAD_OPCODE.value):
            return Status(status), bytes(payload[_HEADER:])
        self.stats.stale += 1               # what a previous host left in flight
        return None

    def _clear(self):
        self._frames.clear()
        self._copies.clear()
        self._resend.clear()
        self._outstanding.clear()
        self._bytes = 0

    # ---- the port -------------------------------------------------------------------------------

    def _set_timeout(self, value):
        if value != self._port_timeout:
            self._port.timeout = value
            self._port_timeout = value

    def _read(self, remaining, what):
        began = time.perf_counter()
        try:
            self._set_timeout(min(remaining, 0.25))
            data = self._port.read(1)
            if data:
                self._set_timeout(0)
                data += self._port.read(65536)
        except serial.SerialException as error:
            raise LinkError(f"the link to {self.url} failed while waiting for the answer to "
                            f"{what}: {error}") from None
        finally:
            self.stats.wait_s += time.perf_counter() - began
        self.stats.bytes_in += len(data)
        return data

    def _write(self, data, what):
        began = time.perf_counter()
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as error:
            raise LinkError(f"the link to {self.url} failed while sending {what}: "
                            f"{error}") from None
        finally:
            self.stats.write_s += time.perf_counter() - began
        self.stats.bytes_out += len(data)

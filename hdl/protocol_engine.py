"""The protocol engine: frames in, frames out, a layer engine in between (``docs/protocol.md``).

Bytes from the link go into a :class:`~spinemu.hdl.rx_window.ReceiveWindow` (a FIFO of ``window``
bytes in block RAM, always ready, which also spots the ABORT frame on the line), then through a
:class:`~spinemu.hdl.framing.FrameDecoder` (which releases only whole frames with a good CRC); the
command is parsed byte by byte as it streams, executed, and answered through a
:class:`~spinemu.hdl.framing.FrameEncoder`. Requests are handled one at a time, in their order on the
line, and every frame gets its answer in that order: the decoder takes no byte past a bad frame until
its BAD_FRAME answer has been started. Bad frames and bad requests get an error response and the
engine goes on; a WRITE element too wide for its memory is refused (nothing is silently truncated),
though elements before it in the same frame have been written. Every request starts from clean
state, so a refused one leaves nothing behind.

A RUN or JOB starts a job only on a complete configuration that fits the memories: a check walks the
network's groups, one per cycle, adding up its weight words and parameter entries. The job runs to
its end while later requests wait in the window. A JOB writes its input values to INPUT as their
bits arrive (a bit a cycle, from the byte the decoder holds) and answers the counts packed at
``count_bits(S)`` bits each, read back from the results memory a bit a cycle as the answer goes out.

Frames lost to a full window are answered OVERFLOW, one answer per lost frame, whenever the engine
is next between requests. An ABORT stops a running job at once (no answer to its RUN or JOB, its
counts gone); once the engine is between requests, the window is emptied, the decoder reset, the
pending BAD_FRAME and OVERFLOW answers dropped, and ABORT answered ABORTED. Any other frame with the
opcode ABORT is refused BAD_VERSION, its body the design's format version.

IDENTIFY reports the noise table by its hash, the CRC-32 of the table's 1024 bytes as it is held:
the first IDENTIFY after NOISE writes reads lane 0's table back, entry by entry, and computes the
hash (34 cycles an entry, a bit a cycle) before it answers.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .engine import LayerEngine
from .framing import MAX_PAYLOAD, FrameDecoder, FrameEncoder, FrameError
from .memory_map import CONFIG_BITS, COUNT_BITS, SAMPLE_BITS, EngineConfig, Region
from .noise_table import ENTRIES, HASH_PARAMETERS
from .protocol import (
    ABORT_SEQ,
    FORMAT_VERSION,
    IDENTIFY_RESPONSE,
    JOB_REQUEST,
    JOB_RESPONSE,
    READ_ELEMENT,
    READ_REQUEST,
    RESPONSE_HEADER,
    RUN_REQUEST,
    RUN_RESPONSE,
    STATUS_RESPONSE,
    UNREADABLE_SEQ,
    WINDOW,
    WRITE_HEADER,
    Opcode,
    Status,
    config_limits,
    element_bytes,
    identify_body,
    job_answer_bytes,
    nbytes,
)
from .rx_window import ReceiveWindow
from .seeding import SEED_BITS

__all__ = ["ProtocolEngine"]


def _byte(value, index, count):
    """Byte ``index`` of the ``count`` bytes of ``value``, selected by the low bits of ``index``."""
    return value.word_select(index[:max(1, (count - 1).bit_length())], 8)


def _at(values, index, offset):
    """``values[index - offset]``, selected by the low bits of ``index`` alone: the table is
    rotated by ``offset``, so no subtraction (``index - offset`` must be in range)."""
    bits = max(1, (len(values) - 1).bit_length())
    table = [Const(0, 8)] * (1 << bits)
    for j, value in enumerate(values):
        table[(j + offset) % (1 << bits)] = value
    return Array(table)[index[:bits]]


def _bytes(value):
    """The bytes of ``value``, least significant first."""
    return [value.word_select(j, 8) for j in range(len(value) // 8)]


def _count(counter):
    """A saturating increment of ``counter``."""
    return counter.eq(counter + ~counter.all())


class ProtocolEngine(wiring.Component):
    """The whole design behind a byte stream, with a receive window of ``window`` bytes.

    Ports: ``i``/``o`` bytes from/to the link (``i`` always ready); ``uart_frame_errors``/
    ``uart_overruns`` counters of the PHY (reported by STATUS); ``busy`` while a job runs.

    A RUN's configuration check takes ``sum_l G_l + 2`` cycles (``G_l = ceil(N_l / lanes)``, at
    most ``max_layers * max_groups + 2``) from its last byte to the job's start. A JOB's takes one
    more (the size of its answer), once its input is unpacked: a bit a cycle, and a cycle for each
    value written. ``docs/protocol.md`` has the order of the checks and the ABORT.

    For the clock (``docs/boards.md``, what limits Fmax), the long comparisons end in registers:
    each response byte is chosen in the cycle before it is offered to the encoder (FETCH, which
    also reads the results memory), a READ's check and a WRITE element's check take a cycle of
    their own before the answer or the write, the bad-request count follows a cycle after the
    refusal, and the answer's end is a down-counter reaching 0.
    """

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    uart_frame_errors: In(16)
    uart_overruns: In(16)
    busy: Out(1)

    def __init__(self, config=EngineConfig(), max_payload=MAX_PAYLOAD, window=WINDOW):
        self.config, self.max_payload, self.window = config, max_payload, window
        self.identify = identify_body(config, max_payload, window=window)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.window = win = ReceiveWindow(self.window)
        # The decoder is reset by an ABORT; the frame error counters live here, so they stay.
        dec = FrameDecoder(self.max_payload)
        dec_reset = Signal()
        m.submodules.decoder = ResetInserter(dec_reset)(dec)
        m.submodules.encoder = enc = FrameEncoder(self.max_payload)
        m.submodules.engine = engine = LayerEngine(c)
        wiring.connect(m, wiring.flipped(self.i), win.i)
        wiring.connect(m, enc.o, wiring.flipped(self.o))
        m.d.comb += self.busy.eq(engine.busy)

        # ---- a frame error is answered when the engine is next between requests, and the
        # decoder takes no byte past it until then: every frame is answered in its place ------
        frame_error = Signal()
        with m.If(dec.error):
            m.d.sync += frame_error.eq(1)
        gate = frame_error | dec.error
        m.d.comb += [dec.i.payload.eq(win.o.payload), dec.i.valid.eq(win.o.valid & ~gate),
                     win.o.ready.eq(dec.i.ready & ~gate)]

        # ---- ABORT: seen by the window on the line, handled when between requests -------------
        abort_pending = Signal()
        with m.If(win.abort):
            m.d.sync += abort_pending.eq(1)
        aborting = abort_pending | win.abort
        # Frames the window lost and OVERFLOW answered: one answer per lost frame.
        overflows_answered = Signal.like(win.overflows)

        # ---- the last job's counts -------------------------------------------------------------
        results = memory.Memory(shape=COUNT_BITS, depth=c.max_width, init=[])
        m.submodules.results = results
        res_w, res_r = results.write_port(), results.read_port()
        result_count = Signal(range(c.max_width + 1))
        run_response = Signal(RUN_RESPONSE)

        # ---- the RUN check: the network the configuration describes, and whether it fits -------
        network = engine.network
        fit_layer = Signal(range(c.max_layers))              # the check is at layer fit_layer + 1
        fit_group = Signal(range(c.max_groups))
        fit_in = network.sizes[fit_layer]                    # N_(l-1)
        wb = c.inputs_per_cycle.bit_length() - 1
        fit_in_words = (fit_in + (c.inputs_per_cycle - 1)) >> wb    # ceil(N_(l-1) / W)
        fit_out = network.sizes[fit_layer + 1]               # N_l
        most = c.max_layers * c.max_groups                   # groups of the largest network
        fit_words = Signal(range(most * max(c.max_inputs, c.max_width) + 1))
        fit_entries = Signal(range(most + 1))
        # A register, not logic: the abort fans out to the reset of every job register.
        abort = Signal()
        m.d.sync += abort.eq(0)
        m.d.comb += engine.abort.eq(abort)

        # ---- counters --------------------------------------------------------------------------
        bad_requests = Signal(STATUS_RESPONSE["bad_requests"].shape)
        jobs = Signal(STATUS_RESPONSE["jobs"].shape)
        frame_errors = {kind: Signal(STATUS_RESPONSE[name].shape, name=name) for kind, name in (
            (FrameError.COBS, "cobs_errors"), (FrameError.LENGTH, "length_errors"),
            (FrameError.CRC, "crc_errors"))}
        for kind, counter in frame_errors.items():
            with m.If(dec.error & (dec.error_kind == kind)):
                m.d.sync += _count(counter)
        status_response = Signal(STATUS_RESPONSE)
        counters = {counter.name: counter for counter in frame_errors.values()}
        counters.update(bad_requests=bad_requests, uart_frame_errors=self.uart_frame_errors,
                        uart_overruns=self.uart_overruns, overflows=win.overflows, jobs=jobs)
        m.d.comb += [status_response[name].eq(counters[name]) for name, _ in STATUS_RESPONSE]

        # ---- the noise table's hash: the CRC of what lane 0's table holds ----------------------
        m.submodules.noise_crc = noise_crc = HASH_PARAMETERS.create()
        noise_hash = Signal(32, init=c.noise.hash)
        noise_dirty = Signal()            # NOISE entries written since the hash was computed
        hash_entry = Signal(range(ENTRIES))
        hash_bit = Signal(5)
        # The entry being hashed, as 32 bits: the table's read port reads it again every cycle
        # while its en is held (each entry is read for 34 cycles), so no copy is kept.
        hash_word = Cat(engine.table_data, Const(0, 32 - len(engine.table_data)))
        m.d.comb += engine.table_read.addr.eq(hash_entry)

        # ---- request state ---------------------------------------------------------------------
        response = Signal(RESPONSE_HEADER)
        seq, status = response.seq, response.status
        opcode = Signal(8)
        count = Signal(range(self.max_payload + 1))    # body bytes seen
        # WRITE's header, as it arrives: the region's low bits (a region above the last is
        # refused at its byte), and the address in as many bits as the deepest region needs,
        # with a sticky bit above them for any address beyond (none is in range).
        region = Signal(3)
        addr_bits = max((max(c.depth(r) for r in Region) - 1).bit_length(),
                        max(c.max_inputs, c.max_width).bit_length())
        addr = Signal(addr_bits + 1)
        widest = max(element_bytes(r, c) for r in Region)
        element = Signal(8 * widest)
        element_byte = Signal(range(widest))
        last_taken = Signal()       # the byte taken last ended the frame (a WRITE's or a JOB's)
        # RUN's (JOB's) and READ's bodies in one register: a RUN or JOB writes its whole body,
        # and a READ has no use for the seed.
        request_body = Signal(8 * nbytes(RUN_REQUEST))
        run_request = RUN_REQUEST(request_body)
        assert JOB_REQUEST == RUN_REQUEST
        seed, samples = run_request.seed, run_request.samples
        read_request = READ_REQUEST(request_body[:READ_REQUEST.size])
        assert READ_REQUEST.size <= RUN_REQUEST["seed"].offset + SEED_BITS
        read_offset, read_count = read_request.offset, read_request.count
        error_body = Signal(8)      # the one body byte of BAD_FRAME (the kind), BAD_VERSION
        left = Signal(range(self.max_payload + 2))      # response bytes after the one at k
        k = Signal(range(self.max_payload + 3))         # response byte index

        byte = dec.o.payload.data
        last = dec.o.payload.last

        # A JOB's input: value addr (INPUT[addr]) gathers its bits in element, one bit a cycle
        # from bit in_bit of the byte the decoder offers, which is taken after its last bit.
        ib = c.input_bits
        value_n = Signal(range(ib + 1))                 # bits of the value so far
        in_bit = Signal(3)
        offered_bit = byte.bit_select(in_bit, 1)
        n_in = network.sizes[0]
        inputs_in = addr[:len(n_in)] == n_in            # all N_0 values written

        # A JOB's answer: count_bits(S) = bit length of S, the counts' width; at most most_counts
        # counts of that width fit the answer frame (a table by width: no multiplier).
        bits = Signal(range(SAMPLE_BITS + 1))
        for b in range(SAMPLE_BITS):
            with m.If(samples[b]):
                m.d.comb += bits.eq(b + 1)
        header_bytes = nbytes(RESPONSE_HEADER)
        most_counts = Signal(range(c.max_width + 1))

        def fitting(width):
            return [n for n in range(c.max_width + 1)
                    if header_bytes + job_answer_bytes(n, 1 << (width - 1)) <= self.max_payload]

        with m.Switch(bits):
            for b in range(1, SAMPLE_BITS + 1):
                if fitting(b):
                    with m.Case(b):
                        m.d.comb += most_counts.eq(max(fitting(b)))
        # In a register (samples is in place cycles before JOB_SIZE reads it).
        most_r = Signal.like(most_counts)
        m.d.sync += most_r.eq(most_counts)
        # (with under 6 bytes of payload, no JOB answer fits, whatever its width)
        answer_fits = (fit_out <= most_r) if fitting(SAMPLE_BITS) else Const(0)
        # A byte of packed counts fills pack_shift from the top (bit 8), a bit a cycle: it is whole
        # when the marker bit set at its start has reached bit 0, below it.
        pack_shift = Signal(9, init=1 << 8)
        pack_bit = Signal(range(COUNT_BITS))    # the next bit of the count at res_index
        pack_stale = Signal()                   # the results memory is reading the next count
        pack_last = Signal()                    # the packed byte is the answer's last
        m.d.sync += pack_stale.eq(0)

        # Elements of a WRITE: width and depth of each region.
        elem_bytes = Array(Const(element_bytes(r, c), range(widest + 1)) for r in Region)
        n_elem_bytes = elem_bytes[region]
        # An element has no bits above its region's word: the bytes past its own are still 0
        # (element is cleared at the opcode and a WRITE has one region), so only the bits of its
        # last byte above the word need a look. The address against the region's depth, a
        # constant: one small comparison per region.
        value_ok, in_range = Signal(), Signal()
        with m.Switch(region):
            for r in Region:
                with m.Case(r):
                    w, top = c.word_bits(r), 8 * element_bytes(r, c)
                    m.d.comb += [value_ok.eq(~element[w:top].any() if w < top else 1),
                                 in_range.eq(addr < c.depth(r))]
        config_ok = Signal()
        step = addr[:addr_bits] + 1     # the next address; beyond addr_bits it sticks
        next_addr = addr.eq(Cat(step[:addr_bits], addr[addr_bits] | step[addr_bits]))
        limit = Signal(CONFIG_BITS)
        limits = config_limits(c)      # CONFIG address a takes 1 .. limits[min(a, 2)]
        with m.Switch(addr):
            for a, value in enumerate(limits[:-1]):
                with m.Case(a):
                    m.d.comb += limit.eq(value)
            with m.Default():
                m.d.comb += limit.eq(limits[-1])
        config_value = element[:CONFIG_BITS]       # (a CONFIG element's bytes)
        assert 8 * element_bytes(Region.CONFIG, c) == CONFIG_BITS
        m.d.comb += config_ok.eq((config_value != 0) & (config_value <= limit))
        m.d.comb += [engine.write.payload.region.eq(region),
                     engine.write.payload.addr.eq(addr[:addr_bits]),
                     engine.write.payload.data.eq(element)]

        # Response bytes: the header (seq, status), then the body of the command.
        count_bytes = nbytes(READ_ELEMENT)
        assert count_bytes & (count_bytes - 1) == 0     # a count's bytes: low bits of the index
        # The byte at k is chosen in FETCH, the cycle before SEND offers it, into a register
        # (rsp_reg); the counts of READ and JOB come from registers of their own: the results
        # memory's read port, read in FETCH, and pack_shift.
        rsp_byte = Signal(8)
        rsp_reg = Signal(8)
        from_memory = Signal()      # a READ's body byte: a byte of the count res_r reads
        from_pack = Signal()        # a JOB's packed byte, made in PACK
        cycles_byte = _at(_bytes(run_response.as_value()), k, header_bytes)
        carry = Signal()            # adding 1 to the job's cycles: the carry into byte k
        with m.If(k < header_bytes):
            m.d.comb += rsp_byte.eq(_byte(response.as_value(), k, header_bytes))
        with m.Elif(status != Status.OK):
            m.d.comb += rsp_byte.eq(error_body)
        with m.Else():
            # Body byte j is response byte k = header_bytes + j: each table is indexed by k.
            with m.Switch(opcode):
                with m.Case(Opcode.IDENTIFY):
                    # the build's bytes, but the live hash of the noise table
                    at = IDENTIFY_RESPONSE["noise_hash"].offset // 8
                    assert at + 4 == len(self.identify)
                    body = [Const(b, 8) for b in self.identify[:at]] + _bytes(noise_hash)
                    m.d.comb += rsp_byte.eq(_at(body, k, header_bytes))
                with m.Case(Opcode.STATUS):
                    m.d.comb += rsp_byte.eq(_at(_bytes(status_response.as_value()), k,
                                                header_bytes))
                with m.Case(Opcode.RUN, Opcode.JOB):
                    # The job's cycles: the engine's count + 1, added a byte at a time as they
                    # go out, least significant first (a JOB's packed counts come from PACK).
                    assert JOB_RESPONSE == RUN_RESPONSE
                    m.d.comb += rsp_byte.eq(cycles_byte + carry)
                # (READ: from the results memory, read in FETCH)
        # READ steps read_offset on as its answer goes out, JOB as it packs the counts: either way
        # below max_width, in its low bits.
        res_index = read_offset[:len(result_count)]
        m.d.comb += res_r.addr.eq(res_index)

        # An answer is started in one place, whichever state starts it: a mux of small codes and
        # lengths, not one of the answer registers per state.
        answer = Signal()
        answer_status = Signal(Status)
        answer_len = Signal.like(left)     # the body's bytes + 1: the bytes after the first
        refused = Signal()
        refused_r = Signal()        # counted a cycle later: no path from the checks to the count
        read_bad = Signal()
        write_ok = Signal()
        m.d.sync += refused_r.eq(refused)
        with m.If(answer):
            m.d.sync += [status.eq(answer_status), left.eq(answer_len), k.eq(0), carry.eq(1)]
        with m.If(refused_r):
            m.d.sync += _count(bad_requests)

        def respond(m, code, length=0):
            m.d.comb += [answer.eq(1), answer_status.eq(code), answer_len.eq(length + 1)]
            m.next = "FETCH"

        def refuse(m, code, at_last, length=0):
            """Count a bad request; answer now if this was its last byte, else skip to the end."""
            m.d.comb += [answer.eq(1), refused.eq(1), answer_status.eq(code),
                         answer_len.eq(length + 1)]
            with m.If(at_last):
                m.next = "FETCH"
            with m.Else():
                m.next = "DISCARD"

        fit_start = Signal()
        fit_unset = Signal()        # the walk met a size never written: refused at START
        with m.If(fit_start):
            m.d.sync += [fit_layer.eq(0), fit_group.eq(0), fit_words.eq(0), fit_entries.eq(0),
                         fit_unset.eq(0)]

        def start_fit(m):
            m.d.comb += fit_start.eq(1)
            m.next = "FIT"

        with m.FSM(name="protocol"):
            with m.State("IDLE"):
                with m.If(aborting):
                    # Whatever is queued or pending goes; nothing else is answered before it.
                    m.d.comb += [win.flush.eq(1), dec_reset.eq(1)]
                    m.d.sync += [abort_pending.eq(0), frame_error.eq(0),
                                 overflows_answered.eq(win.overflows), seq.eq(ABORT_SEQ)]
                    respond(m, Status.ABORTED)
                with m.Elif(frame_error):
                    m.d.sync += [frame_error.eq(0), error_body.eq(dec.error_kind),
                                 seq.eq(UNREADABLE_SEQ)]
                    respond(m, Status.BAD_FRAME, 1)
                with m.Elif(win.overflows != overflows_answered):
                    m.d.sync += [overflows_answered.eq(overflows_answered + 1),
                                 seq.eq(UNREADABLE_SEQ)]
                    respond(m, Status.OVERFLOW)
                with m.Else():
                    m.d.comb += dec.o.ready.eq(1)
                    with m.If(dec.o.valid):
                        m.d.sync += seq.eq(byte)
                        with m.If(last):
                            refuse(m, Status.BAD_LENGTH, 1)
                        with m.Else():
                            m.next = "OPCODE"
            # The hash: each entry read (a cycle), a cycle more, its 32 bits into the CRC, least
            # significant first (the little-endian bytes' bits in CRC-32/ISO-HDLC's order). The
            # entry is read on every cycle of its 34, at the same address, so its word stays on
            # table_data (the read port is the noise generator's, whose codes it leaves undefined).
            with m.State("HASH_READ"):
                m.d.comb += engine.table_read.en.eq(1)
                m.next = "HASH_LATCH"
            with m.State("HASH_LATCH"):
                m.d.comb += engine.table_read.en.eq(1)
                m.d.sync += hash_bit.eq(0)
                m.next = "HASH_FEED"
            with m.State("HASH_FEED"):
                m.d.comb += engine.table_read.en.eq(1)
                m.d.comb += [noise_crc.valid.eq(1), noise_crc.data.eq(hash_word.bit_select(
                                 hash_bit, 1)),
                             noise_crc.start.eq((hash_entry == 0) & (hash_bit == 0))]
                m.d.sync += hash_bit.eq(hash_bit + 1)
                with m.If(hash_bit == 31):
                    m.d.sync += hash_entry.eq(hash_entry + 1)
                    m.next = "HASH_NEXT"
            with m.State("HASH_NEXT"):
                with m.If(hash_entry == 0):     # wrapped: all 256 fed, the CRC is out now
                    m.d.sync += noise_hash.eq(noise_crc.crc)
                    respond(m, Status.OK, len(self.identify))
                with m.Else():
                    m.d.comb += engine.table_read.en.eq(1)
                    m.next = "HASH_LATCH"
            with m.State("OPCODE"):
                m.d.comb += dec.o.ready.eq(1)
                with m.If(dec.o.valid):
                    # A request starts clean: a refused WRITE leaves no element bits behind, and
                    # a JOB writes its inputs from INPUT[0] on.
                    m.d.sync += [opcode.eq(byte), count.eq(0), element_byte.eq(0), element.eq(0),
                                 region.eq(Region.INPUT), addr.eq(0), value_n.eq(0),
                                 in_bit.eq(0)]
                    with m.Switch(byte):
                        with m.Case(Opcode.IDENTIFY):
                            with m.If(last & noise_dirty):  # hash the table first
                                m.d.sync += [noise_dirty.eq(0), hash_entry.eq(0)]
                                m.next = "HASH_READ"
                            with m.Elif(last):
                                respond(m, Status.OK, len(self.identify))
                            with m.Else():
                                refuse(m, Status.BAD_LENGTH, 0)
                        with m.Case(Opcode.STATUS):
                            with m.If(last):
                                respond(m, Status.OK, nbytes(STATUS_RESPONSE))
                            with m.Else():
                                refuse(m, Status.BAD_LENGTH, 0)
                        with m.Case(Opcode.SYNC):
                            with m.If(last):
                                respond(m, Status.OK)
                            with m.Else():
                                refuse(m, Status.BAD_LENGTH, 0)
                        with m.Case(Opcode.WRITE, Opcode.RUN, Opcode.READ, Opcode.JOB):
                            with m.If(last):
                                refuse(m, Status.BAD_LENGTH, 1)
                            with m.Else():
                                m.next = "BODY"
                        with m.Case(Opcode.ABORT):  # not ABORT_FRAME (the window caught that)
                            m.d.sync += error_body.eq(FORMAT_VERSION)
                            refuse(m, Status.BAD_VERSION, last, 1)
                        with m.Default():
                            refuse(m, Status.BAD_OPCODE, last)
            with m.State("BODY"):
                m.d.comb += dec.o.ready.eq(1)
                with m.If(dec.o.valid):
                    m.d.sync += count.eq(count + 1)
                    with m.Switch(opcode):
                        # RUN and READ: a body of exactly their layout's bytes, byte by byte.
                        for op, body, check in ((Opcode.RUN, run_request, "RUN_CHECK"),
                                                (Opcode.READ, read_request, "READ_CHECK")):
                            with m.Case(op):
                                n = nbytes(body.shape())
                                m.d.sync += _byte(body.as_value(), count, n).eq(byte)
                                with m.If(last):
                                    with m.If(count != n - 1):
                                        refuse(m, Status.BAD_LENGTH, 1)
                                    with m.Else():
                                        m.next = check
                                with m.Elif(count == n - 1):
                                    refuse(m, Status.BAD_LENGTH, 0)
                        with m.Case(Opcode.JOB):    # JOB_REQUEST, then the input (JOB_INPUT)
                            n = nbytes(JOB_REQUEST)
                            m.d.sync += _byte(run_request.as_value(), count, n).eq(byte)
                            with m.If(count == n - 1):
                                m.d.sync += last_taken.eq(last)
                                m.next = "JOB_INPUT"
                            with m.Elif(last):
                                refuse(m, Status.BAD_LENGTH, 1)
                        with m.Case(Opcode.WRITE):  # the header, then elements
                            n = nbytes(WRITE_HEADER)
                            with m.If(count < n):
                                assert WRITE_HEADER["region"].offset == 0
                                assert WRITE_HEADER["addr"].offset == 8
                                with m.Switch(count):
                                    with m.Case(0):
                                        m.d.sync += region.eq(byte)
                                    for b in range(n - 1):
                                        with m.Case(1 + b):     # address bits 8b .. 8b + 7
                                            low = min(8, max(0, addr_bits - 8 * b))
                                            if low:
                                                m.d.sync += addr[8 * b:8 * b + low].eq(byte)
                                            if low < 8:
                                                with m.If(byte[low:].any()):
                                                    m.d.sync += addr[addr_bits].eq(1)
                                with m.If((count == WRITE_HEADER["region"].offset // 8)
                                          & (byte > max(r.value for r in Region))):
                                    refuse(m, Status.OUT_OF_RANGE, last)
                                with m.Elif(last):
                                    refuse(m, Status.BAD_LENGTH, 1)
                            with m.Else():
                                m.d.sync += [element.word_select(element_byte, 8).eq(byte),
                                             element_byte.eq(element_byte + 1)]

                                with m.If(element_byte == n_elem_bytes - 1):
                                    m.d.sync += [element_byte.eq(0), last_taken.eq(last)]
                                    m.next = "WRITE_CHECK"
                                with m.Elif(last):
                                    refuse(m, Status.BAD_LENGTH, 1)
            with m.State("WRITE_CHECK"):
                # The element is complete: is it in range (into a register), then write it.
                m.d.sync += write_ok.eq(in_range & value_ok
                                        & ((region != Region.CONFIG.value) | config_ok))
                m.next = "WRITE_ELEMENT"
            with m.State("WRITE_ELEMENT"):
                with m.If(~write_ok):
                    refuse(m, Status.OUT_OF_RANGE, last_taken)
                with m.Else():
                    m.d.comb += engine.write.valid.eq(1)
                    with m.If(engine.write.ready):
                        m.d.sync += next_addr
                        with m.If(region == Region.NOISE.value):
                            m.d.sync += noise_dirty.eq(1)
                        with m.If(last_taken):
                            respond(m, Status.OK)
                        with m.Else():
                            m.next = "BODY"
            with m.State("JOB_INPUT"):
                # The checks in their order: the padding bits at the byte that holds them, a
                # body too long at its first extra byte, too short at the frame's end.
                with m.If(value_n == ib):
                    m.d.comb += engine.write.valid.eq(1)    # INPUT[addr]
                    with m.If(engine.write.ready):
                        m.d.sync += [next_addr, value_n.eq(0)]
                with m.Elif(inputs_in & (in_bit == 0)):     # the input is in, its last byte taken
                    with m.If(last_taken):
                        m.next = "RUN_CHECK"
                    with m.Else():
                        refuse(m, Status.BAD_LENGTH, 0)     # (DISCARD takes the extra bytes)
                with m.Elif(last_taken):                    # more input needed, the frame ended
                    refuse(m, Status.BAD_LENGTH, 1)
                with m.Elif(inputs_in & offered_bit):       # a padding bit set
                    refuse(m, Status.OUT_OF_RANGE, 0)
                with m.Elif(dec.o.valid):                   # the next bit: input or padding
                    m.d.sync += in_bit.eq(in_bit + 1)
                    with m.If(~inputs_in):
                        m.d.sync += [element[:ib].eq(Cat(element[1:ib], offered_bit)),
                                     value_n.eq(value_n + 1)]
                    with m.If(in_bit == 7):
                        m.d.comb += dec.o.ready.eq(1)
                        m.d.sync += last_taken.eq(last)
            with m.State("RUN_CHECK"):
                with m.If(network.layers == 0):
                    refuse(m, Status.NO_MODEL, 1)
                with m.Elif(samples == 0):
                    refuse(m, Status.OUT_OF_RANGE, 1)
                with m.Elif(opcode == Opcode.JOB):
                    m.d.sync += fit_layer.eq(network.layers - 1)    # fit_out is N_L next
                    m.next = "JOB_SIZE"
                with m.Else():
                    start_fit(m)
            with m.State("JOB_SIZE"):
                with m.If(~answer_fits):
                    refuse(m, Status.OUT_OF_RANGE, 1)
                with m.Else():
                    start_fit(m)
            with m.State("FIT"):
                # One group of layer fit_layer + 1 per cycle: its ceil(N_(l-1) / W) weight words
                # and one parameter entry (memory_map.network_words without a multiplier). A size never
                # written (0) is noted and refused at START: the walk still ends (a layer of
                # size 0 takes a cycle), and no answer leaves from here.
                with m.If((fit_in == 0) | (fit_out == 0)):
                    m.d.sync += fit_unset.eq(1)
                m.d.sync += [fit_words.eq(fit_words + fit_in_words),
                             fit_entries.eq(fit_entries + 1), fit_group.eq(fit_group + 1)]
                with m.If(((fit_group + 1) << c.lane_bits) >= fit_out):
                    m.d.sync += [fit_layer.eq(fit_layer + 1), fit_group.eq(0)]
                    with m.If(fit_layer + 1 == network.layers):
                        m.next = "START"
            with m.State("START"):
                with m.If(fit_unset | (fit_words > c.weight_depth)
                          | (fit_entries > c.param_depth)):
                    refuse(m, Status.BAD_CONFIG, 1)
                with m.Else():
                    m.d.comb += [engine.start.valid.eq(1),
                                 engine.start.payload.seed.eq(seed),
                                 engine.start.payload.samples.eq(samples)]
                    with m.If(engine.start.ready):
                        m.d.sync += result_count.eq(0)
                        m.next = "RUNNING"
            with m.State("RUNNING"):
                with m.If(aborting):
                    # Stopped: no answer, and its counts are gone. IDLE answers the ABORT.
                    m.d.sync += [abort.eq(1), result_count.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [engine.result.ready.eq(1), res_w.addr.eq(result_count),
                                 res_w.data.eq(engine.result.payload.count),
                                 res_w.en.eq(engine.result.valid)]
                    with m.If(engine.result.valid):
                        m.d.sync += result_count.eq(result_count + 1)
                        with m.If(engine.result.payload.last):
                            m.d.sync += [jobs.eq(jobs + 1),
                                         run_response.cycles.eq(engine.cycles),
                                         read_offset.eq(0), pack_bit.eq(0)]
                            # A JOB's answer ends with its packed counts (pack_last), before
                            # this length.
                            respond(m, Status.OK, Mux(opcode == Opcode.JOB, self.max_payload,
                                                      nbytes(RUN_RESPONSE)))
            with m.State("READ_CHECK"):
                # The check into a register (its adder and comparisons are long), then the answer.
                fits = header_bytes + count_bytes * read_count <= self.max_payload
                m.d.sync += read_bad.eq((read_count == 0) | ~fits
                                        | (read_offset + read_count > result_count))
                m.next = "READ_ANSWER"
            with m.State("READ_ANSWER"):
                with m.If(read_bad):
                    refuse(m, Status.OUT_OF_RANGE, 1)
                with m.Else():
                    respond(m, Status.OK, count_bytes * read_count)
            with m.State("DISCARD"):
                m.d.comb += dec.o.ready.eq(1)
                with m.If(dec.o.valid & last):
                    m.next = "FETCH"
            with m.State("FETCH"):
                # One cycle for the result memory's read, and the byte's choice.
                m.d.sync += [rsp_reg.eq(rsp_byte), from_pack.eq(0),
                             from_memory.eq((opcode == Opcode.READ) & (status == Status.OK)
                                            & (k >= header_bytes))]
                with m.If(k >= header_bytes):
                    m.d.sync += carry.eq(carry & cycles_byte.all())
                m.next = "SEND"
            with m.State("PACK"):
                # The next byte of a JOB's counts, a bit a cycle, zeros after the last count.
                pulled = res_index == result_count
                with m.If(pack_shift[0]):
                    m.d.sync += [pack_last.eq(pulled), from_pack.eq(1)]
                    m.next = "SEND"
                with m.Elif(~pack_stale):
                    m.d.sync += pack_shift.eq(Cat(pack_shift[1:],
                                                  ~pulled & res_r.data.bit_select(pack_bit, 1)))
                    with m.If(~pulled):
                        m.d.sync += pack_bit.eq(pack_bit + 1)
                        with m.If(pack_bit == bits - 1):
                            m.d.sync += [pack_bit.eq(0), res_index.eq(res_index + 1),
                                         pack_stale.eq(1)]
            with m.State("SEND"):
                final = (left == 0) | pack_last
                send_byte = Mux(from_memory, _at(_bytes(res_r.data), k, header_bytes),
                                Mux(from_pack, pack_shift[1:], rsp_reg))
                m.d.comb += [enc.i.valid.eq(1), enc.i.payload.data.eq(send_byte),
                             enc.i.payload.last.eq(final)]
                with m.If(enc.i.ready):
                    m.d.sync += [k.eq(k + 1), left.eq(left - 1), pack_shift.eq(pack_shift.init)]
                    cb = (count_bytes - 1).bit_length()     # the last byte of a count:
                    count_end = (count_bytes - 1 + header_bytes) % count_bytes
                    with m.If((opcode == Opcode.READ) & (k >= header_bytes)
                              & ((k[:cb] == count_end) if cb else Const(1))):
                        m.d.sync += res_index.eq(res_index + 1)
                    with m.If(final):
                        m.d.sync += pack_last.eq(0)
                        m.next = "IDLE"
                    with m.Elif((opcode == Opcode.JOB) & (status == Status.OK)
                                & (k >= header_bytes + nbytes(JOB_RESPONSE) - 1)):
                        m.next = "PACK"
                    with m.Else():
                        m.next = "FETCH"
        return m

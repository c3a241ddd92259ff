"""The protocol engine: frames in, frames out, a layer engine in between (``docs/protocol.md``).

Bytes from the link go through a :class:`~spinemu.hdl.framing.FrameDecoder` (which releases only
whole frames with a good CRC); the command is parsed byte by byte as it streams, executed, and
answered through a :class:`~spinemu.hdl.framing.FrameEncoder`. Bad frames and bad requests get an
error response and the engine goes on; a WRITE element too wide for its memory is refused (nothing
is silently truncated), though elements before it in the same frame have been written. Every
request starts from clean state, so a refused one leaves nothing behind.

A RUN starts a job only on a complete configuration that fits the memories: a check walks the
network's groups, one per cycle, adding up its weight words and parameter entries. While a job
runs, any new frame (a good one, or a frame error) aborts it: the RUN is answered ABORTED and the
new frame is then handled as usual.

IDENTIFY reports the noise table by its hash, the CRC-32 of the table's 1024 bytes as it is held:
the first IDENTIFY after NOISE writes reads lane 0's table back, entry by entry, and computes the
hash (34 cycles an entry, a bit a cycle) before it answers.
"""

from amaranth.hdl import Array, Const, Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .engine import LayerEngine
from .framing import MAX_PAYLOAD, FrameDecoder, FrameEncoder
from .memory_map import CONFIG_BITS, COUNT_BITS, EngineConfig, Region
from .noise_table import ENTRIES, HASH_PARAMETERS
from .protocol import (
    IDENTIFY_RESPONSE,
    READ_ELEMENT,
    READ_REQUEST,
    RESPONSE_HEADER,
    RUN_REQUEST,
    RUN_RESPONSE,
    STATUS_RESPONSE,
    UNREADABLE_SEQ,
    WRITE_HEADER,
    Opcode,
    Status,
    config_limits,
    element_bytes,
    identify_body,
    nbytes,
)

__all__ = ["ProtocolEngine"]


def _byte(value, index, count):
    """Byte ``index`` of the ``count`` bytes of ``value``, selected by the low bits of ``index``."""
    return value.word_select(index[:max(1, (count - 1).bit_length())], 8)


class ProtocolEngine(wiring.Component):
    """The whole design behind a byte stream.

    Ports: ``i``/``o`` bytes from/to the link; ``uart_frame_errors``/``uart_overruns`` counters of
    the PHY (reported by STATUS); ``busy`` while a job runs.

    A RUN's configuration check takes ``sum_l G_l + 2`` cycles (``G_l = ceil(N_l / lanes)``, at
    most ``max_layers * max_groups + 2``) before the job starts; ``docs/protocol.md`` has the order
    of the checks and the abort.
    """

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    uart_frame_errors: In(16)
    uart_overruns: In(16)
    busy: Out(1)

    def __init__(self, config=EngineConfig(), max_payload=MAX_PAYLOAD):
        self.config, self.max_payload = config, max_payload
        self.identify = identify_body(config, max_payload)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.decoder = dec = FrameDecoder(self.max_payload)
        m.submodules.encoder = enc = FrameEncoder(self.max_payload)
        m.submodules.engine = engine = LayerEngine(c)
        wiring.connect(m, wiring.flipped(self.i), dec.i)
        wiring.connect(m, enc.o, wiring.flipped(self.o))
        m.d.comb += self.busy.eq(engine.busy)

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
        status_response = Signal(STATUS_RESPONSE)
        counters = {"cobs_errors": dec.cobs_errors, "length_errors": dec.length_errors,
                    "crc_errors": dec.crc_errors, "bad_requests": bad_requests,
                    "uart_frame_errors": self.uart_frame_errors,
                    "uart_overruns": self.uart_overruns, "jobs": jobs}
        m.d.comb += [status_response[name].eq(counters[name]) for name, _ in STATUS_RESPONSE]

        # ---- the noise table's hash: the CRC of what lane 0's table holds ----------------------
        m.submodules.noise_crc = noise_crc = HASH_PARAMETERS.create()
        noise_hash = Signal(32, init=c.noise.hash)
        noise_dirty = Signal()            # NOISE entries written since the hash was computed
        hash_entry = Signal(range(ENTRIES))
        hash_bit = Signal(5)
        hash_word = Signal(32)
        m.d.comb += engine.table_read.addr.eq(hash_entry)

        # ---- a frame error is answered when the engine is next between requests ----------------
        frame_error = Signal()
        frame_error_kind = Signal(8)
        with m.If(dec.error):
            m.d.sync += [frame_error.eq(1), frame_error_kind.eq(dec.error_kind)]

        # ---- request state ---------------------------------------------------------------------
        response = Signal(RESPONSE_HEADER)
        seq, status = response.seq, response.status
        opcode = Signal(8)
        count = Signal(range(self.max_payload + 1))    # body bytes seen
        write_header = Signal(WRITE_HEADER)
        region, addr = write_header.region, write_header.addr
        widest = max(element_bytes(r, c) for r in Region)
        element = Signal(8 * widest)
        element_byte = Signal(range(widest))
        element_last = Signal()                         # the element ended the frame
        run_request = Signal(RUN_REQUEST)
        seed, samples = run_request.seed, run_request.samples
        read_request = Signal(READ_REQUEST)
        read_offset, read_count = read_request.offset, read_request.count
        body_len = Signal(range(self.max_payload + 1))  # response body bytes
        k = Signal(range(self.max_payload + 3))         # response byte index

        byte = dec.o.payload.data
        last = dec.o.payload.last

        # Elements of a WRITE: width and depth of each region.
        elem_bytes = Array(Const(element_bytes(r, c), range(widest + 1)) for r in Region)
        elem_bits = Array(Const(c.word_bits(r), 16) for r in Region)
        depth = Array(Const(c.depth(r), len(addr)) for r in Region)
        n_elem_bytes = elem_bytes[region[:3]]
        value_ok = (element >> elem_bits[region[:3]]) == 0
        config_ok = Signal()
        limit = Signal(CONFIG_BITS)
        limits = config_limits(c)      # CONFIG address a takes 1 .. limits[min(a, 2)]
        with m.Switch(addr):
            for a, value in enumerate(limits[:-1]):
                with m.Case(a):
                    m.d.comb += limit.eq(value)
            with m.Default():
                m.d.comb += limit.eq(limits[-1])
        m.d.comb += config_ok.eq((element != 0) & (element <= limit))
        m.d.comb += [engine.write.payload.region.eq(region[:3]),
                     engine.write.payload.addr.eq(addr),
                     engine.write.payload.data.eq(element)]

        # Response bytes: the header (seq, status), then the body of the command.
        header_bytes = nbytes(RESPONSE_HEADER)
        count_bytes = nbytes(READ_ELEMENT)
        assert count_bytes & (count_bytes - 1) == 0     # a count's index: a shift
        rsp_byte = Signal(8)
        body_index = Signal(range(self.max_payload + 1))
        m.d.comb += body_index.eq(k - header_bytes)
        with m.If(k < header_bytes):
            m.d.comb += rsp_byte.eq(_byte(response.as_value(), k, header_bytes))
        with m.Elif(status != Status.OK):
            m.d.comb += rsp_byte.eq(frame_error_kind)         # BAD_FRAME's one body byte
        with m.Else():
            with m.Switch(opcode):
                with m.Case(Opcode.IDENTIFY):
                    # the build's bytes, but the live hash of the noise table
                    at = IDENTIFY_RESPONSE["noise_hash"].offset // 8
                    assert at + 4 == len(self.identify)
                    rom = Array(Const(b, 8) for b in self.identify[:at])
                    with m.If(body_index < at):
                        m.d.comb += rsp_byte.eq(rom[body_index])
                    with m.Else():
                        m.d.comb += rsp_byte.eq(_byte(noise_hash, body_index - at, 4))
                with m.Case(Opcode.STATUS):
                    m.d.comb += rsp_byte.eq(_byte(status_response.as_value(), body_index,
                                                  nbytes(STATUS_RESPONSE)))
                with m.Case(Opcode.RUN):
                    m.d.comb += rsp_byte.eq(_byte(run_response.as_value(), body_index,
                                                  nbytes(RUN_RESPONSE)))
                with m.Case(Opcode.READ):
                    m.d.comb += rsp_byte.eq(_byte(res_r.data, body_index, count_bytes))
        m.d.comb += res_r.addr.eq(read_offset + (body_index >> (count_bytes - 1).bit_length()))

        def respond(m, code, length=0):
            m.d.sync += [status.eq(code), body_len.eq(length), k.eq(0)]
            m.next = "FETCH"

        def refuse(m, code, at_last):
            """Count a bad request; answer now if this was its last byte, else skip to the end."""
            m.d.sync += [bad_requests.eq(bad_requests + (bad_requests != 0xFFFF)), status.eq(code)]
            with m.If(at_last):
                m.d.sync += [body_len.eq(0), k.eq(0)]
                m.next = "FETCH"
            with m.Else():
                m.next = "DISCARD"

        with m.FSM(name="protocol"):
            with m.State("IDLE"):
                with m.If(frame_error):
                    m.d.sync += [frame_error.eq(0), seq.eq(UNREADABLE_SEQ), opcode.eq(0)]
                    respond(m, Status.BAD_FRAME, 1)
                with m.Else():
                    m.d.comb += dec.o.ready.eq(1)
                    with m.If(dec.o.valid):
                        m.d.sync += seq.eq(byte)
                        with m.If(last):
                            refuse(m, Status.BAD_LENGTH, 1)
                        with m.Else():
                            m.next = "OPCODE"
            # The hash: each entry read (a cycle), latched (a cycle), its 32 bits into the CRC, least
            # significant first (the little-endian bytes' bits in CRC-32/ISO-HDLC's order).
            with m.State("HASH_READ"):
                m.d.comb += engine.table_read.en.eq(1)
                m.next = "HASH_LATCH"
            with m.State("HASH_LATCH"):
                m.d.sync += [hash_word.eq(engine.table_data), hash_bit.eq(0)]
                m.next = "HASH_FEED"
            with m.State("HASH_FEED"):
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
                    # A request starts clean: a refused WRITE leaves no element bits behind.
                    m.d.sync += [opcode.eq(byte), count.eq(0), element_byte.eq(0), element.eq(0)]
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
                        with m.Case(Opcode.WRITE, Opcode.RUN, Opcode.READ):
                            with m.If(last):
                                refuse(m, Status.BAD_LENGTH, 1)
                            with m.Else():
                                m.next = "BODY"
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
                        with m.Case(Opcode.WRITE):  # the header, then elements
                            n = nbytes(WRITE_HEADER)
                            with m.If(count < n):
                                m.d.sync += _byte(write_header.as_value(), count, n).eq(byte)
                                with m.If((count == WRITE_HEADER["region"].offset // 8)
                                          & (byte > max(r.value for r in Region))):
                                    refuse(m, Status.OUT_OF_RANGE, last)
                                with m.Elif(last):
                                    refuse(m, Status.BAD_LENGTH, 1)
                            with m.Else():
                                m.d.sync += [element.word_select(element_byte, 8).eq(byte),
                                             element_byte.eq(element_byte + 1)]

                                with m.If(element_byte == n_elem_bytes - 1):
                                    m.d.sync += [element_byte.eq(0), element_last.eq(last)]
                                    m.next = "WRITE_CHECK"
                                with m.Elif(last):
                                    refuse(m, Status.BAD_LENGTH, 1)
            with m.State("WRITE_CHECK"):
                # The element is complete: is it in range, then write it.
                ok = (addr < depth[region[:3]]) & value_ok & (
                    (region != Region.CONFIG.value) | config_ok)
                with m.If(~ok):
                    refuse(m, Status.OUT_OF_RANGE, element_last)
                with m.Else():
                    m.d.comb += engine.write.valid.eq(1)
                    with m.If(engine.write.ready):
                        m.d.sync += addr.eq(addr + 1)
                        with m.If(region == Region.NOISE.value):
                            m.d.sync += noise_dirty.eq(1)
                        with m.If(element_last):
                            respond(m, Status.OK)
                        with m.Else():
                            m.next = "BODY"
            with m.State("RUN_CHECK"):
                with m.If(network.layers == 0):
                    refuse(m, Status.NO_MODEL, 1)
                with m.Elif(samples == 0):
                    refuse(m, Status.OUT_OF_RANGE, 1)
                with m.Else():
                    m.d.sync += [fit_layer.eq(0), fit_group.eq(0), fit_words.eq(0),
                                 fit_entries.eq(0)]
                    m.next = "FIT"
            with m.State("FIT"):
                # One group of layer fit_layer + 1 per cycle: its N_(l-1) weight words and one
                # parameter entry (memory_map.network_words without a multiplier).
                with m.If((fit_in == 0) | (fit_out == 0)):
                    refuse(m, Status.BAD_CONFIG, 1)     # a size of the network never written
                with m.Else():
                    m.d.sync += [fit_words.eq(fit_words + fit_in),
                                 fit_entries.eq(fit_entries + 1), fit_group.eq(fit_group + 1)]
                    with m.If(((fit_group + 1) << c.lane_bits) >= fit_out):
                        m.d.sync += [fit_layer.eq(fit_layer + 1), fit_group.eq(0)]
                        with m.If(fit_layer + 1 == network.layers):
                            m.next = "START"
            with m.State("START"):
                with m.If((fit_words > c.weight_depth) | (fit_entries > c.param_depth)):
                    refuse(m, Status.BAD_CONFIG, 1)
                with m.Else():
                    m.d.comb += [engine.start.valid.eq(1),
                                 engine.start.payload.seed.eq(seed),
                                 engine.start.payload.samples.eq(samples)]
                    with m.If(engine.start.ready):
                        m.d.sync += result_count.eq(0)
                        m.next = "RUNNING"
            with m.State("RUNNING"):
                with m.If(dec.o.valid | frame_error):
                    # A new frame while the job runs: stop it, its counts are gone, and the new
                    # frame is handled once the RUN is answered.
                    m.d.sync += [abort.eq(1), result_count.eq(0)]
                    respond(m, Status.ABORTED)
                with m.Else():
                    m.d.comb += [engine.result.ready.eq(1), res_w.addr.eq(result_count),
                                 res_w.data.eq(engine.result.payload.count),
                                 res_w.en.eq(engine.result.valid)]
                    with m.If(engine.result.valid):
                        m.d.sync += result_count.eq(result_count + 1)
                        with m.If(engine.result.payload.last):
                            m.d.sync += [jobs.eq(jobs + 1),
                                         run_response.cycles.eq(engine.cycles + 1)]
                            respond(m, Status.OK, nbytes(RUN_RESPONSE))
            with m.State("READ_CHECK"):
                fits = header_bytes + count_bytes * read_count <= self.max_payload
                with m.If((read_count == 0) | ~fits | (read_offset + read_count > result_count)):
                    refuse(m, Status.OUT_OF_RANGE, 1)
                with m.Else():
                    respond(m, Status.OK, count_bytes * read_count)
            with m.State("DISCARD"):
                m.d.comb += dec.o.ready.eq(1)
                with m.If(dec.o.valid & last):
                    m.d.sync += [body_len.eq(0), k.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.next = "SEND"     # one cycle for the result memory's read
            with m.State("SEND"):
                m.d.comb += [enc.i.valid.eq(1), enc.i.payload.data.eq(rsp_byte),
                             enc.i.payload.last.eq(k == body_len + 1)]
                with m.If(enc.i.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == body_len + 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "FETCH"
        return m

"""The protocol engine: frames in, frames out, a layer engine in between (``docs/protocol.md``).

Bytes from the link go through a :class:`~spinemu.hdl.framing.FrameDecoder` (which releases only
whole frames with a good CRC); the command is parsed byte by byte as it streams, executed, and
answered through a :class:`~spinemu.hdl.framing.FrameEncoder`. Bad frames and bad requests get an
error response and the engine goes on; a WRITE element too wide for its memory is refused (nothing
is silently truncated), though elements before it in the same frame have been written.
"""

from amaranth.hdl import Array, Cat, Const, Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .engine import COUNT_BITS, EngineConfig, LayerEngine, Region
from .framing import MAX_PAYLOAD, FrameDecoder, FrameEncoder
from .protocol import UNREADABLE_SEQ, Opcode, Status, element_bytes, identify_body

__all__ = ["ProtocolEngine", "STATUS_FIELDS"]

#: STATUS body, little-endian: (name, bytes).
STATUS_FIELDS = (("cobs_errors", 2), ("length_errors", 2), ("crc_errors", 2),
                 ("bad_requests", 2), ("uart_frame_errors", 2), ("uart_overruns", 2),
                 ("jobs", 4))


class ProtocolEngine(wiring.Component):
    """The whole design behind a byte stream.

    Ports: ``i``/``o`` bytes from/to the link; ``uart_frame_errors``/``uart_overruns`` counters of
    the PHY (reported by STATUS); ``busy`` while a job runs.
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
        job_cycles = Signal(32)

        # ---- counters --------------------------------------------------------------------------
        bad_requests = Signal(16)
        jobs = Signal(32)
        status_value = Cat(dec.cobs_errors, dec.length_errors, dec.crc_errors, bad_requests,
                           self.uart_frame_errors, self.uart_overruns, jobs)

        # ---- a frame error is answered when the engine is next between requests ----------------
        frame_error = Signal()
        frame_error_kind = Signal(8)
        with m.If(dec.error):
            m.d.sync += [frame_error.eq(1), frame_error_kind.eq(dec.error_kind)]

        # ---- request state ---------------------------------------------------------------------
        seq = Signal(8)
        opcode = Signal(8)
        status = Signal(8)
        count = Signal(range(self.max_payload + 1))    # body bytes seen
        region = Signal(8)
        addr = Signal(32)
        widest = max(element_bytes(r, c) for r in Region)
        element = Signal(8 * widest)
        element_byte = Signal(range(widest))
        element_last = Signal()                         # the element ended the frame
        seed = Signal(64)
        samples = Signal(16)
        read_offset = Signal(16)
        read_count = Signal(8)
        config_layers = Signal(range(c.max_layers + 1))
        config_last = Signal(range(c.max_layers + 2))  # CONFIG address of N_L
        body_len = Signal(range(self.max_payload + 1))  # response body bytes
        k = Signal(range(self.max_payload + 3))         # response byte index

        byte = dec.o.payload.data
        last = dec.o.payload.last

        # Elements of a WRITE: width and depth of each region.
        elem_bytes = Array(Const(element_bytes(r, c), range(widest + 1)) for r in Region)
        elem_bits = Array(Const(b, 16) for b in (16, c.input_bits, c.lanes * c.weight_bits,
                                                 c.param_layout.size))
        depth = Array(Const(d, 32) for d in (c.max_layers + 2, c.max_inputs, c.weight_depth,
                                             c.lanes * c.param_depth))
        n_elem_bytes = elem_bytes[region[:2]]
        value_ok = (element >> elem_bits[region[:2]]) == 0
        config_ok = Signal()
        limit = Signal(16)
        with m.Switch(addr):
            with m.Case(0):
                m.d.comb += limit.eq(c.max_layers)
            with m.Case(1):
                m.d.comb += limit.eq(c.max_inputs)
            with m.Default():
                m.d.comb += limit.eq(c.max_width)
        m.d.comb += config_ok.eq((element != 0) & (element <= limit))
        m.d.comb += [engine.write.payload.region.eq(region[:2]),
                     engine.write.payload.addr.eq(addr),
                     engine.write.payload.data.eq(element)]

        # Response bytes: seq, status, then the body of the command.
        rsp_byte = Signal(8)
        body_index = Signal(range(self.max_payload + 1))
        m.d.comb += body_index.eq(k - 2)
        with m.If(k == 0):
            m.d.comb += rsp_byte.eq(seq)
        with m.Elif(k == 1):
            m.d.comb += rsp_byte.eq(status)
        with m.Elif(status != Status.OK):
            m.d.comb += rsp_byte.eq(frame_error_kind)         # BAD_FRAME's one body byte
        with m.Else():
            with m.Switch(opcode):
                with m.Case(Opcode.IDENTIFY):
                    rom = Array(Const(b, 8) for b in self.identify)
                    m.d.comb += rsp_byte.eq(rom[body_index])
                with m.Case(Opcode.STATUS):
                    m.d.comb += rsp_byte.eq(status_value.word_select(body_index, 8))
                with m.Case(Opcode.RUN):
                    m.d.comb += rsp_byte.eq(job_cycles.word_select(body_index[:2], 8))
                with m.Case(Opcode.READ):
                    m.d.comb += rsp_byte.eq(res_r.data.word_select(body_index[0], 8))
        m.d.comb += res_r.addr.eq(read_offset + (body_index >> 1))

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
            with m.State("OPCODE"):
                m.d.comb += dec.o.ready.eq(1)
                with m.If(dec.o.valid):
                    m.d.sync += [opcode.eq(byte), count.eq(0), element_byte.eq(0)]
                    with m.Switch(byte):
                        with m.Case(Opcode.IDENTIFY):
                            with m.If(last):
                                respond(m, Status.OK, len(self.identify))
                            with m.Else():
                                refuse(m, Status.BAD_LENGTH, 0)
                        with m.Case(Opcode.STATUS):
                            with m.If(last):
                                respond(m, Status.OK, sum(n for _, n in STATUS_FIELDS))
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
                        with m.Case(Opcode.RUN):   # seed u64, samples u16
                            with m.If(count < 8):
                                m.d.sync += seed.word_select(count[:3], 8).eq(byte)
                            with m.Else():
                                m.d.sync += samples.word_select(count[0], 8).eq(byte)
                            with m.If(last):
                                with m.If(count != 9):
                                    refuse(m, Status.BAD_LENGTH, 1)
                                with m.Else():
                                    m.next = "RUN_CHECK"
                            with m.Elif(count == 9):
                                refuse(m, Status.BAD_LENGTH, 0)
                        with m.Case(Opcode.READ):  # offset u16, count u8
                            with m.If(count < 2):
                                m.d.sync += read_offset.word_select(count[0], 8).eq(byte)
                            with m.Else():
                                m.d.sync += read_count.eq(byte)
                            with m.If(last):
                                with m.If(count != 2):
                                    refuse(m, Status.BAD_LENGTH, 1)
                                with m.Else():
                                    m.next = "READ_CHECK"
                            with m.Elif(count == 2):
                                refuse(m, Status.BAD_LENGTH, 0)
                        with m.Case(Opcode.WRITE):  # region u8, addr u32, elements
                            with m.If(count == 0):
                                m.d.sync += region.eq(byte)
                                with m.If(byte > Region.PARAM.value):
                                    refuse(m, Status.OUT_OF_RANGE, last)
                                with m.Elif(last):
                                    refuse(m, Status.BAD_LENGTH, 1)
                            with m.Elif(count < 5):
                                m.d.sync += addr.word_select((count - 1)[:2], 8).eq(byte)
                                with m.If(last):
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
                ok = (addr < depth[region[:2]]) & value_ok & (
                    (region != Region.CONFIG.value) | config_ok)
                with m.If(~ok):
                    refuse(m, Status.OUT_OF_RANGE, element_last)
                with m.Else():
                    m.d.comb += engine.write.valid.eq(1)
                    with m.If(engine.write.ready):
                        with m.If(region == Region.CONFIG.value):
                            with m.If(addr == 0):
                                m.d.sync += [config_layers.eq(element), config_last.eq(element + 1)]
                        m.d.sync += [addr.eq(addr + 1), element.eq(0)]
                        with m.If(element_last):
                            respond(m, Status.OK)
                        with m.Else():
                            m.next = "BODY"
            with m.State("RUN_CHECK"):
                with m.If(config_layers == 0):
                    refuse(m, Status.NO_MODEL, 1)
                with m.Elif(samples == 0):
                    refuse(m, Status.OUT_OF_RANGE, 1)
                with m.Else():
                    m.d.comb += [engine.start.valid.eq(1),
                                 engine.start.payload.seed.eq(seed),
                                 engine.start.payload.samples.eq(samples)]
                    with m.If(engine.start.ready):
                        m.d.sync += result_count.eq(0)
                        m.next = "RUNNING"
            with m.State("RUNNING"):
                m.d.comb += [engine.result.ready.eq(1), res_w.addr.eq(result_count),
                             res_w.data.eq(engine.result.payload.count),
                             res_w.en.eq(engine.result.valid)]
                with m.If(engine.result.valid):
                    m.d.sync += result_count.eq(result_count + 1)
                    with m.If(engine.result.payload.last):
                        m.d.sync += [jobs.eq(jobs + 1), job_cycles.eq(engine.cycles + 1)]
                        respond(m, Status.OK, 4)
            with m.State("READ_CHECK"):
                fits = 2 + 2 * read_count <= self.max_payload
                with m.If((read_count == 0) | ~fits | (read_offset + read_count > result_count)):
                    refuse(m, Status.OUT_OF_RANGE, 1)
                with m.Else():
                    respond(m, Status.OK, 2 * read_count)
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

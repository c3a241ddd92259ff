"""The layer engine: dense layers of spin neurons in on-chip memory, running imagination jobs.

A job is ``(seed, S)`` on an input vector loaded beforehand. The engine loads the
:data:`~spinemu.hdl.noise_unit.NOISE_STREAMS` streams of its noise unit from the job seed
(:class:`~spinemu.hdl.seeder.Seeder`) while it computes layer 1's pre-activations once into a
cache, then runs S samples: each sample evaluates layer 1 from the cache with fresh
noise, then layers 2..L by adding the weights of the previous layer's spins that are 1, and adds
the last layer's spins into 16-bit counts, which it streams out at the end. ``docs/engine.md`` gives the
memory map (:mod:`spinemu.hdl.memory_map` defines it), the schedule of noise codes and the cycle
count.

Three stages run at once:

* **A, the feeder**, walks the schedule: per group of ``lanes`` neurons it runs the read loop
  (layer 1: one weight per lane per cycle times the input broadcast to all lanes; a spin layer:
  one word of W = ``inputs_per_cycle`` weights per lane per cycle, summed by each lane's adder
  tree where the spin is 1, the groups of a spin layer back to back) or reads the cache, and
  offers ``(a, theta, sigma)`` for every lane with the noise unit's next vector of codes (a
  :class:`~spinemu.hdl.noise_unit.NoiseUnit` with a generator per lane, which follows the
  schedule of the network by itself);
* **B, the lanes**: one :class:`~spinemu.hdl.neuron.SpinNeuron` per lane, fed by a fork;
* **C, the writer**, joins the lanes' spins, writes them into the spin buffer the next layer reads,
  and counts the last layer's spins.

A waits for C to finish layer ``l`` before it reads layer ``l``'s spins.

``abort`` stops a job at once: everything a job changes (the three stages, the seeder, the noise
unit, the cycle counter) sits behind an :class:`~amaranth.hdl.ResetInserter`, and only the
configuration registers and the memories' contents stay as they were.
"""

from amaranth.hdl import Array, Cat, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .memory_map import (
    ADDR_BITS,
    COUNT_BITS,
    MAC_LATENCY,
    NOISE_STREAMS,
    SAMPLE_BITS,
    EngineConfig,
    Region,
    spin_latency,
)
from .neuron import SpinNeuron
from .noise import TABLE_READ
from .noise_table import ENTRIES, ENTRY_BITS
from .noise_unit import NoiseUnit
from .seeder import Seeder
from .seeding import SEED_BITS
from .weight_memory import WeightMemory

__all__ = ["LayerEngine"]


class LayerEngine(wiring.Component):
    """The layer engine (see the module docstring).

    Ports
    -----
    write : In(stream)
        ``{region, addr, data}`` memory and configuration writes; accepted only while idle.
    start : In(stream)
        ``{seed, samples}`` starts a job (samples >= 1) on the network ``network`` describes,
        which must be complete and fit the memories (the protocol engine checks that).
    result : Out(stream)
        ``{count, last}``: the last layer's spin counts, neuron 0 first.
    abort : In(1)
        Back to idle at the next cycle, no job state left; the configuration and the memories'
        contents stay, and no more counts are sent.
    network : Out(network_layout)
        The configuration registers as CONFIG writes left them: ``layers`` (L) and ``sizes``
        (N_0 .. N_max_layers, 0 until written).
    table_read, table_data : In(TABLE_READ), Out(26)
        Read an entry of the noise table (generator 0's copy) while idle; the next job's seeding
        restarts the noise unit.
    busy : Out(1)
    cycles : Out(32)
        Cycles from accepting ``start`` to the last count, of the latest job.
    """

    def __init__(self, config=EngineConfig()):
        self.config = c = config
        self.write_layout = data.StructLayout({
            "region": Region, "addr": ADDR_BITS, "data": c.data_bits})
        size_bits = max(c.max_inputs, c.max_width).bit_length()
        self.network_layout = data.StructLayout({
            "layers": range(c.max_layers + 1),
            "sizes": data.ArrayLayout(size_bits, c.max_layers + 1)})
        super().__init__({
            "write": In(stream.Signature(self.write_layout)),
            "start": In(stream.Signature(data.StructLayout({
                "seed": SEED_BITS, "samples": SAMPLE_BITS}))),
            "result": Out(stream.Signature(data.StructLayout({"count": COUNT_BITS, "last": 1}))),
            "abort": In(1),
            "network": Out(self.network_layout),
            "table_read": In(TABLE_READ),
            "table_data": Out(ENTRY_BITS),
            "busy": Out(1),
            "cycles": Out(32),
        })

    def elaborate(self, platform):
        kept = Module()    # the configuration registers and the memories: an abort leaves them
        m = Module()       # the job machinery: every register in it is reset by an abort
        kept.submodules.job = ResetInserter(self.abort)(m)
        c = self.config
        P, fmt, lb = c.lanes, c.fmt, c.lane_bits
        W = c.inputs_per_cycle
        lw = W.bit_length() - 1
        B = max(P, W)                            # bits of a spin buffer word
        size_bits = len(self.network.sizes[0])
        group_bits = max(1, (c.max_groups - 1).bit_length())
        layer_count_bits = SAMPLE_BITS + c.max_layers.bit_length()
        a_shape = fmt.a.shape

        # ---- configuration registers ----------------------------------------------------------
        layers = self.network.layers
        sizes = Array(self.network.sizes[l] for l in range(c.max_layers + 1))

        # ---- memories and lanes -----------------------------------------------------------------
        def add_memory(name, shape, depth, granularity=None):
            mem = memory.Memory(shape=shape, depth=depth, init=[])
            kept.submodules[name] = mem
            return mem.write_port(granularity=granularity), mem.read_port()

        in_w, in_r = add_memory("inputs", c.input_bits, c.max_inputs)
        # All lanes read the same weight address every cycle, so one word holds every lane's
        # weights for W inputs (W slots); one address serves host writes (idle, a slot at a time)
        # and engine reads (running), so the memory is single-ported and fits iCE40 SPRAM
        # (WeightMemory uses it on an UltraPlus platform).
        weight_word = data.ArrayLayout(data.ArrayLayout(signed(c.weight_bits), P), W)
        kept.submodules.weights = weights = WeightMemory(weight_word.size, c.weight_depth, slots=W)
        params, cache, counts, lanes = [], [], [], []
        for p in range(P):
            params.append(add_memory(f"params{p}", c.param_layout, c.param_depth))
            cache.append(add_memory(f"cache{p}", a_shape, c.max_groups))
            counts.append(add_memory(f"counts{p}", COUNT_BITS, c.max_groups))
            m.submodules[f"lane{p}"] = lane = SpinNeuron(fmt)
            lanes.append(lane)
        m.submodules.noise = unit = NoiseUnit(NOISE_STREAMS, P, P, c.noise,
                                              max_layers=c.max_layers, size_bits=size_bits)
        m.d.comb += [unit.layers.eq(layers), unit.sizes.eq(Cat(self.network.sizes[1:])),
                     unit.table_read.eq(self.table_read), self.table_data.eq(unit.table_data)]
        # Layer l writes its spins into buffer l % 2; layer l + 1 reads them from there, W at a
        # time: a buffer word holds B = max(P, W) spins, so both P-aligned writes and W-aligned
        # reads stay within one word.
        groups_per_word = B // P
        spins = [add_memory(f"spins{b}", B, -(-c.max_width // B),
                            granularity=P if groups_per_word > 1 else None) for b in range(2)]

        # ---- host writes, accepted while idle ----------------------------------------------------
        idle = Signal()
        w = self.write.payload
        m.d.comb += self.write.ready.eq(idle)
        write = self.write.valid & idle

        def region_write(port, region, base, depth):
            m.d.comb += [port.addr.eq(w.addr - base), port.data.eq(w.data),
                         port.en.eq(write & (w.region == region) & (w.addr >= base)
                                    & (w.addr < base + depth))]

        region_write(in_w, Region.INPUT, 0, c.max_inputs)
        weight_addr = Signal(range(c.weight_depth))
        m.d.comb += [weights.addr.eq(weight_addr), weights.write_data.eq(w.data),
                     weights.write_slot.eq(w.addr[:lw]),
                     weights.write_en.eq(write & (w.region == Region.WEIGHT)
                                         & (w.addr < c.weight_depth * W)),
                     # SPRAM's read data is undefined while it writes: never read then.
                     weights.read_en.eq(~weights.write_en)]
        for p in range(P):
            region_write(params[p][0], Region.PARAM, p * c.param_depth, c.param_depth)
        m.d.comb += [unit.table_write.en.eq(write & (w.region == Region.NOISE) & (w.addr < ENTRIES)),
                     unit.table_write.addr.eq(w.addr), unit.table_write.data.eq(w.data)]
        with kept.If(write & (w.region == Region.CONFIG)):
            with kept.If(w.addr == 0):
                kept.d.sync += layers.eq(w.data)
            for l in range(c.max_layers + 1):
                with kept.If(w.addr == l + 1):
                    kept.d.sync += sizes[l].eq(w.data)

        # ---- job state ---------------------------------------------------------------------------
        samples = Signal(SAMPLE_BITS)
        running = Signal()
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += self.busy.eq(~idle)

        # ---- the seeder loads the noise unit's streams, while layer 1's pass runs ----------------
        m.submodules.seeder = seeder = Seeder(NOISE_STREAMS, c.seed_digit_bits)
        seeding = Signal()                       # the unit holds until its streams are loaded
        m.d.comb += [seeder.o.ready.eq(1), seeder.i.payload.eq(self.start.payload.seed),
                     unit.hold.eq(seeding), unit.load.en.eq(seeder.o.valid),
                     unit.load.stream.eq(seeder.o.payload.block),
                     unit.load.state.eq(seeder.o.payload.state)]
        with m.If(seeder.o.valid & (seeder.o.payload.block == NOISE_STREAMS - 1)):
            m.d.sync += seeding.eq(0)

        # ---- the offer register (A's output) and the fork into the lanes (B) ---------------------
        tag_layout = data.StructLayout({"group": group_bits, "buffer": 1, "layer_end": 1,
                                        "last_layer": 1, "first_sample": 1, "done": 1})
        offer = Signal()
        offer_a = [Signal(a_shape, name=f"offer_a{p}") for p in range(P)]
        offer_p = [Signal(c.param_layout, name=f"offer_p{p}") for p in range(P)]
        offer_code = Signal.like(unit.o.payload)
        offer_tag = Signal(tag_layout)
        sent = Signal(P)                         # lanes that already took the current offer
        accepted = Cat(lanes[p].i.valid & lanes[p].i.ready for p in range(P))
        taken = offer & (sent | accepted).all()
        load_offer = Signal()                    # A puts a new group in the offer register
        m.d.comb += unit.o.ready.eq(load_offer)  # ... with the next vector of codes
        for p in range(P):
            m.d.comb += [lanes[p].i.valid.eq(offer & ~sent[p]),
                         lanes[p].noise.valid.eq(offer & ~sent[p]),
                         lanes[p].noise.payload.eq(offer_code[p]),
                         lanes[p].i.payload.a.eq(offer_a[p]),
                         lanes[p].i.payload.theta.eq(offer_p[p].theta),
                         lanes[p].i.payload.sigma.eq(offer_p[p].sigma)]
        m.d.sync += [offer.eq((offer & ~taken) | load_offer),
                     sent.eq(Mux(taken | ~offer, 0, sent | accepted))]
        # The tag travels beside the lanes. A lane holds its spin until the writer joins them all,
        # so the lanes hold at most one group past the offer: the one taken last, whose tag is
        # this register's once every lane's spin is valid.
        tag = Signal(tag_layout)
        with m.If(taken):
            m.d.sync += tag.eq(offer_tag)

        # ---- stage C: join the lanes' spins, write the buffer, count the last layer -------------
        all_valid = Cat(lane.o.valid for lane in lanes).all()
        c_busy = Signal()                        # the count write of the previous group
        join = all_valid & ~c_busy
        spin_word = Cat(lane.o.payload.spin for lane in lanes)
        written = Signal(layer_count_bits)       # layers C has finished in this job
        finished = Signal()
        count_group = Signal(group_bits)
        count_spins = Signal(P)
        count_first = Signal()
        output_index = Signal(size_bits)
        output_phase = Signal()
        for lane in lanes:
            m.d.comb += lane.o.ready.eq(join)
        for b in range(2):
            en = join & (tag.buffer == b)
            m.d.comb += [spins[b][0].addr.eq(tag.group >> (groups_per_word.bit_length() - 1)),
                         spins[b][0].data.eq(Cat([spin_word] * groups_per_word)),
                         spins[b][0].en.eq(Cat(en & (tag.group % groups_per_word == j)
                                               for j in range(groups_per_word)))]
        for p in range(P):
            m.d.comb += [counts[p][1].addr.eq(Mux(output_phase, output_index >> lb, tag.group)),
                         counts[p][0].addr.eq(count_group),
                         counts[p][0].data.eq(Mux(count_first, 0, counts[p][1].data)
                                              + count_spins[p]),
                         counts[p][0].en.eq(c_busy)]
        m.d.sync += c_busy.eq(0)
        with m.If(join):
            m.d.sync += [c_busy.eq(tag.last_layer), count_group.eq(tag.group),
                         count_spins.eq(spin_word), count_first.eq(tag.first_sample)]
            with m.If(tag.layer_end):
                m.d.sync += written.eq(written + 1)
            with m.If(tag.done):
                m.d.sync += finished.eq(1)

        # ---- stage A: the feeder -----------------------------------------------------------------
        sample = Signal(SAMPLE_BITS)
        layer = Signal(range(c.max_layers + 1))
        group = Signal(group_bits)
        index = Signal(size_bits)               # input (layer 1) or word (spin layers) of the loop
        last_index = Signal(size_bits)          # the group's last index, set at its start
        waddr = Signal(range(c.weight_depth))
        paddr = Signal(range(c.param_depth))
        wbase = Signal(range(c.weight_depth))   # where layer 2's weights start
        init = Signal()                         # the once-per-job layer-1 MAC pass
        presented = Signal(layer_count_bits)    # layers A has offered in this job
        acc = [Signal(a_shape, name=f"acc{p}") for p in range(P)]
        from_spins = Signal()
        src = Signal()                          # the buffer layer l - 1 wrote

        n_in = sizes[layer - 1]
        last_group = group == ((sizes[layer] + (P - 1)) >> lb) - 1
        last_layer = layer == layers
        # The read pipeline: addresses at issue (cycle 0), RAM data at 1, registered at 2, then
        # layer 1 multiplies and accumulates, a spin layer goes through the adder trees.
        issue = Signal()
        D = spin_latency(W)
        pipe = Signal(max(D, MAC_LATENCY))      # pipe[j]: a read was issued j + 1 cycles ago
        m.d.sync += pipe.eq(Cat(issue, pipe[:-1]))
        words_per_buffer_word = B // W
        lc = words_per_buffer_word.bit_length() - 1
        m.d.comb += [in_r.addr.eq(index), spins[0][1].addr.eq(index >> lc),
                     spins[1][1].addr.eq(index >> lc)]
        m.d.comb += weight_addr.eq(Mux(idle, w.addr >> lw, waddr))
        slot1, slot2 = Signal(range(W)), Signal(range(W))
        chunk1 = Signal(range(words_per_buffer_word))
        weight_q = Signal(weight_word)          # the RAM's output register
        x_q, x_q_1 = Signal(c.input_bits), Signal(c.input_bits)
        spins_q = Signal(W)
        spin_word_in = Mux(src, spins[1][1].data, spins[0][1].data)
        m.d.sync += [slot1.eq(index[:lw]), slot2.eq(slot1), chunk1.eq(index[:lc]),
                     weight_q.eq(weights.read_data), x_q.eq(in_r.data), x_q_1.eq(x_q),
                     spins_q.eq(spin_word_in.word_select(chunk1, W) if lc else spin_word_in)]
        # Spin layers run their groups back to back: the first word of a group loads the
        # accumulators, the last one hands the sum to the sum register, which the offer register
        # takes while the next group's words flow. pipe_first/pipe_last travel beside pipe.
        pipe_first, pipe_last = Signal(D), Signal(D)
        sum_valid = Signal()
        sum_a = [Signal(a_shape, name=f"sum_a{p}") for p in range(P)]
        fin_group = Signal(group_bits)          # the group of the sum on its way
        fin_end = Signal()                      # ... and whether it ends its layer
        at_last = Signal()
        m.d.comb += at_last.eq(index == last_index)
        m.d.sync += [pipe_first.eq(Cat(issue & (index == 0), pipe_first[:-1])),
                     pipe_last.eq(Cat(issue & at_last, pipe_last[:-1]))]
        spin_term = from_spins & pipe[D - 1]
        with m.If(spin_term & pipe_last[D - 1]):
            m.d.sync += sum_valid.eq(1)
        # PRESENT streams layer 1 from the cache a group a cycle: there the parameter and cache
        # reads run one entry ahead and advance only when the offer does, holding their data
        # while it waits.
        presenting, advance = Signal(), Signal()
        read_en = ~presenting | advance
        for p in range(P):
            m.d.comb += [params[p][1].addr.eq(Mux(presenting, paddr + 1, paddr)),
                         cache[p][1].addr.eq(Mux(presenting, group + 1, group)),
                         params[p][1].en.eq(read_en), cache[p][1].en.eq(read_en)]
            # layer 1: the slot's weight and the product each get a register (Fmax: the slot mux,
            # the DSP and the accumulator's carry chain were one path)
            weight_1 = Signal(signed(c.weight_bits), name=f"weight_1_{p}")
            product = Signal(a_shape, name=f"product{p}")     # acc wraps the same way
            m.d.sync += [weight_1.eq((weight_q[slot2] if W > 1 else weight_q[0])[p]),
                         product.eq(weight_1 * x_q_1)]
            tree = self._adder_tree(m, [Mux(spins_q[s], weight_q[s][p], 0) for s in range(W)],
                                    D - 2)
            total = Mux(pipe_first[D - 1], 0, acc[p]) + tree
            with m.If(~from_spins & pipe[MAC_LATENCY - 1]):
                m.d.sync += acc[p].eq(acc[p] + product)
            with m.If(spin_term):
                m.d.sync += acc[p].eq(total)
                with m.If(pipe_last[D - 1]):
                    m.d.sync += sum_a[p].eq(total)

        def offer_group(values, group_v, end_v):
            m.d.comb += load_offer.eq(1)
            for p in range(P):
                m.d.sync += [offer_a[p].eq(values[p]), offer_p[p].eq(params[p][1].data)]
            m.d.sync += [offer_code.eq(unit.o.payload),
                offer_tag.group.eq(group_v), offer_tag.buffer.eq(layer[0]),
                offer_tag.layer_end.eq(end_v), offer_tag.last_layer.eq(last_layer),
                offer_tag.first_sample.eq(sample == 0),
                offer_tag.done.eq(end_v & last_layer & (sample == samples - 1)),
            ]

        # the spin layers' sum register into the offer register
        move = from_spins & sum_valid & (~offer | taken) & unit.o.valid
        with m.If(move):
            offer_group([sum_a[p] + params[p][1].data.bias for p in range(P)], fin_group, fin_end)
            m.d.sync += [sum_valid.eq(0), paddr.eq(paddr + 1)]

        def end_layer():
            """After a sample pass's layer: the next layer, the next sample or the end."""
            m.d.sync += presented.eq(presented + 1)
            with m.If(~last_layer):
                m.d.sync += [layer.eq(layer + 1), group.eq(0)]
                m.next = "GROUP"
            with m.Elif(sample != samples - 1):
                m.d.sync += [sample.eq(sample + 1), layer.eq(1), group.eq(0),
                             paddr.eq(0), waddr.eq(wbase)]
                m.next = "GROUP"
            with m.Else():
                m.next = "FINISH"

        with m.FSM(name="feeder"):
            with m.State("IDLE"):
                m.d.comb += [idle.eq(1), self.start.ready.eq(1)]
                # the seeder is idle whenever the feeder is
                m.d.comb += seeder.i.valid.eq(self.start.valid)
                with m.If(self.start.valid):
                    m.d.sync += [
                        samples.eq(self.start.payload.samples), seeding.eq(1),
                        self.cycles.eq(0), running.eq(1), layer.eq(1), group.eq(0),
                        waddr.eq(0), paddr.eq(0), sample.eq(0), init.eq(1), written.eq(0),
                        presented.eq(0), finished.eq(0),
                    ]
                    m.next = "GROUP"
            with m.State("GROUP"):
                for p in range(P):
                    m.d.sync += acc[p].eq(0)
                m.d.sync += [index.eq(0), from_spins.eq(layer != 1), src.eq(~layer[0]),
                             last_index.eq(Mux(layer == 1, n_in, (n_in + (W - 1)) >> lw) - 1)]
                with m.If((layer == 1) & ~init):
                    m.next = "PRESENT"       # the cache and parameters of group 0 are read
                with m.Elif((layer == 1) | (written == presented)):
                    m.next = "MAC"           # layer l - 1's spins are all written
            with m.State("MAC"):
                # a group's last word waits until the sum register is free for its sum
                with m.If(~(from_spins & at_last & (sum_valid | (pipe_last != 0)))):
                    m.d.comb += issue.eq(1)
                    m.d.sync += index.eq(index + 1)
                    # layer 1 reads a word W times, one slot per input
                    with m.If(from_spins | at_last | ((index[:lw] == W - 1) if lw else 1)):
                        m.d.sync += waddr.eq(waddr + 1)
                    with m.If(at_last & ~from_spins):
                        m.next = "DRAIN"
                    with m.If(at_last & from_spins):
                        m.d.sync += [fin_group.eq(group), fin_end.eq(last_group)]
                        with m.If(last_group):
                            m.next = "LAYER_END"
                        with m.Else():
                            m.d.sync += [group.eq(group + 1), index.eq(0)]
            with m.State("DRAIN"):
                with m.If(pipe[:MAC_LATENCY - 1] == 0):   # the last product enters the accumulators
                    m.next = "PRESENT"
            with m.State("LAYER_END"):
                with m.If(move):             # the layer's last sum is offered
                    end_layer()
            with m.State("PRESENT"):
                m.d.comb += [presenting.eq(1),
                             advance.eq(init | ((~offer | taken) & unit.o.valid))]
                with m.If(init):
                    for p in range(P):
                        m.d.comb += [cache[p][0].addr.eq(group),
                                     cache[p][0].data.eq(acc[p] + params[p][1].data.bias),
                                     cache[p][0].en.eq(1)]
                with m.Elif(advance):        # layer 1 from the cache
                    offer_group([cache[p][1].data for p in range(P)], group, last_group)
                with m.If(advance):
                    m.d.sync += [group.eq(group + 1), paddr.eq(paddr + 1)]
                    with m.If(~last_group):
                        with m.If(init):
                            m.next = "GROUP"     # the next group's MAC loop
                    with m.Elif(init):        # layer 1 is cached: the first sample pass begins
                        m.d.sync += [init.eq(0), group.eq(0), paddr.eq(0), wbase.eq(waddr)]
                        m.next = "GROUP"
                    with m.Else():
                        end_layer()
            with m.State("FINISH"):
                with m.If(finished & ~c_busy):
                    m.d.sync += [output_phase.eq(1), output_index.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                m.next = "SEND"              # one cycle for the count read
            with m.State("SEND"):
                lane_data = Array(counts[p][1].data for p in range(P))
                is_last = output_index == sizes[layers] - 1
                m.d.comb += [self.result.valid.eq(1),
                             self.result.payload.count.eq(lane_data[output_index[:lb] if lb else 0]),
                             self.result.payload.last.eq(is_last)]
                with m.If(self.result.ready):
                    m.d.sync += output_index.eq(output_index + 1)
                    with m.If(is_last):
                        m.d.sync += [running.eq(0), output_phase.eq(0)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "READ"
        return kept

    @staticmethod
    def _adder_tree(m, terms, registers):
        """The sum of ``terms`` by a tree of adders with a register after every second level and
        after the last; asserts that this makes ``registers`` registers (``spin_latency``)."""
        level = 0
        while len(terms) > 1:
            terms = [terms[i] + terms[i + 1] for i in range(0, len(terms), 2)]
            level += 1
            if level % 2 == 0 or len(terms) == 1:
                stage = [Signal.like(t) for t in terms]
                m.d.sync += [r.eq(t) for r, t in zip(stage, terms, strict=True)]
                terms = stage
        assert (level + 1) // 2 == registers
        return terms[0]


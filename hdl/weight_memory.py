"""The engine's weight memory: one address for host writes and engine reads, big enough for SPRAM.

On the iCE40 UltraPlus the weights live in the single-port SB_SPRAM256KA blocks (4 x 256 Kbit,
more than the 30 EBR hold together). yosys 0.70 does not infer SPRAM from an Amaranth
``lib.memory.Memory``, not even a plain 16384 x 16 one with ``ram_style="huge"`` ("no valid
mapping"), so :class:`WeightMemory` instantiates the primitive itself there and is an ordinary
``Memory`` everywhere else (simulation, ECP5).
"""

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SPRAM_WIDTH", "SPRAM_DEPTH", "SPRAM_COUNT", "KINDS", "spram_grid", "check_spram",
           "WeightMemory"]

SPRAM_WIDTH = 16        # bits per SB_SPRAM256KA word
SPRAM_DEPTH = 16384     # words per SB_SPRAM256KA
SPRAM_COUNT = 4         # SB_SPRAM256KA blocks on every iCE40 UltraPlus (UP3K, UP5K)
KINDS = ("auto", "memory", "spram")


def spram_grid(width, depth):
    """``(banks, slices)``: the SB_SPRAM256KA grid of a ``depth`` x ``width``-bit memory, 16K words
    per bank and 16 bits per slice."""
    return -(-depth // SPRAM_DEPTH), -(-width // SPRAM_WIDTH)


def check_spram(width, depth):
    """Raise :class:`ValueError` unless a ``depth`` x ``width``-bit memory fits the UltraPlus's 4
    SPRAMs."""
    banks, slices = spram_grid(width, depth)
    if banks * slices > SPRAM_COUNT:
        raise ValueError(
            f"a {depth} x {width}-bit weight memory needs {banks * slices} SB_SPRAM256KA "
            f"({banks} banks of {SPRAM_DEPTH} words x {slices} slices of {SPRAM_WIDTH} bits); "
            f"the iCE40 UltraPlus has {SPRAM_COUNT}")


def _is_ultraplus(platform):
    return platform is not None and str(getattr(platform, "device", "")).startswith("iCE40UP")


class WeightMemory(wiring.Component):
    """A single-port memory of ``depth`` words of ``width`` bits with a registered read.

    A word is ``slots`` slots of ``width // slots`` bits (slot 0 lowest), and a write fills one
    slot. One address serves both directions. A cycle with ``write_en`` writes ``write_data`` into
    slot ``write_slot`` of the word at ``addr`` and does not read; otherwise a cycle with
    ``read_en`` reads ``addr`` and ``read_data`` shows that word from the next cycle on (one
    cycle of latency), holding it while ``read_en`` is low. After a write cycle ``read_data`` is
    undefined until the next read (the SPRAM's output is), so a user must read before it looks at
    the data again.

    ``kind`` picks the implementation: ``"memory"`` an Amaranth ``lib.memory.Memory``, ``"spram"``
    a grid of SB_SPRAM256KA tiles (16-bit slices side by side for the width, banks of 16K words for
    the depth, chosen by the top address bits), ``"auto"`` (the default) SPRAM when the platform
    elaborating it is an iCE40 UltraPlus (its ``device`` starts with ``"iCE40UP"``) and a Memory
    otherwise: in simulation, on the ECP5, and elaborated without a platform. Raises
    :class:`ValueError` if the SPRAM grid would need more than the UltraPlus's 4 blocks, if
    ``slots`` does not divide ``width``, or if a SPRAM memory of several slots has slots that are
    not a multiple of 4 bits (its write mask works on nibbles).

    Members
    -------
    addr : ``In(range(depth))``
    write_data : ``In(width // slots)``
    write_slot : ``In(range(slots))``
    write_en : ``In(1)``
    read_en : ``In(1)``
    read_data : ``Out(width)``
    """

    def __init__(self, width, depth, *, kind="auto", slots=1):
        if width < 1 or depth < 1:
            raise ValueError(f"a weight memory needs width and depth >= 1, not {width} x {depth}")
        if kind not in KINDS:
            raise ValueError(f"weight memory kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if slots < 1 or width % slots:
            raise ValueError(f"{slots} slots do not divide a {width}-bit weight word")
        self.width, self.depth, self.kind, self.slots = width, depth, kind, slots
        self.slot_bits = width // slots
        if kind == "spram":
            self._check_spram()
        super().__init__({
            "addr": In(range(depth)),
            "write_data": In(self.slot_bits),
            "write_slot": In(range(slots)),
            "write_en": In(1),
            "read_en": In(1),
            "read_data": Out(width),
        })

    @property
    def banks(self):
        """Rows of SB_SPRAM256KA for the depth."""
        return spram_grid(self.width, self.depth)[0]

    @property
    def slices(self):
        """SB_SPRAM256KA side by side for the width."""
        return spram_grid(self.width, self.depth)[1]

    def elaborate(self, platform):
        use_spram = self.kind == "spram" or (self.kind == "auto" and _is_ultraplus(platform))
        if use_spram:
            self._check_spram()
            return self._elaborate_spram()
        return self._elaborate_memory()

    def _check_spram(self):
        check_spram(self.width, self.depth)
        if self.slots > 1 and self.slot_bits % 4:
            raise ValueError(f"SPRAM writes nibbles: a {self.slot_bits}-bit weight slot is not a "
                             f"multiple of 4 bits")

    def _slot_enables(self):
        """One write enable per slot."""
        return Cat(self.write_en & (self.write_slot == s) for s in range(self.slots))

    def _elaborate_memory(self):
        m = Module()
        m.submodules.storage = storage = memory.Memory(shape=self.width, depth=self.depth, init=[])
        write = storage.write_port(granularity=self.slot_bits if self.slots > 1 else None)
        read = storage.read_port()
        m.d.comb += [write.addr.eq(self.addr), read.addr.eq(self.addr),
                     write.data.eq(Cat([self.write_data] * self.slots)),
                     write.en.eq(self._slot_enables() if self.slots > 1 else self.write_en),
                     read.en.eq(self.read_en & ~self.write_en),
                     self.read_data.eq(read.data)]
        return m

    def _elaborate_spram(self):
        m = Module()
        address = Signal(14)
        bank = Signal(range(self.banks))
        m.d.comb += [address.eq(self.addr), bank.eq(self.addr >> 14)]
        # The read mux must follow the bank of the word on DATAOUT, which was addressed a cycle ago.
        read_bank = Signal.like(bank)
        with m.If(self.read_en & ~self.write_en):
            m.d.sync += read_bank.eq(bank)

        word = Cat([self.write_data] * self.slots)
        data_in = Cat(word, Const(0, self.slices * SPRAM_WIDTH - self.width))
        # A nibble is written when it lies in the addressed slot (slots are whole nibbles).
        slot_en = self._slot_enables()
        nibble_en = Cat(slot_en[min(n * 4 // self.slot_bits, self.slots - 1)]
                        for n in range(self.slices * 4))
        rows = []
        for b in range(self.banks):
            row = []
            for s in range(self.slices):
                out = Signal(SPRAM_WIDTH, name=f"dataout_{b}_{s}")
                m.submodules[f"spram_{b}_{s}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=address,
                    i_DATAIN=data_in[s * SPRAM_WIDTH:(s + 1) * SPRAM_WIDTH],
                    i_MASKWREN=(nibble_en[s * 4:s * 4 + 4] if self.slots > 1
                                else Const(0b1111, 4)),
                    i_WREN=self.write_en,
                    # A deselected block holds its output, as a disabled read port does.
                    i_CHIPSELECT=(bank == b) & (self.write_en | self.read_en),
                    i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=Const(0, 1),
                    i_SLEEP=Const(0, 1),
                    i_POWEROFF=Const(1, 1),     # active low: 1 keeps the block powered
                    o_DATAOUT=out)
                row.append(out)
            rows.append(Cat(*row))
        m.d.comb += self.read_data.eq(Array(rows)[read_bank][:self.width])
        return m

"""Stream drivers for Amaranth-simulator testbenches, and a run that fails instead of hanging.

:func:`send` offers items on a ``lib.stream`` interface with random idle cycles, :func:`receive`
takes them under random back-pressure and checks the stream rule that an offered payload stays
offered, unchanged, until it is taken; both are async testbench code (Amaranth 0.5) and draw their
randomness from the ``random.Random`` they are given. :func:`run` simulates a design with the
testbenches and counts its cycles.
"""

from amaranth.sim import Simulator

__all__ = ["PERIOD", "send", "receive", "run"]

#: The clock period of :func:`run`, in seconds (100 MHz).
PERIOD = 1e-8


async def send(ctx, stream, items, rng, idle):
    """Offer ``items`` on ``stream`` in order, idling (valid low) for a random cycle before each at
    rate ``idle``; returns once the last has been taken."""
    for item in items:
        while rng.random() < idle:
            await ctx.tick()
        ctx.set(stream.payload, item)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def receive(ctx, stream, count, rng, stall, *, until=None):
    """Take ``count`` items from ``stream`` (with ``count=None``: items up to and including the
    first for which ``until(item)`` is true) and return them, holding ready low for a random cycle
    at rate ``stall``. AssertionError if a payload offered but not taken is not offered, unchanged,
    on the next cycle."""
    if (count is None) == (until is None):
        raise TypeError("give either count or until")
    items, held = [], None
    while count is None or len(items) < count:
        ready = rng.random() >= stall
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if held is not None and not (valid and payload == held):
            raise AssertionError("stream payload withdrawn or changed before it was taken")
        if valid and ready:
            items.append(payload)
            if until is not None and until(payload):
                break
        held = payload if valid and not ready else None
    ctx.set(stream.ready, 0)
    return items


def run(dut, *testbenches, cycles=None, background=()):
    """Simulate ``dut`` with a clock of :data:`PERIOD` until ``testbenches`` finish (alongside the
    ``background`` ones) and return the number of clock cycles that took; TimeoutError after
    ``cycles`` cycles, if given."""
    elapsed = 0

    async def clock(ctx):
        nonlocal elapsed
        async for _ in ctx.tick():
            elapsed += 1
            if cycles is not None and elapsed > cycles:
                raise TimeoutError(f"testbenches still running after {cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for testbench in (*background, clock):
        sim.add_testbench(testbench, background=True)
    sim.run()
    return elapsed

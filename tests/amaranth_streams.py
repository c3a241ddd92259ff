"""Amaranth-simulator helpers shared by the tests: stream drivers with random idle cycles and
back-pressure (checking the stream rules), and a run that fails instead of hanging."""

from amaranth.sim import Simulator

__all__ = ["send", "receive", "run"]


async def send(ctx, stream, items, rng, idle):
    """Offer ``items`` on ``stream``, idling (valid low) for a random cycle before each at rate
    ``idle``."""
    for item in items:
        while rng.random() < idle:
            await ctx.tick()
        ctx.set(stream.payload, item)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def receive(ctx, stream, count, rng, stall):
    """Take ``count`` items from ``stream``, holding ready low at random at rate ``stall``, and
    check that a payload offered but not taken stays offered, unchanged, on the next cycle."""
    items, held = [], None
    while len(items) < count:
        ready = rng.random() >= stall
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if held is not None:
            assert valid and payload == held, "stream payload withdrawn or changed before accepted"
        if valid and ready:
            items.append(payload)
        held = payload if valid and not ready else None
    ctx.set(stream.ready, 0)
    return items


def run(dut, *testbenches, cycles, background=()):
    """Simulate until ``testbenches`` finish; fail, instead of hanging, after ``cycles`` cycles."""
    async def watchdog(ctx):
        await ctx.delay(cycles * 1e-6)
        raise AssertionError(f"testbenches still running after {cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for testbench in (*background, watchdog):
        sim.add_testbench(testbench, background=True)
    sim.run()

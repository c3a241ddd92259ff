"""The layer engine in the Amaranth simulator against the job-level golden model; a job aborted
anywhere leaves nothing behind."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import memory
from amaranth.sim import Simulator

from spinemu.hdl.engine import LayerEngine
from spinemu.hdl.memory_map import (
    MAC_LATENCY,
    EngineConfig,
    Region,
    check_fits,
    input_writes,
    job_cycles,
    model_writes,
    network_words,
    seeding_cycles,
    word_utilisation,
)
from spinemu.hdl.model_image import ModelError, random_model
from spinemu.hdl.noise_table import gaussian, logistic, thermal
from spinemu.sim.engine_model import run_jobs
from spinemu.sim.engine_sim import run_engine_amaranth
from spinemu.sim.streams import receive, run, send


def _config(lanes, **kw):
    return EngineConfig(lanes=lanes, max_layers=4, max_inputs=16, max_width=24,
                        weight_depth=512, param_depth=64, **kw)


@pytest.mark.parametrize("lanes,shape,samples,table", [
    (1, (5, 3), 3, gaussian()),
    (2, (7, 9, 4), 4, thermal()),
    (4, (16, 16, 16, 16, 8), 2, gaussian()),   # four layers, full groups
    (8, (9, 13, 17), 3, logistic()),           # partial groups in every layer
    (4, (3, 2), 5, gaussian()),                # one layer: the output comes straight from the cache
], ids=lambda v: v.name if hasattr(v, "name") else None)
def test_engine_matches_golden_under_stalls(lanes, shape, samples, table):
    # The model's noise table is written with it; the design is built with the Gaussian.
    config = _config(lanes)
    model = dataclasses.replace(random_model(shape, seed=lanes, fmt=config.fmt), noise=table)
    rng = np.random.default_rng(lanes)
    inputs = rng.integers(0, 32, size=(3, shape[0]))
    seeds = [0, 2 ** 64 - 1, int(rng.integers(0, 2 ** 63))]
    counts, _ = run_engine_amaranth(config, model, inputs, seeds, samples, valid_p=0.6,
                                    ready_p=0.5, stall_seed=lanes)
    expect = run_jobs(model, inputs, seeds, samples)
    np.testing.assert_array_equal(counts, expect)
    assert 0 < expect.sum() < expect.size * samples  # neurons neither all silent nor all firing


@pytest.mark.parametrize("lanes,shape,samples", [(2, (7, 9, 4), 3), (4, (16, 16, 16, 16, 8), 2),
                                                 (4, (3, 1), 3), (1, (5, 20, 4), 2)])
def test_cycle_count_is_the_documented_formula(lanes, shape, samples):
    config = _config(lanes)
    model = random_model(shape, seed=9, fmt=config.fmt)
    inputs = np.random.default_rng(0).integers(0, 32, size=(1, shape[0]))
    _, cycles = run_engine_amaranth(config, model, inputs, [1], samples, valid_p=1, ready_p=1)
    assert cycles[0] == job_cycles(shape, EngineConfig(lanes=lanes), samples)


@pytest.mark.parametrize("n_in", [103, 104])
def test_cycle_count_where_layer_1_outlasts_the_seeding(n_in):
    # 10 groups of 2 lanes: layer 1's once-per-job pass takes 10 (n_in + 2 + MAC_LATENCY) - 1
    # cycles, 1089 and 1099 around the seeding's 1090, so both branches of the formula's max are met.
    assert [10 * (n + 2 + MAC_LATENCY) - 1 for n in (103, 104)] == [1089, 1099]
    config = EngineConfig(lanes=2, max_layers=4, max_inputs=128, max_width=32,
                          weight_depth=4096, param_depth=64)
    assert seeding_cycles(config) == 1090
    shape = (n_in, 20, 8)
    model = random_model(shape, seed=n_in, fmt=config.fmt)
    inputs = np.random.default_rng(n_in).integers(0, 32, size=(1, n_in))
    _, cycles = run_engine_amaranth(config, model, inputs, [1], 2, valid_p=1, ready_p=1)
    assert cycles[0] == job_cycles(shape, config, 2)


# (lanes, W, shape): partial groups, partial words, layers wider and narrower than W.
WIDE_CASES = [(1, 1, (5, 7, 3)), (1, 4, (6, 9, 3, 5)), (2, 8, (7, 19, 5, 9)),
              (4, 2, (9, 11, 7)), (4, 16, (10, 20, 7, 12)), (8, 4, (5, 13, 17, 6)),
              (16, 8, (9, 21, 5, 17))]


def _wide_job(lanes, inputs_per_cycle, shape, count):
    config = _config(lanes, inputs_per_cycle=inputs_per_cycle)
    model = random_model(shape, seed=lanes + inputs_per_cycle, fmt=config.fmt)
    rng = np.random.default_rng(inputs_per_cycle)
    inputs = rng.integers(0, 32, size=(count, shape[0]))
    return config, model, inputs, [int(s) for s in rng.integers(0, 2 ** 63, size=count)]


@pytest.mark.parametrize("lanes,inputs_per_cycle,shape", WIDE_CASES)
def test_spin_layers_by_adder_trees_match_golden(lanes, inputs_per_cycle, shape):
    """W inputs per lane per cycle: the golden counts under back-pressure, and the documented
    cycles when the counts are taken at once."""
    config, model, inputs, seeds = _wide_job(lanes, inputs_per_cycle, shape, 2)
    counts, _ = run_engine_amaranth(config, model, inputs, seeds, 3, valid_p=0.7, ready_p=0.4,
                                    stall_seed=lanes)
    expect = run_jobs(model, inputs, seeds, 3)
    np.testing.assert_array_equal(counts, expect)
    assert 0 < expect.sum() < expect.size * 3
    counts, cycles = run_engine_amaranth(config, model, inputs[:1], seeds[:1], 2, valid_p=1,
                                         ready_p=1)
    np.testing.assert_array_equal(counts, run_jobs(model, inputs[:1], seeds[:1], 2))
    assert cycles[0] == job_cycles(shape, config, 2)


def test_counts_do_not_depend_on_lanes_or_inputs_per_cycle():
    """The noise schedule is the streams': the same jobs give the same counts on engines of every
    lane count and W (layers of 18, 7 and 5 neurons: partial groups and streams that take no code
    in a layer)."""
    shape = (9, 18, 7, 5)
    results = []
    for lanes, inputs_per_cycle in ((1, 1), (2, 8), (4, 2), (16, 32)):
        config = _config(lanes, inputs_per_cycle=inputs_per_cycle)
        model = random_model(shape, seed=5, fmt=config.fmt)
        inputs = np.random.default_rng(5).integers(0, 32, size=(2, shape[0]))
        counts, _ = run_engine_amaranth(config, model, inputs, [3, 4], 3)
        results.append(counts)
    assert 0 < results[0].sum() < results[0].size * 3
    for counts in results[1:]:
        np.testing.assert_array_equal(counts, results[0])


def test_lanes_beyond_the_noise_streams_are_refused():
    with pytest.raises(ValueError, match=r"lanes must be a power of two 1..16 \(the noise streams\), "
                                         r"not 32"):
        _config(32)


@pytest.mark.parametrize("lanes,inputs_per_cycle", [(16, 8), (16, 16), (4, 8), (1, 2), (1, 1)])
def test_word_utilisation_is_the_share_of_reading_cycles(lanes, inputs_per_cycle):
    # The spin layers' cycles of a sample pass are the per-sample cycles (job_cycles, which the
    # simulation checks) less layer 1's cached pass; they read the words of layers 2..L once.
    sizes = (128, 256, 192, 64)
    config = EngineConfig(lanes=lanes, inputs_per_cycle=inputs_per_cycle)
    per_sample = job_cycles(sizes, config, 2) - job_cycles(sizes, config, 1)
    spin_cycles = per_sample - (-(-sizes[1] // lanes) + 1)
    words = (network_words(sizes, lanes, inputs_per_cycle)[0]
             - network_words(sizes[:2], lanes, inputs_per_cycle)[0])
    assert word_utilisation(sizes, config) == words / spin_cycles
    assert word_utilisation((5, 3), config) == 1.0


def test_results_do_not_depend_on_earlier_jobs():
    config = _config(2)
    model = random_model((7, 9, 4), seed=1, fmt=config.fmt)
    inputs = np.random.default_rng(3).integers(0, 32, size=(3, 7))
    # The same job (input 0, seed 11) run first, and again after two other jobs.
    counts, _ = run_engine_amaranth(config, model, inputs[[0, 1, 2, 0]], [11, 12, 13, 11], 6)
    np.testing.assert_array_equal(counts[0], counts[3])


def test_golden_batches_and_threads_do_not_change_a_job():
    # run_jobs splits many jobs into batches run in threads: each job must come out as alone.
    model = random_model((12, 20, 6), seed=4, fmt=EngineConfig().fmt)
    rng = np.random.default_rng(4)
    inputs = rng.integers(0, 1 << model.input_bits, size=(700, 12))
    seeds = [int(s) for s in rng.integers(0, 2 ** 63, 700)]
    together = run_jobs(model, inputs, seeds, 3)
    alone = np.concatenate([run_jobs(model, inputs[k:k + 1], seeds[k:k + 1], 3)
                            for k in range(700)])
    np.testing.assert_array_equal(together, alone)
    assert together.shape == (700, 6) and 0 < together.sum() < together.size * 3


def test_model_writes_layout():
    config = _config(2)
    model = random_model((3, 3), seed=0, fmt=config.fmt)
    writes = model_writes(model, config)
    assert writes[:3] == [(Region.CONFIG, 0, 1), (Region.CONFIG, 1, 3), (Region.CONFIG, 2, 3)]
    words = [d for r, a, d in writes if r == Region.WEIGHT]
    # Lane 1 computes neuron 1 (group 0) and pads the missing neuron 3 (group 1) with zeros.
    bits, mask = config.weight_bits, (1 << config.weight_bits) - 1
    lane1 = [w >> bits & mask for w in words]
    assert lane1 == [int(v) & mask for v in model.weights[0][1]] + [0, 0, 0]
    lane0 = [w & mask for w in words]
    assert lane0 == [int(v) & mask for v in model.weights[0][0]] + \
        [int(v) & mask for v in model.weights[0][2]]


def test_model_writes_layout_with_slots():
    """W = 4: slot s of a group's word k holds input 4k + s at address 4 * word + s; a partial
    last word is padded with zero slots."""
    config = _config(2, inputs_per_cycle=4)
    model = random_model((6, 3, 5), seed=1, fmt=config.fmt)
    weights = [(a, d) for r, a, d in model_writes(model, config) if r == Region.WEIGHT]
    # layer 1: 2 groups x 2 words of 6 inputs; layer 2: 3 groups x 1 word of 3 inputs
    assert [a for a, _ in weights] == list(range((2 * 2 + 3 * 1) * 4))
    bits, mask = config.weight_bits, (1 << config.weight_bits) - 1
    lane1 = [d >> bits & mask for _, d in weights]
    assert lane1[:8] == [int(v) & mask for v in model.weights[0][1]] + [0, 0]
    assert lane1[8:16] == [0] * 8                         # neuron 3 of layer 1 does not exist
    assert lane1[16:20] == [int(v) & mask for v in model.weights[1][1]] + [0]
    assert network_words(model.sizes, 2, 4) == (7, 5)
    assert config.depth(Region.WEIGHT) == config.weight_depth * 4
    assert config.word_bits(Region.WEIGHT) == 2 * bits


@pytest.mark.parametrize("bad", [0, 3, 128, -2])
def test_inputs_per_cycle_must_be_a_power_of_two(bad):
    with pytest.raises(ValueError, match=f"inputs_per_cycle must be a power of two 1..64, not {bad}"):
        _config(2, inputs_per_cycle=bad)


def test_inputs_per_cycle_is_a_reported_parameter():
    config = _config(4, inputs_per_cycle=8)
    assert config.as_dict()["inputs_per_cycle"] == 8
    assert EngineConfig.from_dict(config.as_dict()).inputs_per_cycle == 8
    with pytest.raises(ValueError, match="exceeds the 20-bit write address"):
        EngineConfig(weight_depth=1 << 15, inputs_per_cycle=64)


def test_models_that_do_not_fit_are_refused_with_the_reason():
    config = _config(4)
    with pytest.raises(ModelError, match="a layer of 30 neurons, the design's limit is 24"):
        check_fits(random_model((8, 30), seed=0, fmt=config.fmt), config)
    with pytest.raises(ModelError, match="5 layers, the design holds at most 4"):
        check_fits(random_model((4, 4, 4, 4, 4, 4), seed=0, fmt=config.fmt), config)
    with pytest.raises(ModelError, match="neuron format"):
        check_fits(random_model((4, 4), seed=0), config)
    with pytest.raises(ModelError, match="weight words, the design has 1000"):
        check_fits(random_model((16, 24, 24, 24, 24), seed=0, fmt=config.fmt),
                   EngineConfig(lanes=1, max_layers=4, max_inputs=16, max_width=24,
                                weight_depth=1000, param_depth=256))
    # W = 8: 6 groups per layer, of 2 words in layer 1 and 3 in the others
    wide = EngineConfig(lanes=4, inputs_per_cycle=8, max_layers=4, max_inputs=16, max_width=24,
                        weight_depth=60, param_depth=256)
    with pytest.raises(ModelError, match="66 weight words, the design has 60"):
        check_fits(random_model((16, 24, 24, 24, 24), seed=0, fmt=config.fmt), wide)


def _words(writes):
    return [{"region": region, "addr": addr, "data": value} for region, addr, value in writes]


@pytest.mark.parametrize("inputs_per_cycle", [1, 4])
def test_abort_stops_a_job_anywhere_and_the_next_job_is_exact(inputs_per_cycle):
    """``abort`` in seeding, in layer 1's pass, in the samples and while the counts go out: the
    engine is idle at once, sends nothing more, and the next job has the golden counts and cycles
    (the memories and the configuration kept, no job state left)."""
    config, samples = _config(2, inputs_per_cycle=inputs_per_cycle), 3
    model = random_model((7, 9, 4), seed=2, fmt=config.fmt)
    x = np.random.default_rng(2).integers(0, 32, size=7)
    expect = run_jobs(model, x[None], [21], samples)[0]
    dut = LayerEngine(config)
    rng = random.Random(0)
    counts, cycles = [], []

    async def job(ctx, seed, samples):
        await send(ctx, dut.start, [{"seed": seed, "samples": samples}], rng, 0)
        return await receive(ctx, dut.result, None, rng, 0, until=lambda p: p.last)

    async def bench(ctx):
        await send(ctx, dut.write, _words(model_writes(model, config) + input_writes(x)), rng, 0)
        for wait, taken in [(0, 0), (100, 0), (300, 0), (2000, 0), (None, 2)]:
            if wait is None:        # a short job, aborted once some of its counts are out
                await send(ctx, dut.start, [{"seed": 5, "samples": 1}], rng, 0)
                await receive(ctx, dut.result, taken, rng, 0)
            else:
                await send(ctx, dut.start, [{"seed": 9, "samples": 65535}], rng, 0)
                await ctx.tick().repeat(wait + 1)
            assert ctx.get(dut.busy)
            ctx.set(dut.abort, 1)
            await ctx.tick()
            ctx.set(dut.abort, 0)
            assert not ctx.get(dut.busy) and not ctx.get(dut.result.valid)
            results = await job(ctx, 21, samples)
            counts.append([p.count for p in results])
            cycles.append(ctx.get(dut.cycles))

    run(dut, bench)
    assert counts == [list(expect)] * 5
    assert cycles == [job_cycles(model.sizes, config, samples)] * 5


def test_memory_contents_survive_a_reset_inserter():
    """Amaranth 0.5 resets only the registers that a reset-inserted module drives: a memory's rows
    stay, so the engine could keep its memories inside the aborted part too."""
    m = Module()
    m.submodules.mem = mem = memory.Memory(shape=8, depth=4, init=[])
    write, read = mem.write_port(), mem.read_port(transparent_for=())
    counter = Signal(8)
    m.d.sync += counter.eq(counter + 1)
    reset = Signal()
    dut = ResetInserter(reset)(m)

    async def bench(ctx):
        for addr in range(4):
            ctx.set(write.addr, addr)
            ctx.set(write.data, 10 + addr)
            ctx.set(write.en, 1)
            await ctx.tick()
        ctx.set(write.en, 0)
        ctx.set(reset, 1)
        await ctx.tick()
        ctx.set(reset, 0)
        assert ctx.get(counter) == 0
        for addr in range(4):
            ctx.set(read.addr, addr)
            await ctx.tick()
            assert ctx.get(read.data) == 10 + addr

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

"""The layer engine in the Amaranth simulator against the job-level golden model."""

import numpy as np
import pytest

from spinemu.hdl.memory_map import EngineConfig, Region, check_fits, job_cycles, model_writes
from spinemu.hdl.model_image import ModelError, random_model
from spinemu.sim.engine_model import run_jobs
from spinemu.sim.engine_sim import run_engine_amaranth


def _config(lanes, **kw):
    return EngineConfig(lanes=lanes, max_layers=4, max_inputs=16, max_width=24,
                        weight_depth=512, param_depth=64, **kw)


@pytest.mark.parametrize("lanes,shape,samples", [
    (1, (5, 3), 3),
    (2, (7, 9, 4), 4),
    (4, (16, 16, 16, 16, 8), 2),   # four layers, full groups
    (8, (9, 13, 17), 3),           # partial groups in every layer
    (4, (3, 2), 5),                # one layer: the output comes straight from the cache
])
def test_engine_matches_golden_under_stalls(lanes, shape, samples):
    config = _config(lanes)
    model = random_model(shape, seed=lanes, fmt=config.fmt)
    rng = np.random.default_rng(lanes)
    inputs = rng.integers(0, 32, size=(3, shape[0]))
    seeds = [0, 2 ** 64 - 1, int(rng.integers(0, 2 ** 63))]
    counts, _ = run_engine_amaranth(config, model, inputs, seeds, samples, valid_p=0.6,
                                    ready_p=0.5, stall_seed=lanes)
    expect = run_jobs(model, inputs, seeds, samples, lanes)
    np.testing.assert_array_equal(counts, expect)
    assert 0 < expect.sum() < expect.size * samples  # neurons neither all silent nor all firing


@pytest.mark.parametrize("lanes,shape,samples", [(2, (7, 9, 4), 3), (4, (16, 16, 16, 16, 8), 2),
                                                 (4, (3, 1), 3)])
def test_cycle_count_is_the_documented_formula(lanes, shape, samples):
    config = _config(lanes)
    model = random_model(shape, seed=9, fmt=config.fmt)
    inputs = np.random.default_rng(0).integers(0, 32, size=(1, shape[0]))
    _, cycles = run_engine_amaranth(config, model, inputs, [1], samples, valid_p=1, ready_p=1)
    assert cycles[0] == job_cycles(shape, lanes, samples)


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
    together = run_jobs(model, inputs, seeds, 3, 4)
    alone = np.concatenate([run_jobs(model, inputs[k:k + 1], seeds[k:k + 1], 3, 4)
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

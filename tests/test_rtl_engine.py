"""The layer engine's Verilog under Icarus and Verilator equals the golden model, bit for bit.

Model writes come with random idle cycles and counts are taken under random back-pressure, so the
results must not depend on handshake timing; a run that takes counts at once must also take exactly
the documented number of cycles.
"""

import dataclasses

import numpy as np
import pytest

from spinemu.hdl.memory_map import EngineConfig, job_cycles
from spinemu.hdl.model_image import random_model
from spinemu.hdl.noise_table import logistic, thermal
from spinemu.sim.engine_backends import run_engine
from spinemu.sim.engine_model import run_jobs
from spinemu.sim.rtl import SIMULATORS

# Small engines, one per lane count and W (inputs per cycle), so each simulator builds four
# designs in all; the models' noise tables are written with them. The W > 1 shapes have partial
# words and layers both wider and narrower than W.
CASES = [(2, 1, (7, 9, 4), 4), (4, 1, (10, 12, 12, 6), 3), (4, 8, (10, 13, 5, 9), 3),
         (8, 2, (5, 11, 16, 7), 2)]
TABLES = {2: logistic(), 4: thermal(), 8: logistic()}
# Verilator takes about 25 s to build an engine (the builds are cached afterwards).
SIMULATOR_PARAMS = [pytest.param(s, marks=pytest.mark.slow) if s == "verilator" else s
                    for s in SIMULATORS]


def _config(lanes, inputs_per_cycle):
    return EngineConfig(lanes=lanes, inputs_per_cycle=inputs_per_cycle, max_layers=3,
                        max_inputs=16, max_width=16, weight_depth=256, param_depth=32)


def _jobs(lanes, inputs_per_cycle, shape, count):
    config = _config(lanes, inputs_per_cycle)
    model = dataclasses.replace(random_model(shape, seed=lanes, fmt=config.fmt),
                                noise=TABLES[lanes])
    rng = np.random.default_rng(lanes)
    inputs = rng.integers(0, 32, size=(count, shape[0]))
    seeds = [0, 2 ** 64 - 1, *(int(s) for s in rng.integers(0, 2 ** 63, size=count - 2))]
    return config, model, inputs, seeds


@pytest.mark.parametrize("simulator", SIMULATOR_PARAMS)
@pytest.mark.parametrize("lanes,inputs_per_cycle,shape,samples", CASES)
def test_engine_verilog_matches_golden_under_stalls(simulator, lanes, inputs_per_cycle, shape,
                                                    samples):
    config, model, inputs, seeds = _jobs(lanes, inputs_per_cycle, shape, 4)
    run = run_engine(simulator, config, model, inputs, seeds, samples, valid_p=0.6, ready_p=0.4,
                     stall_seed=lanes)
    expect = run_jobs(model, inputs, seeds, samples)
    np.testing.assert_array_equal(run.counts, expect)
    assert 0 < expect.sum() < expect.size * samples  # neurons neither all silent nor all firing
    # Back-pressure on the counts stretches jobs beyond the unstalled count.
    ideal = job_cycles(shape, config, samples)
    assert (run.cycles >= ideal).all() and (run.cycles > ideal).any()


@pytest.mark.parametrize("simulator", SIMULATOR_PARAMS)
@pytest.mark.parametrize("lanes,inputs_per_cycle,shape,samples", CASES)
def test_engine_verilog_cycles_are_the_documented_count(simulator, lanes, inputs_per_cycle, shape,
                                                        samples):
    config, model, inputs, seeds = _jobs(lanes, inputs_per_cycle, shape, 2)
    run = run_engine(simulator, config, model, inputs, seeds, samples, valid_p=0.7, ready_p=1)
    np.testing.assert_array_equal(run.counts, run_jobs(model, inputs, seeds, samples))
    np.testing.assert_array_equal(run.cycles, [job_cycles(shape, config, samples)] * 2)
    assert run.job_seconds > 0 and run.rate > 0

"""Generated Verilog under Icarus and Verilator (cocotb 2 runner) equals the golden model, bit for bit.

Every run stalls the output at random, and the neuron runs also leave random idle cycles on the
input, so the results must not depend on the handshake timing.
"""

import random

import numpy as np
import pytest

from spinemu.hdl.formats import NeuronFormat
from spinemu.hdl.neuron import NoisyNeuron
from spinemu.hdl.noise_table import gaussian, logistic, thermal
from spinemu.hdl.seeding import seed_state
from spinemu.sim import golden
from spinemu.sim.noise_backends import generate_noise
from spinemu.sim.rtl import SIMULATORS, run_stream_bench

SAMPLES = 100_000


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("seed,blocks,ready_p,table", [(1, 3, 0.6, gaussian()),
                                                       (2 ** 64 - 1, 1, 0.95, thermal())])
def test_noise_bank_matches_golden(simulator, seed, blocks, ready_p, table):
    run = generate_noise(simulator, seed=seed, blocks=blocks, samples=SAMPLES, ready_p=ready_p,
                         stall_seed=seed % 1000, table=table)
    assert run.cycles > SAMPLES  # back-pressure really stalled it
    np.testing.assert_array_equal(run.codes, golden.noise_codes(seed, blocks, SAMPLES, table=table))


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("table", [gaussian(), logistic()], ids=lambda t: t.name)
def test_noisy_neuron_matches_golden(simulator, table):
    fmt, index, seed = NeuronFormat(), 42, 31337
    dut = NoisyNeuron(index, fmt, table)
    rng = random.Random(simulator)
    count = 20_000
    a = [rng.randint(fmt.a.min_code, fmt.a.max_code) for _ in range(count)]
    theta = [rng.randint(fmt.theta.min_code, fmt.theta.max_code) for _ in range(count)]
    sigma = [rng.randint(1, fmt.sigma.max_code) for _ in range(count)]
    words = [dut.input_layout.const({"a": x, "theta": t, "sigma": s}).as_bits()
             for x, t, s in zip(a, theta, sigma, strict=True)]
    result = run_stream_bench(dut, simulator=simulator, inputs=words, outputs=count,
                              load={"seed": seed_state(seed, index)}, valid_p=0.7, ready_p=0.7,
                              stall_seed=7)
    got = [dut.output_layout.from_bits(w) for w in result.outputs]
    codes = golden.noise_codes(seed, 1, count, first=index, table=table)[:, 0]
    spin, value = golden.neuron(a, theta, sigma, codes, fmt)
    np.testing.assert_array_equal([g.spin for g in got], spin)
    np.testing.assert_array_equal([g.value for g in got], value)

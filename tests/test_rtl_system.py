"""The generated Verilog of the whole design (protocol engine, layer engine, framing) under Icarus
and Verilator: every answer byte equal to the golden board's, with random idle cycles and
back-pressure on both byte streams, for good traffic and for every kind of bad frame and request."""

import pytest

from protocol_traffic import CONFIG, MAX_PAYLOAD, bad_traffic, golden_answers, good_traffic
from spinemu.hdl.noise_table import logistic
from spinemu.hdl.protocol_engine import ProtocolEngine
from spinemu.sim.rtl import SIMULATORS, run_link_bench


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_system_answers_equal_the_golden_board(simulator):
    requests = good_traffic(seed=11) + bad_traffic() + good_traffic(seed=12, table=logistic())
    expect, _ = golden_answers(requests)
    got, _ = run_link_bench(ProtocolEngine(CONFIG, MAX_PAYLOAD), simulator=simulator,
                         requests=requests, valid_p=0.6, ready_p=0.6, stall_seed=5)
    assert len(got) == len(expect)
    for i, (g, e) in enumerate(zip(got, expect, strict=True)):
        assert g == e, f"answer {i} to {requests[i].hex()}: {g.hex()} != golden {e.hex()}"

"""The seeding function: deterministic, never zero, distinct per block and per seed."""

import numpy as np
import pytest

from spinemu.hdl.seeding import fmix64, seed_state, seed_states

WEYL = 0x9E3779B97F4A7C15


def test_known_values_and_determinism():
    assert fmix64(0) == 0
    assert seed_state(0, 0) == fmix64(WEYL) == seed_state(0, 0)
    assert seed_state(5, 3) == fmix64((5 + 4 * WEYL) % 2 ** 64)


def test_never_zero():
    # The one input that fmix64 maps to zero is replaced by the Weyl constant.
    seed = (-(3 + 1) * WEYL) % 2 ** 64
    assert seed_state(seed, 3) == WEYL


def test_distinct_states_across_seeds_and_blocks():
    states = {seed_state(s, j) for s in range(200) for j in range(64)}
    assert len(states) == 200 * 64


def test_refuses_bad_seeds():
    for bad in (-1, 2 ** 64, 1.5, "7"):
        with pytest.raises(ValueError, match="seed must be an integer 0..2\\^64-1"):
            seed_state(bad, 0)
    with pytest.raises(ValueError, match="noise block index"):
        seed_state(1, -1)


def test_seed_states_equal_seed_state_for_lists_and_arrays():
    rng = np.random.default_rng(7)
    seeds = [0, 1, 2 ** 63, 2 ** 64 - 1, (-(5 + 1) * WEYL) % 2 ** 64,      # the last: the zero case
             *(int(s) for s in rng.integers(0, 2 ** 64, 200, dtype=np.uint64))]
    for block in (0, 5, 63):
        expected = [seed_state(s, block) for s in seeds]
        assert seed_states(seeds, block).tolist() == expected
        assert seed_states(np.array(seeds, dtype=np.uint64), block).tolist() == expected
    assert seed_states(np.arange(10), 2).tolist() == [seed_state(s, 2) for s in range(10)]
    assert seed_states(np.array(seeds, dtype=np.uint64), 5)[4] == WEYL


def test_seed_states_refuse_bad_seeds():
    for bad in ([1, -1], [2 ** 64], [1.5], ["7"], np.array([3, -2]), np.array([1.0])):
        with pytest.raises(ValueError, match="seed must be an integer 0..2\\^64-1"):
            seed_states(bad, 0)
    with pytest.raises(ValueError, match="block index"):
        seed_states([1], -1)

"""The polynomial tables are primitive, distinct and reproducible; the primitivity test is right."""

import pytest

from spinemu.hdl import polynomials as P
from spinemu.hdl.lfsr import lfsr_step


def _period(width, taps):
    """Cycle length through the state 1 of a one-bit-per-step LFSR, by brute force."""
    state, steps = 1, 0
    while True:
        state = lfsr_step(state, width, taps, 1)
        steps += 1
        if state == 1:
            return steps
        assert steps <= 1 << width


@pytest.mark.parametrize("width", range(2, 11))
def test_is_primitive_agrees_with_brute_force_periods(width):
    # Every polynomial with a constant term and taps below the middle (LFSRs need taps <= n-1).
    for mask in range(1 << (width - 1)):
        taps = (0, *[e for e in range(1, width) if mask >> (e - 1) & 1])
        maximal = _period(width, taps) == (1 << width) - 1
        assert P.is_primitive(width, taps) == maximal, (width, taps)


def test_known_non_primitive_polynomials():
    assert not P.is_primitive(4, (2, 0))          # x^4 + x^2 + 1 = (x^2 + x + 1)^2
    assert not P.is_primitive(4, (3, 2, 1, 0))    # irreducible, but x has order 5, not 15
    assert not P.is_primitive(64, (1, 0)) and not P.is_primitive(64, (4, 3))  # no constant term


def test_prime_factors_of_mersenne_numbers():
    assert P.prime_factors(2 ** 64 - 1) == (3, 5, 17, 257, 641, 65537, 6700417)
    assert P.prime_factors(2 ** 61 - 1) == (2 ** 61 - 1,)
    for n in range(2, 65):
        product = 1
        for q in P.prime_factors(2 ** n - 1):
            while (2 ** n - 1) // product % q == 0 and product * q <= 2 ** n - 1:
                product *= q
        assert product == 2 ** n - 1


def test_maximal_table_is_primitive_and_lowest_tap():
    assert sorted(P.MAXIMAL_TAPS) == list(range(2, 65))
    for width, taps in P.MAXIMAL_TAPS.items():
        assert P.is_primitive(width, taps), width
        assert taps == P._search_maximal(width)


def test_noise_table_is_distinct_primitive_and_short_tapped():
    assert len(P.NOISE_TAPS) == len(set(P.NOISE_TAPS)) == 256
    for taps in P.NOISE_TAPS:
        assert taps[-1] == 0 and max(taps) <= P.NOISE_MAX_TAP
        assert P.is_primitive(P.NOISE_DEGREE, taps), taps


def test_noise_table_is_the_search_result():
    assert list(P.NOISE_TAPS[:80]) == P._search_noise(80)

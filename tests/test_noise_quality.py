"""Quality of the golden noise (proven equal to the RTL) over 10^7 samples, and checks with teeth."""

import numpy as np
import pytest

from spinemu.hdl.noise_table import CODE_SIGMA
from spinemu.host.noise_quality import noise_quality
from spinemu.sim import golden


def _verdicts(figures):
    return {f.name.split(",")[0]: f.ok for f in figures}


@pytest.mark.slow
def test_golden_noise_passes_every_figure_over_ten_million_samples():
    codes = golden.noise_codes(20261123, 4, 10_000_000)
    figures = noise_quality(codes, CODE_SIGMA)
    failed = [(f.name, f.value, f.limit) for f in figures if not f.ok]
    assert not failed
    names = {f.name for f in figures}
    assert "KS distance to discretized normal" in names and len(figures) == 10
    ks = next(f for f in figures if f.name.startswith("KS"))
    assert ks.value <= 0.001


def _odd(x):
    """Round to the odd-code lattice."""
    return (2 * np.floor(np.asarray(x) / 2) + 1).astype(np.int64)


def test_checks_reject_a_plain_sum_of_uniforms():
    # Sum of 4 uniforms: variance 1 and no skew, but kurtosis -0.3, a short tail and KS ~ 0.003.
    rng = np.random.default_rng(0)
    z = (rng.random((1_000_000, 2, 4)).sum(axis=2) - 2) * np.sqrt(3)
    verdicts = _verdicts(noise_quality(_odd(z * CODE_SIGMA), CODE_SIGMA))
    assert verdicts["mean"] and verdicts["skewness"]
    assert not verdicts["excess kurtosis"] and not verdicts["P(|z|>4) / normal"]


def test_checks_reject_correlated_noise():
    rng = np.random.default_rng(1)
    white = rng.standard_normal((1_000_001, 2))
    ar = white[1:] + 0.03 * white[:-1]             # lag-1 autocorrelation 0.03
    verdicts = _verdicts(noise_quality(_odd(ar * CODE_SIGMA), CODE_SIGMA))
    assert not verdicts["max |autocorrelation|"] and verdicts["max |cross-correlation|"]

    shifted = np.stack([white[5:, 0], white[:-5, 0]], axis=1)  # a shifted copy of one sequence
    verdicts = _verdicts(noise_quality(_odd(shifted * CODE_SIGMA), CODE_SIGMA))
    assert verdicts["max |autocorrelation|"] and not verdicts["max |cross-correlation|"]


def test_checks_reject_a_wrong_scale_and_even_codes():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((1_000_000, 1)) * 1.01
    verdicts = _verdicts(noise_quality(_odd(z * CODE_SIGMA), CODE_SIGMA))
    assert not verdicts["variance - 1"]
    with pytest.raises(ValueError, match="odd integers"):
        noise_quality(np.zeros((1000, 1), dtype=int), CODE_SIGMA)


def test_table_figures_pass_their_own_codes_and_catch_another_table():
    # 10^6 codes of each table: its own exact distribution passes every figure; the logistic's
    # codes (also symmetric with variance 1) fail the Gaussian table's chi-square and KS.
    from spinemu.hdl.noise_table import gaussian, logistic, thermal
    for table in (gaussian(), logistic(), thermal()):
        codes = golden.noise_codes(7, 2, 500_000, table=table)
        figures = noise_quality(codes, CODE_SIGMA, table=table)
        assert all(f.ok for f in figures), [(f.name, f.value) for f in figures if not f.ok]
        assert {f.name for f in figures} >= {"KS distance to the table", "chi-square p (table)"}
    verdicts = _verdicts(noise_quality(golden.noise_codes(7, 2, 500_000, table=logistic()),
                                       CODE_SIGMA, table=gaussian()))
    assert not verdicts["chi-square p (table)"] and not verdicts["KS distance to the table"]
    assert verdicts["mean - table's"]

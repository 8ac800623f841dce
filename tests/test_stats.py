import numpy as np
import pytest
from scipy.stats import kendalltau

from maedet import stats
from maedet.stats import kendall_interval


def test_kendall_interval_matches_scipy_and_brackets_the_point():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=0.7, size=30)
    k = kendall_interval(x, y, 300, np.random.default_rng(0))
    assert k["tau"] == pytest.approx(kendalltau(x, y).statistic)
    assert k["lo"] < k["tau"] < k["hi"] and k["resamples"] == 300
    # the same generator state gives the same interval
    assert kendall_interval(x, y, 300, np.random.default_rng(0)) == k


def test_kendall_interval_of_a_monotone_relation_is_one():
    x = np.arange(8.0)
    k = kendall_interval(x, x ** 3, 100, np.random.default_rng(0))
    assert k["tau"] == pytest.approx(1.0) and k["lo"] == pytest.approx(1.0) and k["hi"] == pytest.approx(1.0)


def test_kendall_difference_interval_is_paired_and_decides_only_clear_gaps():
    rng = np.random.default_rng(2)
    y = rng.normal(size=40)
    good, bad = y + rng.normal(scale=0.3, size=40), rng.normal(size=40)
    d = stats.kendall_difference_interval(good, bad, y, 400, np.random.default_rng(0))
    assert d["diff"] == pytest.approx(kendalltau(good, y).statistic - kendalltau(bad, y).statistic)
    assert 0 < d["lo"] < d["diff"] < d["hi"]  # a clear gap: the interval excludes 0
    same = stats.kendall_difference_interval(good, good, y, 100, np.random.default_rng(0))
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0  # paired: identical proxies never differ
    # two models: no resample defines a tau
    two = stats.kendall_difference_interval([1, 2], [2, 1], [1, 2], 50, np.random.default_rng(0))
    assert two["lo"] is None and two["diff"] == pytest.approx(2.0)
    # three models: every usable resample is the set itself, so no interval (and no verdict) is given
    three = stats.kendall_difference_interval([1, 2, 3], [3, 1, 2], [1, 2, 3], 200, np.random.default_rng(0))
    assert three["lo"] is None and three["hi"] is None and three["diff"] > 0
    six = stats.kendall_difference_interval(good[:6], bad[:6], y[:6], 200, np.random.default_rng(0))
    assert six["lo"] is not None and six["lo"] <= six["hi"]
    with pytest.raises(ValueError, match="one length"):
        stats.kendall_difference_interval([1, 2, 3], [1, 2, 3], [1, 2], 10, np.random.default_rng(0))


def test_kendall_interval_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one length"):
        kendall_interval([1, 2, 3], [1, 2], 10, np.random.default_rng(0))


def test_welch_interval_matches_scipy():
    from scipy.stats import t as student_t, ttest_ind, ttest_ind_from_stats

    from maedet.stats import WELCH, welch_interval

    rng = np.random.default_rng(3)
    a, b = rng.normal(2.0, 1.0, 5), rng.normal(0.5, 2.0, 4)
    w = welch_interval(a.mean(), a.std(ddof=1), 5, b.mean(), b.std(ddof=1), 4)
    ref = ttest_ind(a, b, equal_var=False)
    st = ttest_ind_from_stats(a.mean(), a.std(ddof=1), 5, b.mean(), b.std(ddof=1), 4, equal_var=False)
    assert st.statistic == pytest.approx(ref.statistic)
    ci = ref.confidence_interval(0.95)
    assert (w["lo"], w["hi"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert w["diff"] == pytest.approx(a.mean() - b.mean()) and w["rule"] == WELCH
    # the interval excludes 0 exactly when the two-sided p-value is below 0.05
    assert (w["lo"] > 0 or w["hi"] < 0) == (ref.pvalue < 0.05)


def test_paired_interval_matches_scipy():
    from scipy.stats import ttest_rel

    from maedet.stats import PAIRED, paired_interval

    a, b = np.array([3.1, 2.9, 3.6, 3.0]), np.array([2.5, 2.7, 3.0, 2.2])
    p = paired_interval(a, b)
    ci = ttest_rel(a, b).confidence_interval(0.95)
    assert (p["lo"], p["hi"]) == (pytest.approx(ci.low), pytest.approx(ci.high)) and p["rule"] == PAIRED


def test_verdict_rule():
    from maedet.stats import verdict, welch_interval

    up = welch_interval(5.0, 0.1, 3, 1.0, 0.1, 3)
    down = welch_interval(1.0, 0.1, 3, 5.0, 0.1, 3)
    vague = welch_interval(1.1, 1.0, 2, 1.0, 1.0, 2)
    assert verdict(up, ">") == "holds" and verdict(up, "<") == "contradicted"
    assert verdict(down, ">") == "contradicted" and verdict(down, "<") == "holds"
    assert verdict(vague, ">") == "not resolved" and verdict(up, "=") == "contradicted"
    assert verdict(vague, "=") == "not resolved"
    assert verdict(welch_interval(5.0, 0.0, 1, 1.0, 0.1, 3), ">") == "not resolved (one run)"
    assert verdict(None, ">", "no stage") == "not tested here: no stage"
    with pytest.raises(ValueError, match="direction"):
        verdict(up, ">=")


def test_seeds_for_power_matches_the_textbook_values():
    # two-sample t, d = 1, 80% power, 5% two-sided: 17 per group; paired (one-sample) d = 1: 10 pairs
    assert stats.seeds_for_power(1.0, 1.0, paired=False) == 17
    assert stats.seeds_for_power(1.0, 1.0, paired=True) == 10
    assert stats.power_t(16, 1.0, 1.0, paired=False) < 0.8 <= stats.power_t(17, 1.0, 1.0, paired=False)
    with pytest.raises(ValueError):
        stats.seeds_for_power(0.0, 1.0)


def test_power_agrees_with_a_simulation_of_scipy_t_tests():
    from scipy.stats import ttest_ind, ttest_rel

    rng = np.random.default_rng(0)
    n, delta, sd, trials = 6, 1.0, 0.8, 4000
    a = rng.normal(delta, sd, (trials, n))
    b = rng.normal(0.0, sd, (trials, n))
    unpaired = float(np.mean(ttest_ind(a, b, axis=1).pvalue < 0.05))
    assert abs(unpaired - stats.power_t(n, delta, sd, paired=False)) < 0.03
    d = rng.normal(delta, sd, (trials, n))
    paired = float(np.mean(ttest_rel(d, np.zeros_like(d), axis=1).pvalue < 0.05))
    assert abs(paired - stats.power_t(n, delta, sd, paired=True)) < 0.03


def test_detectable_effect_inverts_power():
    d = stats.detectable_effect(10, 1.0, paired=True)
    assert stats.power_t(10, d, 1.0, paired=True) == pytest.approx(0.8, abs=1e-4)
    # consistent with seeds_for_power: at the delta n seeds resolve, n seeds are enough and n-1 are not
    n = stats.seeds_for_power(d + 1e-3, 1.0, paired=True)
    assert n == 10
    assert stats.detectable_effect(40, 1.0) < d  # more seeds resolve smaller effects
    with pytest.raises(ValueError, match="n >= 2"):
        stats.detectable_effect(1, 1.0)

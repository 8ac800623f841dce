import numpy as np
import pytest
from scipy.stats import kendalltau

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


def test_kendall_interval_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one length"):
        kendall_interval([1, 2, 3], [1, 2], 10, np.random.default_rng(0))

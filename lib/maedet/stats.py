"""Rank correlation of a zero-shot value with trained AP, with a bootstrap interval (Figure 6, the pooled
score-vs-AP study)."""
from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau


def kendall_interval(x, y, n_boot: int, rng: np.random.Generator, level: float = 95.0) -> dict:
    """Kendall tau of ``x`` and ``y`` and its percentile bootstrap interval: ``n_boot`` resamples of the
    pairs with replacement drawn from ``rng`` (resamples with fewer than 3 distinct pairs are skipped, as
    are undefined taus). ``lo``/``hi`` are None when no resample gives a tau."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and of one length, got {x.shape} and {y.shape}")
    boot = []
    for _ in range(int(n_boot)):
        i = rng.integers(0, len(x), len(x))
        if len(set(i.tolist())) > 2:
            v = kendalltau(x[i], y[i]).statistic
            if np.isfinite(v):
                boot.append(v)
    tail = (100.0 - level) / 2
    return {"tau": kendalltau(x, y).statistic,
            "lo": float(np.percentile(boot, tail)) if boot else None,
            "hi": float(np.percentile(boot, 100.0 - tail)) if boot else None, "resamples": len(boot)}

"""Rank correlation of a zero-shot value with trained AP, with a bootstrap interval (Figure 6, the pooled
score-vs-AP study); the verdict rule of the claims register: a mean difference of two arms with a 95%
confidence interval (paired t on per-seed values, Welch t from per-arm mean/sd/n)."""
from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau, t as student_t


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


#: Fewer models than this give no interval for a difference of taus (so no verdict): with 3 models every
#: usable resample is the original set again and the "interval" collapses onto the point value; with 4-5 the
#: bootstrap distribution is a handful of subsets whose percentiles do not cover.
MIN_MODELS_FOR_INTERVAL = 6


def kendall_difference_interval(x_a, x_b, y, n_boot: int, rng: np.random.Generator, level: float = 95.0,
                                min_models: int = MIN_MODELS_FOR_INTERVAL) -> dict:
    """tau(x_a, y) - tau(x_b, y) with a paired percentile bootstrap interval: both taus are computed on the
    same resample of the models, so what they share (the same APs) cancels. ``lo``/``hi`` are None when
    there are fewer than ``min_models`` models (:data:`MIN_MODELS_FOR_INTERVAL`) or no resample defines both
    taus (constant values)."""
    x_a, x_b, y = (np.asarray(v, dtype=float) for v in (x_a, x_b, y))
    if not (x_a.shape == x_b.shape == y.shape) or y.ndim != 1:
        raise ValueError(f"x_a, x_b and y must be 1-D and of one length, got {x_a.shape}, {x_b.shape}, {y.shape}")
    boot = []
    for _ in range(int(n_boot) if len(y) >= int(min_models) else 0):
        i = rng.integers(0, len(y), len(y))
        if len(set(i.tolist())) > 2:
            v = kendalltau(x_a[i], y[i]).statistic - kendalltau(x_b[i], y[i]).statistic
            if np.isfinite(v):
                boot.append(v)
    tail = (100.0 - level) / 2
    diff = kendalltau(x_a, y).statistic - kendalltau(x_b, y).statistic if len(y) > 1 else float("nan")
    return {"diff": float(diff), "lo": float(np.percentile(boot, tail)) if boot else None,
            "hi": float(np.percentile(boot, 100.0 - tail)) if boot else None, "resamples": len(boot)}


PAIRED, WELCH, ONE_SAMPLE = "paired t, 95% CI", "Welch t, 95% CI", "one-sample t, 95% CI"


def _interval(diff: float, se: float, df: float, level: float) -> tuple[float, float]:
    if se == 0 or not np.isfinite(df):
        return diff, diff
    q = student_t.ppf(0.5 + level / 2, df)
    return diff - q * se, diff + q * se


def paired_interval(a, b, level: float = 0.95) -> dict:
    """Mean of ``a - b`` over paired seeds (same seeds, same order) with its t interval."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    out = {"diff": float(d.mean()) if n else float("nan"), "n_a": n, "n_b": n, "rule": PAIRED}
    if n < 2:
        return {**out, "lo": None, "hi": None}
    lo, hi = _interval(out["diff"], float(d.std(ddof=1) / np.sqrt(n)), n - 1, level)
    return {**out, "lo": float(lo), "hi": float(hi)}


def one_sample_interval(values, reference: float, level: float = 0.95) -> dict:
    """Mean of ``values - reference`` with its t interval (e.g. a search's best score against a published one)."""
    v = np.asarray(values, dtype=float)
    return {**paired_interval(v, np.full(len(v), float(reference)), level), "rule": ONE_SAMPLE}


def welch_interval(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
                   level: float = 0.95) -> dict:
    """``mean_a - mean_b`` with the Welch-Satterthwaite t interval, from per-arm mean, sample sd and n."""
    out = {"diff": float(mean_a - mean_b), "n_a": int(n_a), "n_b": int(n_b), "rule": WELCH}
    if n_a < 2 or n_b < 2:
        return {**out, "lo": None, "hi": None}
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1)) if se > 0 else float("inf")
    lo, hi = _interval(out["diff"], se, df, level)
    return {**out, "lo": float(lo), "hi": float(hi)}


def verdict(interval: dict | None, direction: str, reason: str = "no result") -> str:
    """The claim's verdict from a difference interval. ``direction``: ``>`` (the paper: a - b > 0), ``<``, or
    ``=`` (the paper: no difference; only a contradiction can be shown). None: "not tested here: REASON"."""
    if direction not in (">", "<", "="):
        raise ValueError(f"direction must be '>', '<' or '=', got {direction!r}")
    if interval is None:
        return f"not tested here: {reason}"
    if min(interval["n_a"], interval["n_b"]) < 2 or interval["lo"] is None:
        return "not resolved (one run)"
    lo, hi = interval["lo"], interval["hi"]
    if lo <= 0 <= hi:
        return "not resolved"
    if direction == "=":
        return "contradicted"
    return "holds" if (lo > 0) == (direction == ">") else "contradicted"


def power_t(n: int, delta: float, sd: float, paired: bool = True, alpha: float = 0.05) -> float:
    """Power of the two-sided t test at level ``alpha`` to detect a true mean difference ``delta``: paired (one-
    sample t on ``n`` per-seed differences whose sd is ``sd``) or unpaired (two arms of ``n`` runs, each with
    sd ``sd``, pooled t). Exact, from the noncentral t distribution."""
    from scipy.stats import nct

    if n < 2 or sd <= 0:
        raise ValueError(f"power needs n >= 2 and sd > 0, got n={n}, sd={sd}")
    if paired:
        df, nc = n - 1, delta / (sd / np.sqrt(n))
    else:
        df, nc = 2 * n - 2, delta / (sd * np.sqrt(2.0 / n))
    q = student_t.ppf(1 - alpha / 2, df)
    with np.errstate(divide="ignore", invalid="ignore"):  # scipy's boost kernels warn at tiny df
        return float(nct.sf(q, df, nc) + nct.cdf(-q, df, nc))


def seeds_for_power(delta: float, sd: float, paired: bool = True, power: float = 0.8, alpha: float = 0.05,
                    max_n: int = 10_000) -> int:
    """The smallest number of seeds per arm (paired: of seed pairs) whose t test detects ``delta`` with at
    least ``power`` (two-sided ``alpha``); e.g. unpaired, delta = sd: 17 per arm."""
    if delta <= 0 or sd <= 0:
        raise ValueError(f"delta and sd must be positive, got delta={delta}, sd={sd}")
    for n in range(2, max_n + 1):
        if power_t(n, delta, sd, paired, alpha) >= power:
            return n
    raise ValueError(f"more than {max_n} seeds needed (delta={delta}, sd={sd})")


def detectable_effect(n: int, sd: float, paired: bool = True, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference that ``n`` seeds (paired: ``n`` pairs) detect with ``power`` at two-sided
    ``alpha``: the inverse of :func:`power_t` in ``delta`` (what a comparison at this many seeds can resolve)."""
    from scipy.optimize import brentq

    if n < 2 or sd <= 0:
        raise ValueError(f"a detectable effect needs n >= 2 and sd > 0, got n={n}, sd={sd}")
    hi = sd
    while power_t(n, hi, sd, paired, alpha) < power:
        hi *= 2
    return float(brentq(lambda d: power_t(n, d, sd, paired, alpha) - power, 0.0, hi, xtol=1e-6))

"""How often Algorithm 1 reaches the published structures: the Figure 8/9/10 searches over many seeds.

Each cell of the study is one search setting of Appendix G (the score's alpha and the mutation mode, with the
published structure it should reach) under one mutation space (``paper``: the paper's text; ``released``: the
authors' released search, docs/search.md), run for every seed at the paper's settings (Table 15 start, 4.4G at
224x224, 91 layers, N = 256, T = 96,000). Every search is resumable (``run_or_resume``), so a killed study
picks up where it stopped, and runs in a process of its own (``workers`` at a time).
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .search import Budget, load_trajectory, make_config, run_or_resume

# Appendix G: figure -> (alpha, mutation, the published structure that figure's search produced)
SETTINGS: dict[int, dict] = {
    8: {"alpha": (0, 0, 0, 0, 1), "mutation": "coarse", "published": "table4-single-coarse"},
    9: {"alpha": (0, 0, 1, 1, 6), "mutation": "coarse", "published": "table4-multi-coarse"},
    10: {"alpha": (0, 0, 1, 1, 6), "mutation": "coarse-to-fine", "published": "maedet-m"},
}
MAX_SEEDS = 1000
REACH_PCT = 0.1  # a search "reaches" the published score when it ends within this % below it (or above)


def _config(figure: int, space: str, seed: int, population: int, iterations: int, resolution: int,
            budget_flops_224: float, budget_layers: int, log_every: int, estimator: str = "expected"):
    s = SETTINGS[figure]
    return make_config("init", estimator=estimator, alpha=list(s["alpha"]), resolution=resolution,
                       budget=Budget(flops=budget_flops_224, layers=budget_layers, flops_resolution=224),
                       population=population, iterations=iterations, mutation=s["mutation"], space=space,
                       seed=seed, log_every=log_every)


def _run_one(job):
    figure, space, seed, kw, out = job
    return (figure, space, seed), run_or_resume(_config(figure, space, seed, **kw), out)


def converged_at(out_dir: str | Path, final: float, pct: float = REACH_PCT) -> int:
    """The first logged iteration at which the best score is within ``pct`` % of the search's final best."""
    traj = load_trajectory(out_dir)
    hit = traj[traj["best_score"] >= final - abs(final) * pct / 100]
    return int(hit["iter"].iloc[0]) if len(hit) else int(traj["iter"].iloc[-1])


def run_study(out_dir: str | Path, figures=(8, 9, 10), spaces=("paper", "released"), seeds=range(10),
              population: int = 256, iterations: int = 96000, resolution: int = 384,
              budget_flops_224: float = 4.4e9, budget_layers: int = 91, log_every: int = 96, workers: int = 1):
    """Run (or resume) every search of the study; one row per search (a pandas DataFrame)."""
    import pandas as pd

    figures, spaces, seeds = [int(f) for f in figures], [str(s) for s in spaces], [int(s) for s in seeds]
    unknown = [f for f in figures if f not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; the study covers {sorted(SETTINGS)}")
    if not seeds or len(seeds) > MAX_SEEDS or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be 1..{MAX_SEEDS} distinct non-negative integers, got {seeds}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    kw = dict(population=population, iterations=iterations, resolution=resolution,
              budget_flops_224=budget_flops_224, budget_layers=budget_layers, log_every=log_every)
    # validate every configuration (space names, budgets) before anything runs
    for f in figures:
        for sp in spaces:
            _config(f, sp, seeds[0], **kw)
    out_dir = Path(out_dir)
    jobs = [(f, sp, s, kw, str(out_dir / f"figure{f}-{sp}" / f"seed{s}")) for f in figures for sp in spaces
            for s in seeds]
    if workers == 1:
        done = dict(_run_one(j) for j in jobs)
    else:
        with ProcessPoolExecutor(workers) as ex:
            done = dict(ex.map(_run_one, jobs))
    rows = []
    for f, sp, s, _, out in jobs:
        r = done[(f, sp, s)]
        rows.append({"figure": f"figure{f}", "space": sp, "seed": s, "score": r["score"], "flops_224": r["flops"],
                     "params": r["params"], "layers": r["layers"],
                     **{f"C{j + 1}": v for j, v in enumerate(r["stage_layers"])},
                     "converged_at": converged_at(out, r["score"])})
    return pd.DataFrame(rows)


def reach_summary(frame, published: dict, pct: float = REACH_PCT):
    """Per figure and space: seeds, how many reach the published score (within ``pct`` %), the mean, sd, min
    and max final score, the published score and the median convergence iteration."""
    import pandas as pd

    rows = []
    for (fig, sp), g in frame.groupby(["figure", "space"], sort=False):
        ref = float(published[fig])
        reach = int((g["score"] >= ref - abs(ref) * pct / 100).sum())
        rows.append({"figure": fig, "space": sp, "seeds": len(g), "reach": reach, "published": ref,
                     "mean": g["score"].mean(), "sd": g["score"].std(ddof=1) if len(g) > 1 else float("nan"),
                     "min": g["score"].min(), "max": g["score"].max(),
                     "median_converged_at": float(g["converged_at"].median())})
    return pd.DataFrame(rows)

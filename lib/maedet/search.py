"""Algorithm 1: evolutionary search maximising the multi-scale entropy under a budget, and random search.

The loop, for t = 1..T:

1. with coarse-to-fine mutation, at t = T/2 keep only the top 10 of the population and switch to fine
   mutation;
2. draw a parent uniformly from the population and MUTATE it;
3. if the child breaks the budget (FLOPs, params, layers, optionally measured latency), is already in the
   population, or breaks the mutation space's rules: do nothing;
4. else score it and append it; if the population exceeds N, remove its lowest-scoring member.

With the ``released`` mutation space (docs/search.md) MUTATE also gets the layer budget (its per-block retry
and depth caps use it) and the population starts, as in the released code, as N copies of the initial
structure, collapsed to one by the first eviction.

The best member at the end is the result. Random search (Appendix F) is the same loop with the
``random`` estimator (a pseudo-random score per structure, so eviction is random) that records every
candidate in a FLOPs/params window and draws its sample from them.

A search is seeded (numpy PCG64) and the score is a pure function of the structure, so the same settings
give the same trajectory. It checkpoints its whole state (population, RNG, counters, log offsets)
atomically; ``resume=True`` continues from the last checkpoint and ends with exactly the result of an
uninterrupted run.
"""
from __future__ import annotations

import bisect
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import flops as flops_mod
from .mutation import get_space, mutate
from .score import ScoreSettings, parse_alpha, score
from .structure import Structure, load

MUTATION_MODES = ("coarse", "coarse-to-fine", "fine")
CHECKPOINT = "checkpoint.json"
TRAJECTORY = "trajectory.jsonl"
CANDIDATES = "candidates.jsonl"
BEST = "best.json"
CONFIG = "config.json"


class SearchError(ValueError):
    """Bad search settings or an unusable output directory."""


# Far above the paper's N = 256, T = 96,000; a mistyped value is rejected instead of running for days.
MAX_POPULATION, MAX_ITERATIONS = 100_000, 10_000_000


@dataclass(frozen=True)
class Budget:
    """Upper limits (None = unconstrained) and, for random search, the lower edge of the window."""

    flops: float | None = None            # MACs at ``flops_resolution``
    params: float | None = None
    layers: int | None = None
    latency_ms: float | None = None       # measured on this machine (breaks exact reproducibility)
    flops_resolution: tuple = (224, 224)
    flops_convention: str = "paper"
    flops_min: float | None = None
    params_min: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "flops_resolution", flops_mod.parse_resolution(self.flops_resolution))
        for f in ("flops", "params", "layers", "latency_ms", "flops_min", "params_min"):
            v = getattr(self, f)
            if v is not None and not (v > 0):
                raise SearchError(f"budget {f} must be positive, got {v}")


@dataclass(frozen=True)
class SearchConfig:
    init: dict                          # the initial structure, as a dict
    estimator: str = "expected"
    alpha: tuple | None = (0.0, 0.0, 1.0, 1.0, 6.0)
    resolution: tuple = (384, 384)
    batch_size: int = 32
    repeats: int = 4
    dtype: str = "float32"
    score_seed: int = 0
    budget: Budget = field(default_factory=Budget)
    population: int = 256
    iterations: int = 96000
    mutation: str = "coarse-to-fine"
    space: str = "paper"
    keep_top_at_switch: int = 10
    seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 2000
    record_candidates: bool = False

    def __post_init__(self):
        object.__setattr__(self, "resolution", flops_mod.parse_resolution(self.resolution))
        object.__setattr__(self, "alpha", parse_alpha(self.alpha))
        if isinstance(self.budget, dict):
            object.__setattr__(self, "budget", Budget(**self.budget))
        if self.mutation not in MUTATION_MODES:
            raise SearchError(f"mutation must be one of {', '.join(MUTATION_MODES)}, got {self.mutation!r}")
        get_space(self.space)
        for f in ("population", "iterations", "log_every", "checkpoint_every", "keep_top_at_switch"):
            if getattr(self, f) < 1:
                raise SearchError(f"{f} must be >= 1, got {getattr(self, f)}")
        for f, lim in (("population", MAX_POPULATION), ("iterations", MAX_ITERATIONS)):
            if getattr(self, f) > lim:
                raise SearchError(f"{f} is {getattr(self, f)}, more than the limit of {lim:,}")
        b = self.budget
        if all(v is None for v in (b.flops, b.params, b.layers, b.latency_ms)):
            # without one the entropy grows with every mutation and so does each iteration's cost
            raise SearchError("the search needs a budget: give at least one of FLOPs, params, layers or latency "
                              "(--budget-flops, --budget-params, --budget-layers, --budget-latency-ms)")

    @property
    def settings(self) -> ScoreSettings:
        return ScoreSettings(self.resolution, self.batch_size, self.repeats, self.dtype, self.score_seed)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        d["alpha"] = list(self.alpha) if self.alpha is not None else None
        d["budget"]["flops_resolution"] = list(self.budget.flops_resolution)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        d = dict(d)
        b = dict(d.get("budget", {}))
        if isinstance(b.get("flops_resolution"), list):  # JSON form (to_dict writes a list)
            b["flops_resolution"] = tuple(b["flops_resolution"])
        d["budget"] = Budget(**b)
        d["resolution"] = tuple(d["resolution"])
        if d.get("alpha") is not None:
            d["alpha"] = tuple(d["alpha"])
        return cls(**d)


@dataclass
class Member:
    structure: Structure
    score: float
    macs: int
    params: int
    layers: int
    stage_layers: list
    born: int

    def record(self) -> dict:
        return {"digest": self.structure.digest(), "score": self.score, "flops": self.macs, "params": self.params,
                "layers": self.layers, "stage_layers": self.stage_layers, "born": self.born}


def _jsonable_rng_state(rng: np.random.Generator) -> dict:
    st = rng.bit_generator.state
    return json.loads(json.dumps(st, default=int))


class Search:
    """One evolutionary (or random) search writing into ``out_dir``."""

    def __init__(self, config: SearchConfig, out_dir: str | Path | None = None, progress: bool = False):
        self.cfg = config
        self.out = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.init = Structure.from_dict(config.init)
        self.space = get_space(config.space)
        self._score_cache: dict = {}
        self._check_alpha()

    # ---- evaluation ---------------------------------------------------------------------------------
    def _check_alpha(self):
        n = self.init.num_stages
        if self.cfg.alpha is not None and len(self.cfg.alpha) != n and self.cfg.estimator != "random":
            raise SearchError(f"alpha has {len(self.cfg.alpha)} weights but the initial structure has {n} stages")

    def cost(self, s: Structure):
        b = self.cfg.budget
        c = flops_mod.count(s, b.flops_resolution, b.flops_convention)
        return c.macs, c.params

    def within_budget(self, s: Structure, macs: int, params: int) -> bool:
        b = self.cfg.budget
        if b.layers is not None and s.layers > b.layers:
            return False
        if b.flops is not None and macs > b.flops:
            return False
        if b.params is not None and params > b.params:
            return False
        if b.latency_ms is not None and measure_latency_ms(s, b.flops_resolution) > b.latency_ms:
            return False
        return True

    def in_window(self, macs: int, params: int) -> bool:
        b = self.cfg.budget
        return (b.flops_min is None or macs >= b.flops_min) and (b.params_min is None or params >= b.params_min)

    def evaluate(self, s: Structure) -> float:
        key = s.key()
        hit = self._score_cache.get(key)
        if hit is None:
            est = self.cfg.estimator
            hit = score(s, est, None if est == "random" else self.cfg.alpha, self.cfg.settings).score
            if len(self._score_cache) > 1_000_000:
                self._score_cache.clear()
            self._score_cache[key] = hit
        return hit

    def member(self, s: Structure, born: int) -> Member:
        macs, params = self.cost(s)
        return Member(s, self.evaluate(s), macs, params, s.layers, s.stage_layers(), born)

    # ---- state --------------------------------------------------------------------------------------
    def _fresh_state(self):
        macs, params = self.cost(self.init)
        if not self.within_budget(self.init, macs, params):
            b = self.cfg.budget
            raise SearchError(
                f"the initial structure already breaks the budget (FLOPs {macs / 1e9:.3f}G, params "
                f"{params / 1e6:.2f}M, layers {self.init.layers}; budget FLOPs "
                f"{b.flops and b.flops / 1e9}G, params {b.params and b.params / 1e6}M, layers {b.layers})"
            )
        start = self.member(replace(self.init, name="", source=""), 0)
        # the released code fills its population with N copies of the start (collapsed to one by the first
        # eviction's deduplication); the paper's Algorithm 1 starts from the one structure
        copies = self.cfg.population if self.space.start_copies else 1
        self.pop: list[Member] = [start] * copies
        self._order = [self._sort_key(start)] * copies
        self.keys = {start.structure.key()}
        self.rng = np.random.default_rng(self.cfg.seed)
        self.t = 0
        self.fine = self.cfg.mutation == "fine"
        self.stats = {"evaluated": 1, "over_budget": 0, "duplicate": 0, "invalid": 0}
        self.best_digest = None
        self.offsets = {TRAJECTORY: 0, CANDIDATES: 0}

    @staticmethod
    def _sort_key(m: Member):
        return (m.score, m.structure.digest())

    def _insert(self, m: Member):
        k = self._sort_key(m)
        i = bisect.bisect_left(self._order, k)
        self._order.insert(i, k)
        self.pop.insert(i, m)
        self.keys.add(m.structure.key())

    def _evict_to(self, n: int):
        if len(self.pop) > len(self.keys):  # copies of the start (released space): deduplicate first
            seen, pop = set(), []
            for m in self.pop:
                if m.structure.key() not in seen:
                    seen.add(m.structure.key())
                    pop.append(m)
            self.pop, self._order = pop, [self._sort_key(m) for m in pop]
        while len(self.pop) > n:
            gone = self.pop.pop(0)  # the lowest score
            self._order.pop(0)
            self.keys.discard(gone.structure.key())

    @property
    def best(self) -> Member:
        return self.pop[-1]

    def _state_dict(self) -> dict:
        return {
            "t": self.t, "fine": self.fine, "stats": self.stats, "best_digest": self.best_digest,
            "rng": _jsonable_rng_state(self.rng), "offsets": self.offsets,
            "population": [dict(m.record(), structure=m.structure.to_dict()) for m in self.pop],
            "done": self.t >= self.cfg.iterations,
        }

    def _load_state(self, d: dict):
        self.t, self.fine, self.stats = d["t"], d["fine"], d["stats"]
        self.best_digest, self.offsets = d["best_digest"], d["offsets"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = d["rng"]
        self.pop = []
        for r in d["population"]:
            s = Structure.from_dict(r["structure"])
            self.pop.append(Member(s, r["score"], r["flops"], r["params"], r["layers"], r["stage_layers"], r["born"]))
            self._score_cache[s.key()] = r["score"]
        self.keys = {m.structure.key() for m in self.pop}
        self._order = [self._sort_key(m) for m in self.pop]

    # ---- files --------------------------------------------------------------------------------------
    def _write_json(self, name: str, obj):
        tmp = self.out / (name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.out / name)

    def _open_logs(self):
        self._logs = {}
        for name in (TRAJECTORY, CANDIDATES):
            if name == CANDIDATES and not self.cfg.record_candidates:
                continue
            p = self.out / name
            f = open(p, "a+b")
            f.truncate(self.offsets[name])  # drop lines written after the last checkpoint
            f.seek(self.offsets[name])
            self._logs[name] = f

    def _checkpoint(self):
        for name, f in self._logs.items():
            f.flush()
            os.fsync(f.fileno())
            self.offsets[name] = f.tell()
        self._write_json(CHECKPOINT, self._state_dict())

    def _log(self, name: str, obj: dict):
        self._logs[name].write((json.dumps(obj, separators=(",", ":")) + "\n").encode())

    # ---- the loop -----------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None) -> dict:
        """Run (or resume) the search; ``stop_after`` ends early after that many iterations (for tests).

        Returns the summary that is also written to ``best.json``.
        """
        cfg = self.cfg
        if self.out is not None:
            self._prepare_dir(resume)
            if getattr(self, "_finished", None) is not None:
                return self._finished
        else:
            self._fresh_state()
            self._logs = {}
        t_start = time.perf_counter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.iterations, initial=self.t, desc="search", mininterval=1.0, smoothing=0.05)
        half = cfg.iterations // 2
        done_here = 0
        try:
            while self.t < cfg.iterations:
                self.t += 1
                t = self.t
                if cfg.mutation == "coarse-to-fine" and t == max(half, 1) and not self.fine:
                    self._evict_to(cfg.keep_top_at_switch)
                    self.fine = True
                parent = self.pop[int(self.rng.integers(len(self.pop)))]
                child = mutate(parent.structure, self.space, self.fine, self.rng, budget_layers=cfg.budget.layers)
                accepted = False
                if child is None:
                    self.stats["invalid"] += 1
                elif child.key() in self.keys:
                    self.stats["duplicate"] += 1
                else:
                    macs, params = self.cost(child)
                    if not self.within_budget(child, macs, params):
                        self.stats["over_budget"] += 1
                    else:
                        m = Member(child, self.evaluate(child), macs, params, child.layers, child.stage_layers(), t)
                        self.stats["evaluated"] += 1
                        self._insert(m)
                        accepted = True
                        if cfg.record_candidates and self._logs:
                            self._log(CANDIDATES, dict(m.record(), iter=t, in_window=self.in_window(macs, params),
                                                       structure=child.to_dict()))
                        if len(self.pop) > cfg.population:
                            self._evict_to(cfg.population)
                if self._logs and (t % cfg.log_every == 0 or t == cfg.iterations):
                    b = self.best
                    line = {"iter": t, "phase": "fine" if self.fine else "coarse", "accepted": accepted,
                            "best_score": b.score, "mean_score": math.fsum(m.score for m in self.pop) / len(self.pop),
                            "population": len(self.pop), "best_flops": b.macs, "best_params": b.params,
                            "best_layers": b.layers, "best_stage_layers": b.stage_layers,
                            "best_digest": b.structure.digest()}
                    if line["best_digest"] != self.best_digest:
                        line["best_structure"] = b.structure.to_dict()
                        self.best_digest = line["best_digest"]
                    self._log(TRAJECTORY, line)
                if bar is not None:
                    bar.update(1)
                    if t % 500 == 0:
                        bar.set_postfix(best=f"{self.best.score:.2f}", pop=len(self.pop))
                done_here += 1
                if self._logs and (t % cfg.checkpoint_every == 0):
                    self._checkpoint()
                if stop_after is not None and done_here >= stop_after and t < cfg.iterations:
                    if self._logs:
                        self._checkpoint()
                    return {"stopped_at": t}
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - t_start
        summary = self._summary(seconds)
        if self.out is not None:
            self._checkpoint()
            for f in self._logs.values():
                f.close()
            # the file holds no wall time, so an unchanged search rewrites it byte-identically
            self._write_json(BEST, {k: v for k, v in summary.items() if k != "seconds_this_run"})
        return summary

    def _summary(self, seconds: float) -> dict:
        b = self.best
        return {
            "structure": b.structure.to_dict(),
            "score": b.score, "estimator": self.cfg.estimator,
            "alpha": list(self.cfg.alpha) if self.cfg.alpha is not None else None,
            "flops": b.macs, "params": b.params, "layers": b.layers, "stage_layers": b.stage_layers,
            "flops_resolution": list(self.cfg.budget.flops_resolution), "flops_convention": self.cfg.budget.flops_convention,
            "iterations": self.t, "stats": self.stats,
            "population_top": [m.record() for m in reversed(self.pop[-10:])],
            "seconds_this_run": round(seconds, 3),
        }

    def _prepare_dir(self, resume: bool):
        out = self.out
        cfg_path, ck = out / CONFIG, out / CHECKPOINT
        self._finished = None
        if out.exists() and any(out.iterdir()):
            if not resume:
                raise SearchError(f"{out} is not empty: pass resume=True (--resume) to continue that search, "
                                  f"or choose a new directory")
            if not cfg_path.exists() or not ck.exists():
                raise SearchError(f"{out} has no {CONFIG}/{CHECKPOINT} to resume from")
            stored = json.loads(cfg_path.read_text())
            if stored != json.loads(json.dumps(self.cfg.to_dict())):
                diff = sorted(k for k in set(stored) | set(self.cfg.to_dict())
                              if stored.get(k) != json.loads(json.dumps(self.cfg.to_dict())).get(k))
                raise SearchError(f"{out} holds a search with other settings (differs in: {', '.join(diff)})")
            state = json.loads(ck.read_text())
            self._load_state(state)
            if state.get("done") and (out / BEST).exists():
                self._finished = json.loads((out / BEST).read_text())
                return
        elif resume:
            raise SearchError(f"{out} holds no search to resume (no {CONFIG}/{CHECKPOINT}); drop --resume to "
                              f"start a new search there")
        else:
            self._fresh_state()  # validates the start before anything is written
            out.mkdir(parents=True, exist_ok=True)
            self._write_json(CONFIG, self.cfg.to_dict())
        self._open_logs()
        if self.t == 0:
            self._checkpoint()


def run_search(config: SearchConfig, out_dir=None, resume: bool = False, progress: bool = False) -> dict:
    return Search(config, out_dir, progress).run(resume=resume)


def make_config(init="init", **kw) -> SearchConfig:
    """A SearchConfig from an init spec (zoo name, path or Structure) and keyword settings."""
    s = load(init)
    budget = kw.pop("budget", None) or Budget()
    if isinstance(budget, dict):
        budget = Budget(**budget)
    return SearchConfig(init=s.to_dict(), budget=budget, **kw)


def random_sample(out_dir: str | Path, n: int, seed: int = 0) -> list[dict]:
    """Draw ``n`` distinct candidates inside the FLOPs/params window from a random search's log."""
    p = Path(out_dir) / CANDIDATES
    if not p.exists():
        raise SearchError(f"{p} not found: run the random search with record_candidates=True")
    seen, pool = set(), []
    for line in p.read_text().splitlines():
        r = json.loads(line)
        if r["in_window"] and r["digest"] not in seen:
            seen.add(r["digest"])
            pool.append(r)
    if len(pool) < n:
        raise SearchError(f"only {len(pool)} distinct candidates lie in the window, {n} requested")
    idx = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return [pool[i] for i in sorted(int(i) for i in idx)]


def measure_latency_ms(structure: Structure, resolution=(224, 224), repeats: int = 5) -> float:
    """Median wall time of one batch-1 forward pass of the training network on this machine."""
    import torch

    from .networks import Backbone

    net = Backbone(structure).eval()
    x = torch.randn(1, structure.in_channels, *flops_mod.parse_resolution(resolution))
    times = []
    with torch.no_grad():
        net(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def load_trajectory(out_dir: str | Path, every: int = 1):
    """The trajectory log as a pandas DataFrame (every ``every``-th line), with per-stage layer columns."""
    import pandas as pd

    rows = []
    with open(Path(out_dir) / TRAJECTORY) as f:
        for i, line in enumerate(f):
            if i % every and not line.startswith('{"iter":1,'):
                continue
            r = json.loads(line)
            r.pop("best_structure", None)
            for j, v in enumerate(r.pop("best_stage_layers")):
                r[f"layers_C{j + 1}"] = v
            rows.append(r)
    return pd.DataFrame(rows)


def best_at(out_dir: str | Path, iteration: int) -> Structure:
    """The best structure of the search at a given iteration (rebuilt from the trajectory log)."""
    last = None
    with open(Path(out_dir) / TRAJECTORY) as f:
        for line in f:
            r = json.loads(line)
            if r["iter"] > iteration:
                break
            if "best_structure" in r:
                last = r["best_structure"]
    if last is None:
        raise SearchError(f"no best structure logged up to iteration {iteration} in {out_dir}")
    return Structure.from_dict(last)


def run_or_resume(config: SearchConfig, out_dir: str | Path, progress: bool = False) -> dict:
    """Continue the search in ``out_dir`` if it holds these settings, else start it afresh there.

    What the pipeline's notebooks call: a killed stage picks up where it stopped; changed settings start over.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        cfg_path = out / CONFIG
        same = cfg_path.exists() and json.loads(cfg_path.read_text()) == json.loads(json.dumps(config.to_dict()))
        if same and (out / CHECKPOINT).exists():
            return Search(config, out, progress).run(resume=True)
        import shutil

        shutil.rmtree(out)
    return Search(config, out, progress).run()


def _run_one(args) -> dict:
    cfg_dict, out_dir, threads = args
    import torch

    torch.set_num_threads(max(1, int(threads)))
    return run_or_resume(SearchConfig.from_dict(cfg_dict), out_dir)


def run_many(jobs: dict, parallel: int = 2, threads: int = 1, progress: bool = True) -> dict:
    """Run (or resume, or reuse) several searches, ``parallel`` at a time in worker processes with
    ``threads`` torch threads each. ``jobs`` maps a name to ``(SearchConfig, out_dir)``; returns name ->
    summary. Each search is resumable on its own (:func:`run_or_resume`), so a killed batch loses at most
    ``checkpoint_every`` iterations per search."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    names = list(jobs)
    args = [(jobs[n][0].to_dict(), str(jobs[n][1]), threads) for n in names]
    bar = None
    if progress:
        from .report import progress as pbar

        bar = pbar(total=len(names), desc="searches", mininterval=1.0)
    out = {}
    try:
        if parallel <= 1:
            for n, a in zip(names, args):
                out[n] = _run_one(a)
                if bar is not None:
                    bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=parallel, mp_context=mp.get_context("spawn")) as ex:
                futs = {n: ex.submit(_run_one, a) for n, a in zip(names, args)}
                for n in names:
                    out[n] = futs[n].result()
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out

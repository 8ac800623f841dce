"""MUTATE (Algorithm 2): coarse and fine mutation of one or more super-blocks.

Coarse mutation alters a block's type, kernel, width (output channels), bottleneck width or depth; fine
mutation only its kernel and widths. Strides and the number of super-blocks stay those of the initial
structure (Table 15). Two presets encode the rules of the paper text and of the authors' released code
(facts file, section 4; docs/search.md), a third the MobileNetV2 space of Appendix B; a custom
:class:`MutationSpace` can be passed instead.

The ``released`` preset follows the released code's ``get_new_random_structure_info`` and
``space_K1KXK1.mutate_function``: two mutations per child, each redrawing its block (up to once per mutable
block) until the layer budget holds; widths clamped (to <= 2048, <= 4 x in, >= next.out / 4; the stem to
<= 32) instead of rejected; the bottleneck clamped to <= out and raised to >= out / 10; a kernel redrawn until
it changes (up to twice); a depth step in {-2, -1, +1, +2} bottlenecks redrawn up to four times and capped
(block 1 <= 3, the others <= budget_layers // 3 // (blocks - 2)). The one rule it still enforces by rejection is
bottleneck <= out (the released code accepts a child whose out shrank below its bottleneck).

The ``mbv2`` preset is the MobileNetV2 space of Appendix B (Table 6). The paper states only "the inverted
bottleneck block with expansion ratio of 1/3/6 ... other searching settings are the same as the Resnet-like
searching". Taken from the ``paper`` preset, as stated there: widths x {1/1.5, 1/1.25, 1, 1.25, 1.5, 2}
(multiples of 8, no caps), depth +-1 or 2, one block per child, coarse-to-fine (fine: kernel and widths, the
bottleneck, i.e. the expansion ratio, counted as a width), blocks deeper than 10 divided in two. An mbv2
block's bottleneck is a ratio in {1, 3, 6} times its input width (rounded to a multiple of 8): its bottleneck
mutation draws a ratio, and when the width of the block before it changes, its bottleneck follows with the
same ratio. What the paper leaves open, and the choice made:

- kernels: not stated for MB blocks ({3, 5} is the ResNet-like set); {3, 5, 7}, the depthwise kernels of
  mobile search spaces (a depthwise 7x7 costs little);
- depth: the ResNet-like "+-1 or 2" and "deeper than 10" count the paper's "# layers", pairs of bottlenecks
  (Appendix H: a ResBlock "is stacked by two Blocks"); there is no MB table, and MobileNetV2's rows hold
  1-4 units, so here both count inverted bottlenecks: depth +-1 or 2 units (>= 1), split above 10 units;
- the ratio's base: a super-block has one bottleneck width, ratio x the block's input width (the ratio of
  its first unit; its repeated units, whose input is ``out``, expand by ratio x in / out);
- the start: not given; ``mbv2-init`` of :mod:`maedet.zoo` (MobileNetV2-0.5's stem, strides and widths,
  one unit per row);
- SE: Table 6's MB-M-SE is "inserting SE modules to MAE-DET-MB-M", the searched MB-M (SE is removed while
  scoring anyway, ZenDet Appendix E), so the space has no SE option; :func:`maedet.zoo.with_se` inserts it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .structure import BLOCK_TYPES, Block, Structure, StructureError, validate

COARSE_FIELDS = ("type", "kernel", "width", "bottleneck", "depth")
FINE_FIELDS = ("kernel", "width", "bottleneck")


@dataclass(frozen=True)
class MutationSpace:
    name: str
    width_scales: tuple = (1 / 1.5, 1 / 1.25, 1.0, 1.25, 1.5, 2.0)
    kernels: tuple = (3, 5)
    depth_deltas: tuple = (-2, -1, 1, 2)   # in steps of ``depth_unit`` units
    depth_unit: int = 2                    # units per depth step (2 = the paper's "# layers" pairs)
    min_depth: int = 2
    channel_multiple: int = 8
    min_channels: int = 8
    max_channels: int | None = None
    max_out_over_in: float | None = None   # out <= r * in
    min_out_over_next: float | None = None  # out >= next.out / r
    btn_at_most_out: bool = False
    min_btn_over_out: float | None = None  # btn >= out / r
    blocks_per_child: int = 1
    block_types: tuple = ("bottleneck",)
    split_depth_over: int | None = None    # split a super-block deeper than this many units in two
    coarse_fields: tuple = COARSE_FIELDS
    fine_fields: tuple = FINE_FIELDS
    # --- the released code's mutation (the defaults leave the paper preset's behaviour untouched) ---
    # "distinct": ``blocks_per_child`` distinct blocks drawn at once, each mutated once; "retry": that many
    # mutations one after another (a block may be drawn twice), each redrawing its block, up to once per
    # mutable block, until the child keeps the layer budget (else the last try is kept)
    block_draw: str = "distinct"
    kernel_draws: int = 1                  # draws of a new kernel until it differs from the old one
    depth_draws: int = 1                   # draws of a depth step until the depth changes
    stem_max_channels: int | None = None   # a mutated stem width is clamped to <= this
    clamp_channels: int | None = None      # a mutated width or bottleneck is clamped to <= this
    clamp_out_over_in: float | None = None     # a mutated out is clamped to <= r * in ...
    clamp_out_over_next: float | None = None   # ... and then raised to >= next.out / r
    clamp_btn_to_out: bool = False         # a mutated bottleneck is clamped to <= out
    clamp_btn_over_out: float | None = None    # after any mutation of a block: btn raised to >= out / r
    first_block_max_depth: int | None = None   # a mutated depth of block 1 (after the stem) is capped here
    depth_cap_from_layers: bool = False    # other depths capped to budget_layers // 3 // (blocks - 2)
    start_copies: bool = False             # the search's population starts as N copies of the start
    # --- inverted bottlenecks (``mbv2``; None leaves every other block type and preset untouched) ---
    # an mbv2 block's bottleneck is one of these ratios x its input width (rounded to ``channel_multiple``):
    # its bottleneck mutation draws a ratio, a new input width rescales it with the same ratio, and a child
    # whose mbv2 block holds another bottleneck breaks the rules
    expansion_ratios: tuple | None = None

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, MutationSpace] = {
    # Appendix A: widths x {1/1.5, 1/1.25, 1, 1.25, 1.5, 2}, depth +-1 or 2 of the paper's "# layers"
    # (pairs of bottlenecks), kernel in {3, 5}, one block per child (Algorithm 2), and "blocks deeper
    # than 10 are divided into two blocks equally" (10 in the paper's notation = 20 bottlenecks).
    "paper": MutationSpace(name="paper", split_depth_over=20),
    # The released code (nas/search.py, nas/spaces/space_K1KXK1.py): widths and bottlenecks x {1.5, 1.25,
    # 0.8, 0.6, 0.5}, depth +-1 or 2 bottlenecks (>= 1), two mutations per child with the per-block retry,
    # out / kernel / bottleneck / depth 1/4 each (the stem: width only), its channel rules as clamps, the
    # depth caps, and N copies of the start. Its "minor mutation" (out and bottleneck only) is the fine mode.
    "released": MutationSpace(
        name="released", width_scales=(1.5, 1.25, 0.8, 0.6, 0.5), depth_unit=1, min_depth=1,
        max_channels=2048, btn_at_most_out=True, blocks_per_child=2, fine_fields=("width", "bottleneck"),
        block_draw="retry", kernel_draws=2, depth_draws=4, stem_max_channels=32, clamp_channels=2048,
        clamp_out_over_in=4.0, clamp_out_over_next=4.0, clamp_btn_to_out=True, clamp_btn_over_out=10.0,
        first_block_max_depth=3, depth_cap_from_layers=True, start_copies=True,
    ),
    # Appendix B (MAE-DET-MB, Table 6): the ``paper`` rules on inverted bottlenecks with expansion ratios
    # 1/3/6, kernels 3/5/7, depth steps and the split rule counted in units (module docstring).
    "mbv2": MutationSpace(
        name="mbv2", kernels=(3, 5, 7), depth_unit=1, min_depth=1, split_depth_over=10, block_types=("mbv2",),
        expansion_ratios=(1, 3, 6),
    ),
}

BLOCK_DRAWS = ("distinct", "retry")


def get_space(space: str | MutationSpace) -> MutationSpace:
    if isinstance(space, MutationSpace):
        return space
    if space not in PRESETS:
        raise ValueError(f"unknown mutation space {space!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[space]


def round_channels(c: float, space: MutationSpace) -> int:
    m = space.channel_multiple
    return max(space.min_channels, int(round(c / m)) * m)


def expansion_ratio(block: Block, space: MutationSpace):
    """The ratio of ``space.expansion_ratios`` that gives this mbv2 block's bottleneck from its input width,
    or None (another block type, a space without ratios, or a bottleneck off the set)."""
    if block.type != "mbv2" or not space.expansion_ratios:
        return None
    for r in space.expansion_ratios:
        if round_channels(r * block.in_channels, space) == block.bottleneck:
            return r
    return None


def _follow_input(structure: Structure, old: Structure, i: int, space: MutationSpace) -> Structure:
    """Block ``i`` got a new input width: an mbv2 block keeps its expansion ratio (no-op without ratios)."""
    if i >= len(structure.blocks):
        return structure
    r = expansion_ratio(old.blocks[i], space)
    b = structure.blocks[i]
    if r is None or b.in_channels == old.blocks[i].in_channels:
        return structure
    return structure.with_block(i, bottleneck=round_channels(r * b.in_channels, space))


def mutable_blocks(structure: Structure) -> list[int]:
    return [i for i, b in enumerate(structure.blocks) if BLOCK_TYPES[b.type].mutable]


def _fields_for(block: Block, fine: bool, space: MutationSpace) -> tuple:
    fields = space.fine_fields if fine else space.coarse_fields
    if block.type == "conv":  # the stem: only its width
        return tuple(f for f in fields if f == "width")
    out = []
    for f in fields:
        if f == "type" and len(space.block_types) < 2:
            continue
        if f == "bottleneck" and not BLOCK_TYPES[block.type].has_bottleneck:
            continue
        out.append(f)
    return tuple(out)


def depth_cap(structure: Structure, i: int, space: MutationSpace, budget_layers: int | None) -> int | None:
    """The largest depth a mutation may give block ``i`` (None: no cap)."""
    if space.first_block_max_depth is not None and i == 1:
        return space.first_block_max_depth
    if space.depth_cap_from_layers and budget_layers is not None and len(structure.blocks) > 2:
        per_unit = BLOCK_TYPES[structure.blocks[i].type].layers_per_unit
        return max(space.min_depth, budget_layers // per_unit // (len(structure.blocks) - 2))
    return None


def _new_width(structure: Structure, i: int, space: MutationSpace, rng: np.random.Generator) -> int:
    b = structure.blocks[i]
    new = round_channels(b.out_channels * float(rng.choice(space.width_scales)), space)
    if space.clamp_channels is not None:
        new = min(space.clamp_channels, new)
    if b.type == "conv":
        if space.stem_max_channels is not None:
            new = min(space.stem_max_channels, new)
        return new
    if space.clamp_out_over_in is not None:
        new = min(int(space.clamp_out_over_in * b.in_channels), new)
    if space.clamp_out_over_next is not None and i + 1 < len(structure.blocks):
        floor = round_channels(structure.blocks[i + 1].out_channels / space.clamp_out_over_next, space)
        new = max(floor, new)
    return new


def mutate_block(structure: Structure, i: int, fine: bool, space: MutationSpace,
                 rng: np.random.Generator, budget_layers: int | None = None) -> Structure:
    """Mutate one field of block ``i``, chosen uniformly among those the mode allows."""
    b = structure.blocks[i]
    fields = _fields_for(b, fine, space)
    if not fields:
        return structure
    f = fields[rng.integers(len(fields))]
    if f == "kernel":
        k = b.kernel
        for _ in range(max(1, space.kernel_draws)):
            k = int(rng.choice(space.kernels))
            if k != b.kernel:
                break
        child = structure.with_block(i, kernel=k)
    elif f == "width":
        child = structure.with_block(i, out_channels=_new_width(structure, i, space, rng))
        child = _follow_input(child, structure, i + 1, space)
    elif f == "bottleneck" and expansion_ratio(b, space) is not None:
        r = space.expansion_ratios[rng.integers(len(space.expansion_ratios))]
        child = structure.with_block(i, bottleneck=round_channels(r * b.in_channels, space))
    elif f == "bottleneck":
        btn = round_channels(b.bottleneck * float(rng.choice(space.width_scales)), space)
        if space.clamp_channels is not None:
            btn = min(space.clamp_channels, btn)
        if space.clamp_btn_to_out:
            btn = min(b.out_channels, btn)
        child = structure.with_block(i, bottleneck=btn)
    elif f == "depth":
        d = b.depth
        for _ in range(max(1, space.depth_draws)):
            d = max(space.min_depth, b.depth + space.depth_unit * int(rng.choice(space.depth_deltas)))
            if d != b.depth:
                break
        cap = depth_cap(structure, i, space, budget_layers)
        child = structure.with_block(i, depth=d if cap is None else min(cap, d))
    elif f == "type":
        others = [t for t in space.block_types if t != b.type]
        t = others[rng.integers(len(others))]
        btn = b.bottleneck if b.bottleneck is not None else round_channels(b.out_channels / 4, space)
        child = structure.with_block(i, type=t, bottleneck=btn)
    else:  # pragma: no cover
        raise ValueError(f"unknown mutation field {f!r}")
    nb = child.blocks[i]
    if space.clamp_btn_over_out is not None and nb.bottleneck is not None and \
            nb.bottleneck < nb.out_channels / space.clamp_btn_over_out:
        child = child.with_block(i, bottleneck=round_channels(nb.out_channels / space.clamp_btn_over_out, space))
    return child


def check_rules(structure: Structure, space: MutationSpace) -> str | None:
    """Why the structure breaks the space's channel rules, or None."""
    blocks = structure.blocks
    for i, b in enumerate(blocks):
        if not BLOCK_TYPES[b.type].mutable:
            continue
        if space.max_channels is not None and b.out_channels > space.max_channels:
            return f"block {i}: out {b.out_channels} > {space.max_channels}"
        if b.out_channels < space.min_channels:
            return f"block {i}: out {b.out_channels} < {space.min_channels}"
        if space.max_out_over_in is not None and b.type != "conv" and \
                b.out_channels > space.max_out_over_in * b.in_channels:
            return f"block {i}: out {b.out_channels} > {space.max_out_over_in} x in {b.in_channels}"
        if space.min_out_over_next is not None and i + 1 < len(blocks) and \
                b.out_channels * space.min_out_over_next < blocks[i + 1].out_channels:
            return f"block {i}: out {b.out_channels} < next out {blocks[i + 1].out_channels} / {space.min_out_over_next}"
        if space.expansion_ratios and b.type == "mbv2" and expansion_ratio(b, space) is None:
            return (f"block {i}: bottleneck {b.bottleneck} is not one of the ratios {space.expansion_ratios} "
                    f"x in {b.in_channels}")
        if b.bottleneck is not None:
            if space.btn_at_most_out and b.bottleneck > b.out_channels:
                return f"block {i}: bottleneck {b.bottleneck} > out {b.out_channels}"
            if space.min_btn_over_out is not None and b.bottleneck * space.min_btn_over_out < b.out_channels:
                return f"block {i}: bottleneck {b.bottleneck} < out {b.out_channels} / {space.min_btn_over_out}"
    return None


def split_deep_blocks(structure: Structure, limit: int | None, space: MutationSpace | None = None) -> Structure:
    """Divide every super-block deeper than ``limit`` units into two equal halves (paper, Appendix A).

    With a ``space`` of expansion ratios, the second half of an mbv2 block expands its input (``out``) by the
    first half's ratio."""
    if limit is None or all(b.depth <= limit for b in structure.blocks):
        return structure
    blocks = []
    for b in structure.blocks:
        if b.depth > limit and BLOCK_TYPES[b.type].has_bottleneck:
            first = b.depth - b.depth // 2
            second = replace(b, in_channels=b.out_channels, stride=1, depth=b.depth - first)
            r = expansion_ratio(b, space) if space is not None else None
            if r is not None:
                second = replace(second, bottleneck=round_channels(r * b.out_channels, space))
            blocks.append(replace(b, depth=first))
            blocks.append(second)
        else:
            blocks.append(b)
    return replace(structure, blocks=tuple(blocks))


def mutate(structure: Structure, space: str | MutationSpace = "paper", fine: bool = False,
           rng: np.random.Generator | None = None, budget_layers: int | None = None) -> Structure | None:
    """MUTATE(F, S, Flag): a child of ``structure``, or None when it breaks the space's rules.

    ``budget_layers`` (the search's layer budget) is used only by a space that retries blocks for it or caps
    depths by it (the released preset)."""
    space = get_space(space)
    rng = rng if rng is not None else np.random.default_rng()
    idx = mutable_blocks(structure)
    if not idx:
        raise StructureError("structure has no mutable block")
    if space.block_draw == "retry":
        child = structure
        for _ in range(space.blocks_per_child):
            for _ in range(len(idx)):
                tried = mutate_block(child, idx[int(rng.integers(len(idx)))], fine, space, rng, budget_layers)
                if budget_layers is None or tried.layers <= budget_layers:
                    break
            child = tried
    elif space.block_draw == "distinct":
        n = min(space.blocks_per_child, len(idx))
        chosen = rng.choice(len(idx), size=n, replace=False)
        child = structure
        for j in sorted(int(c) for c in chosen):
            child = mutate_block(child, idx[j], fine, space, rng, budget_layers)
    else:
        raise ValueError(f"unknown block_draw {space.block_draw!r}; one of {', '.join(BLOCK_DRAWS)}")
    child = split_deep_blocks(child, space.split_depth_over, space)
    try:
        validate(child)
    except StructureError:
        return None
    if check_rules(child, space) is not None:
        return None
    return child

"""MUTATE (Algorithm 2): coarse and fine mutation of one or more super-blocks.

Coarse mutation alters a block's type, kernel, width (output channels), bottleneck width or depth; fine
mutation only its kernel and widths. Strides and the number of super-blocks stay those of the initial
structure (Table 15). Two presets encode the rules of the paper text and of the authors' released code
(facts file, section 4); a custom :class:`MutationSpace` can be passed instead.
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

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, MutationSpace] = {
    # Appendix A: widths x {1/1.5, 1/1.25, 1, 1.25, 1.5, 2}, depth +-1 or 2 of the paper's "# layers"
    # (pairs of bottlenecks), kernel in {3, 5}, one block per child (Algorithm 2), and "blocks deeper
    # than 10 are divided into two blocks equally" (10 in the paper's notation = 20 bottlenecks).
    "paper": MutationSpace(name="paper", split_depth_over=20),
    # The released code: widths x {1.5, 1.25, 0.8, 0.6, 0.5}, depth +-1 or 2 bottlenecks (>= 1), two
    # blocks per child, and its channel rules.
    "released": MutationSpace(
        name="released", width_scales=(1.5, 1.25, 0.8, 0.6, 0.5), depth_unit=1, min_depth=1,
        max_channels=2048, max_out_over_in=4.0, min_out_over_next=4.0, btn_at_most_out=True,
        min_btn_over_out=10.0, blocks_per_child=2,
    ),
}


def get_space(space: str | MutationSpace) -> MutationSpace:
    if isinstance(space, MutationSpace):
        return space
    if space not in PRESETS:
        raise ValueError(f"unknown mutation space {space!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[space]


def round_channels(c: float, space: MutationSpace) -> int:
    m = space.channel_multiple
    return max(space.min_channels, int(round(c / m)) * m)


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


def mutate_block(structure: Structure, i: int, fine: bool, space: MutationSpace,
                 rng: np.random.Generator) -> Structure:
    """Mutate one field of block ``i``, chosen uniformly among those the mode allows."""
    b = structure.blocks[i]
    fields = _fields_for(b, fine, space)
    if not fields:
        return structure
    f = fields[rng.integers(len(fields))]
    if f == "kernel":
        return structure.with_block(i, kernel=int(rng.choice(space.kernels)))
    if f == "width":
        new = round_channels(b.out_channels * float(rng.choice(space.width_scales)), space)
        return structure.with_block(i, out_channels=new)
    if f == "bottleneck":
        return structure.with_block(i, bottleneck=round_channels(b.bottleneck * float(rng.choice(space.width_scales)),
                                                                 space))
    if f == "depth":
        d = b.depth + space.depth_unit * int(rng.choice(space.depth_deltas))
        return structure.with_block(i, depth=max(space.min_depth, d))
    if f == "type":
        others = [t for t in space.block_types if t != b.type]
        t = others[rng.integers(len(others))]
        btn = b.bottleneck if b.bottleneck is not None else round_channels(b.out_channels / 4, space)
        return structure.with_block(i, type=t, bottleneck=btn)
    raise ValueError(f"unknown mutation field {f!r}")  # pragma: no cover


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
        if b.bottleneck is not None:
            if space.btn_at_most_out and b.bottleneck > b.out_channels:
                return f"block {i}: bottleneck {b.bottleneck} > out {b.out_channels}"
            if space.min_btn_over_out is not None and b.bottleneck * space.min_btn_over_out < b.out_channels:
                return f"block {i}: bottleneck {b.bottleneck} < out {b.out_channels} / {space.min_btn_over_out}"
    return None


def split_deep_blocks(structure: Structure, limit: int | None) -> Structure:
    """Divide every super-block deeper than ``limit`` units into two equal halves (paper, Appendix A)."""
    if limit is None or all(b.depth <= limit for b in structure.blocks):
        return structure
    blocks = []
    for b in structure.blocks:
        if b.depth > limit and BLOCK_TYPES[b.type].has_bottleneck:
            first = b.depth - b.depth // 2
            blocks.append(replace(b, depth=first))
            blocks.append(replace(b, in_channels=b.out_channels, stride=1, depth=b.depth - first))
        else:
            blocks.append(b)
    return replace(structure, blocks=tuple(blocks))


def mutate(structure: Structure, space: str | MutationSpace = "paper", fine: bool = False,
           rng: np.random.Generator | None = None) -> Structure | None:
    """MUTATE(F, S, Flag): a child of ``structure``, or None when it breaks the space's rules."""
    space = get_space(space)
    rng = rng if rng is not None else np.random.default_rng()
    idx = mutable_blocks(structure)
    if not idx:
        raise StructureError("structure has no mutable block")
    n = min(space.blocks_per_child, len(idx))
    chosen = rng.choice(len(idx), size=n, replace=False)
    child = structure
    for j in sorted(int(c) for c in chosen):
        child = mutate_block(child, idx[j], fine, space, rng)
    child = split_deep_blocks(child, space.split_depth_over)
    try:
        validate(child)
    except StructureError:
        return None
    if check_rules(child, space) is not None:
        return None
    return child

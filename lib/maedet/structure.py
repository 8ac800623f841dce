"""Backbone structures: a plain, serialisable description of a detection backbone.

A structure is a sequence of *super-blocks* (the rows of the paper's Appendix-H tables). The first row
is normally the stem, a plain ``conv`` block; the others are ``bottleneck`` super-blocks (the paper's
"ResBlock"), ``mbv2`` inverted bottlenecks (Table 6), or a parameter-free ``maxpool`` (used only to express
the ResNet references exactly).

Depth convention
----------------
``Block.depth`` is always the number of *units* the super-block repeats: bottleneck blocks for
``bottleneck``, inverted bottlenecks for ``mbv2``. The paper's tables count differently: a "ResBlock" row
with "# layers = L" stacks 2L bottleneck blocks. Convert only through :func:`paper_layers_to_depth` /
:func:`depth_to_paper_layers`.

Stages
------
The stage of a block is given by the cumulative stride of its output: all blocks whose output has the same
stride form one stage, numbered C1, C2, ... in order (C1 = the stem at stride 2 for a detection
backbone, C5 at stride 32). A stage's feature is the output of its last block.

Inverted bottleneck (``mbv2``)
------------------------------
MobileNetV2's unit (Sandler et al. 2018): a 1x1 *expansion* conv (in -> bottleneck) with ReLU, a k x k
*depthwise* conv (groups = bottleneck, stride s) with ReLU, an optional squeeze-and-excitation (``se``, on
the bottleneck width, between the depthwise and the projection conv, where the authors' released
``ResK1DWSEK1`` block puts it), and a linear 1x1 *projection* conv (bottleneck -> out); an identity link
when in = out and s = 1, no link otherwise. The bottleneck width is the expansion ratio times the unit's
input width. A unit whose bottleneck equals its input width (expansion ratio 1) has no expansion conv, as
in MobileNetV2 itself (mmdet's ``InvertedResidual``: ``with_expand_conv = mid_channels != in_channels``).
One super-block has one bottleneck width for all its units, while MobileNetV2 expands every unit's own
input (6 x in for the first unit of a row, 6 x out for the others): a MobileNetV2 row is therefore written
as two blocks, the first unit and the remaining units (see :mod:`maedet.zoo`).

Layer count
-----------
One per ``conv`` block, three per bottleneck or inverted-bottleneck unit (MAE-DET-M: 1 + 3 x 30 = 91),
two per inverted bottleneck without expansion conv. SE layers are not counted.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

FORMAT = "maedet-structure/1"


class StructureError(ValueError):
    """An impossible or malformed structure. The message names the block and the field."""


# --------------------------------------------------------------------------------------------------
# Primitive operations a block expands into (used by FLOPs/params counting, scoring and builders).
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conv:
    """A bias-free convolution (padding = kernel // 2), followed in the training network by BN."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    groups: int = 1
    bn: bool = True
    relu: bool = True

    @property
    def fan_in(self) -> int:
        return (self.in_channels // self.groups) * self.kernel * self.kernel


@dataclass(frozen=True)
class SE:
    """Squeeze-and-excitation (Hu et al. 2018) on ``channels``: global average pooling, a 1x1 conv to
    ``reduced`` channels with bias and ReLU, a 1x1 conv back to ``channels`` with bias, a sigmoid, and the
    channel-wise product with its input. Keeps the shape; no BN."""

    channels: int
    reduced: int


def se_width(channels: int) -> int:
    """The reduced width of an SE layer on ``channels``: a quarter, rounded down to a multiple of 8, at
    least 8 (the authors' released SE: ``max(1, round(c * 0.25) // 8) * 8``)."""
    return max(1, round(channels * 0.25) // 8) * 8


@dataclass(frozen=True)
class Pool:
    """A pooling layer: ``max`` (kernel k, stride s, padding k//2) or ``avg`` (k = s, ceil mode)."""

    kind: str
    channels: int
    kernel: int
    stride: int


@dataclass(frozen=True)
class Unit:
    """One repeated unit of a super-block: a main path and an (optional) shortcut path.

    ``shortcut`` is ``None`` for no residual link, ``()`` for an identity link, or a tuple of ops.
    """

    main: tuple
    shortcut: tuple | None
    post_relu: bool = False  # ReLU after the residual addition (ResNet bottleneck)


# --------------------------------------------------------------------------------------------------
# Block types
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockType:
    name: str
    layers_per_unit: int           # counted layers per unit (the depth budget)
    paper_layer_factor: int        # units per "# layers" in the paper's tables
    has_bottleneck: bool
    mutable: bool                  # may the search mutate it?
    paper_name: str


BLOCK_TYPES: dict[str, BlockType] = {
    "conv": BlockType("conv", 1, 1, False, True, "Conv"),
    "bottleneck": BlockType("bottleneck", 3, 2, True, True, "ResBlock"),
    "mbv2": BlockType("mbv2", 3, 2, True, True, "MBBlock"),
    "maxpool": BlockType("maxpool", 0, 1, False, False, "MaxPool"),
}

SHORTCUTS = ("avgpool", "conv")  # how a strided/projecting bottleneck shortcut downsamples


def paper_layers_to_depth(block_type: str, paper_layers: int) -> int:
    """The paper's "# layers" column (Appendix H) -> number of units (``Block.depth``)."""
    return BLOCK_TYPES[block_type].paper_layer_factor * int(paper_layers)


def depth_to_paper_layers(block_type: str, depth: int) -> float:
    """``Block.depth`` -> the paper's "# layers" notation (may be fractional for odd depths)."""
    f = BLOCK_TYPES[block_type].paper_layer_factor
    return depth // f if depth % f == 0 else depth / f


@dataclass(frozen=True)
class Block:
    """One super-block: a row of the paper's architecture tables (depth in units, see module doc)."""

    type: str
    kernel: int
    in_channels: int
    out_channels: int
    stride: int
    bottleneck: int | None = None
    depth: int = 1
    se: bool = False   # squeeze-and-excitation in every unit (``mbv2`` only)

    @property
    def layers(self) -> int:
        n = BLOCK_TYPES[self.type].layers_per_unit * self.depth
        if self.type == "mbv2":  # units without expansion conv (bottleneck = the unit's input width)
            n -= (self.bottleneck == self.in_channels) + (self.depth - 1) * (self.bottleneck == self.out_channels)
        return n

    def units(self, shortcut: str = "avgpool") -> list[Unit]:
        """Expand into its repeated units. Only the first unit strides and changes the width."""
        return _expand(self, shortcut)

    def unit_groups(self, shortcut: str = "avgpool") -> list[tuple[Unit, int]]:
        """``[(first unit, 1), (repeated unit, depth - 1)]``: units 2..depth are identical, so counting and
        the closed-form scores take them once with a multiplicity instead of expanding them one by one."""
        units = self._units(shortcut, limit=2)
        return [(units[0], 1)] + ([(units[1], self.depth - 1)] if self.depth > 1 else [])

    def _units(self, shortcut: str, limit: int | None = None) -> list[Unit]:
        t = self.type
        if t == "conv":
            return [Unit((Conv(self.in_channels, self.out_channels, self.kernel, self.stride),), None)]
        if t == "maxpool":
            return [Unit((Pool("max", self.in_channels, self.kernel, self.stride),), None)]
        out, btn, k = self.out_channels, self.bottleneck, self.kernel
        units = []
        for i in range(self.depth if limit is None else min(self.depth, limit)):
            cin = self.in_channels if i == 0 else out
            s = self.stride if i == 0 else 1
            if t == "bottleneck":
                main = (Conv(cin, btn, 1), Conv(btn, btn, k, s), Conv(btn, out, 1, relu=False))
                if cin == out and s == 1:
                    sc: tuple = ()
                elif shortcut == "avgpool":
                    sc = ((Pool("avg", cin, 2, 2),) if s == 2 else ()) + (Conv(cin, out, 1, relu=False),)
                else:  # "conv": ResNet's strided 1x1 projection
                    sc = (Conv(cin, out, 1, s, relu=False),)
                units.append(Unit(main, sc, post_relu=True))
            elif t == "mbv2":
                expand = (Conv(cin, btn, 1),) if btn != cin else ()  # expansion ratio 1: no expansion conv
                se = (SE(btn, se_width(btn)),) if self.se else ()
                main = expand + (Conv(btn, btn, k, s, groups=btn),) + se + (Conv(btn, out, 1, relu=False),)
                units.append(Unit(main, () if (cin == out and s == 1) else None))
            else:  # pragma: no cover - guarded by validation
                raise StructureError(f"unknown block type {t!r}")
        return units

    def to_dict(self) -> dict:
        d = asdict(self)
        if not BLOCK_TYPES[self.type].has_bottleneck:
            d.pop("bottleneck")
        if not self.se:  # written only when set, so files without SE stay as they were
            d.pop("se")
        return d


@functools.lru_cache(maxsize=65536)
def _expand(block: Block, shortcut: str) -> list[Unit]:
    return block._units(shortcut)


@dataclass(frozen=True)
class Structure:
    """A backbone: blocks[0] is normally the stem. Immutable and hashable (used for deduplication)."""

    blocks: tuple[Block, ...]
    in_channels: int = 3
    shortcut: str = "avgpool"
    name: str = field(default="", compare=False)
    source: str = field(default="", compare=False)

    # ---- derived quantities ---------------------------------------------------------------------
    @property
    def layers(self) -> int:
        return sum(b.layers for b in self.blocks)

    @property
    def out_strides(self) -> list[int]:
        s, out = 1, []
        for b in self.blocks:
            s *= b.stride
            out.append(s)
        return out

    @property
    def stage_of_block(self) -> list[int]:
        """0-based stage index of every block (stage i is the paper's C(i+1))."""
        stages, prev, idx = [], None, -1
        for s in self.out_strides:
            if s != prev:
                idx, prev = idx + 1, s
            stages.append(idx)
        return stages

    @property
    def num_stages(self) -> int:
        return self.stage_of_block[-1] + 1

    @property
    def stage_ends(self) -> list[int]:
        """Index of the last block of each stage."""
        sob = self.stage_of_block
        return [i for i in range(len(sob)) if i == len(sob) - 1 or sob[i + 1] != sob[i]]

    @property
    def stage_channels(self) -> list[int]:
        return [self.blocks[i].out_channels for i in self.stage_ends]

    @property
    def stage_strides(self) -> list[int]:
        st = self.out_strides
        return [st[i] for i in self.stage_ends]

    def stage_layers(self) -> list[int]:
        """Counted layers per stage (Figures 8-10 plot these)."""
        out = [0] * self.num_stages
        for b, s in zip(self.blocks, self.stage_of_block):
            out[s] += b.layers
        return out

    def key(self) -> tuple:
        """Hashable identity of the architecture (name and source ignored); computed once."""
        k = self.__dict__.get("_key")
        if k is None:
            k = (self.in_channels, self.shortcut) + tuple(
                (b.type, b.kernel, b.in_channels, b.out_channels, b.stride, b.bottleneck, b.depth)
                + (("se",) if b.se else ())
                for b in self.blocks
            )  # SE only when set: the keys and digests of structures without SE are unchanged
            object.__setattr__(self, "_key", k)
        return k

    def digest(self) -> str:
        d = self.__dict__.get("_digest")
        if d is None:
            d = hashlib.sha1(repr(self.key()).encode()).hexdigest()[:12]
            object.__setattr__(self, "_digest", d)
        return d

    # ---- editing --------------------------------------------------------------------------------
    def with_block(self, i: int, **changes) -> "Structure":
        """A copy with block i changed; a new ``out_channels`` is propagated to block i+1's input."""
        blocks = list(self.blocks)
        blocks[i] = replace(blocks[i], **changes)
        if "out_channels" in changes and i + 1 < len(blocks):
            blocks[i + 1] = replace(blocks[i + 1], in_channels=changes["out_channels"])
            if blocks[i + 1].type == "maxpool":  # a pool passes its width on
                blocks[i + 1] = replace(blocks[i + 1], out_channels=changes["out_channels"])
                if i + 2 < len(blocks):
                    blocks[i + 2] = replace(blocks[i + 2], in_channels=changes["out_channels"])
        return replace(self, blocks=tuple(blocks), name="", source="")

    # ---- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT}
        if self.name:
            d["name"] = self.name
        if self.source:
            d["source"] = self.source
        d["in_channels"] = self.in_channels
        d["shortcut"] = self.shortcut
        d["blocks"] = [b.to_dict() for b in self.blocks]
        return d

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "Structure":
        if not isinstance(d, dict):
            raise StructureError("a structure must be a JSON object")
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise StructureError(f"unsupported structure format {fmt!r} (expected {FORMAT!r})")
        unknown = set(d) - {"format", "name", "source", "in_channels", "shortcut", "blocks"}
        if unknown:
            raise StructureError(f"unknown top-level field(s): {', '.join(sorted(unknown))}")
        raw = d.get("blocks")
        if not isinstance(raw, list) or not raw:
            raise StructureError("field 'blocks' must be a non-empty list")
        blocks = []
        allowed = {"type", "kernel", "in_channels", "out_channels", "stride", "bottleneck", "depth", "paper_layers",
                   "se"}
        for i, b in enumerate(raw):
            if not isinstance(b, dict):
                raise StructureError(f"block {i}: must be an object")
            extra = set(b) - allowed
            if extra:
                raise StructureError(f"block {i}: unknown field(s) {', '.join(sorted(extra))}")
            b = dict(b)
            t = b.get("type")
            if t not in BLOCK_TYPES:
                raise StructureError(f"block {i}: unknown type {t!r} (known: {', '.join(BLOCK_TYPES)})")
            if "paper_layers" in b:  # the paper's notation, converted explicitly
                if "depth" in b:
                    raise StructureError(f"block {i}: give either 'depth' or 'paper_layers', not both")
                b["depth"] = paper_layers_to_depth(t, _int(b.pop("paper_layers"), i, "paper_layers"))
            for f in ("kernel", "in_channels", "out_channels", "stride"):
                if f not in b:
                    raise StructureError(f"block {i} ({t}): missing field '{f}'")
            kw = {f: _int(b[f], i, f) for f in ("kernel", "in_channels", "out_channels", "stride")}
            kw["depth"] = _int(b.get("depth", 1), i, "depth")
            btn = b.get("bottleneck")
            kw["bottleneck"] = None if btn is None else _int(btn, i, "bottleneck")
            se = b.get("se", False)
            if not isinstance(se, bool):
                raise StructureError(f"block {i}: field 'se' must be true or false, got {se!r}")
            blocks.append(Block(type=t, se=se, **kw))
        s = cls(
            blocks=tuple(blocks),
            in_channels=_int(d.get("in_channels", 3), None, "in_channels"),
            shortcut=d.get("shortcut", "avgpool"),
            name=str(d.get("name", "")),
            source=str(d.get("source", "")),
        )
        validate(s)
        return s

    @classmethod
    def from_json(cls, text: str) -> "Structure":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise StructureError(f"not valid JSON: {e}") from None
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        """Write atomically (a temporary file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)

    def table(self) -> str:
        """The structure as a Markdown table in the paper's Appendix-H notation, with the units beside it.

        "# layers" is the paper's count (a ResBlock row of L stacks 2L bottleneck units); a block whose unit
        count the paper's notation cannot express (an odd number of bottlenecks, which the fine mutation of
        coarse-to-fine reaches) shows "-" there, and its units column says what it holds."""
        rows = ["| block | kernel | in | out | stride | bottleneck | # layers | units | level |", "|---" * 9 + "|"]
        for b, s in zip(self.blocks, self.stage_of_block):
            pl = depth_to_paper_layers(b.type, b.depth)
            rows.append(
                f"| {BLOCK_TYPES[b.type].paper_name} | {b.kernel} | {b.in_channels} | {b.out_channels} | {b.stride} "
                f"| {b.bottleneck if b.bottleneck is not None else '-'} | {pl if isinstance(pl, int) else '-'} "
                f"| {b.depth} | C{s + 1} |"
            )
        return "\n".join(rows)


def _int(v, block, fld) -> int:
    where = f"block {block}" if block is not None else "structure"
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise StructureError(f"{where}: field '{fld}' must be an integer, got {v!r}")
    return int(v)


# Upper limits of a valid structure. No real backbone comes near them (ResNet-101: 2048 channels,
# 23 bottlenecks in one stage; the paper's kernels are 3/5/7); they exist so that
# a hand-edited file with an absurd value is rejected at load time instead of making a command run away.
LIMITS = {
    "blocks": 64,          # super-blocks per structure
    "channels": 1048576,   # in_channels / out_channels / bottleneck (a 4.4G search tries C5 widths of 18432)
    "kernel": 15,
    "depth": 256,          # units per super-block
    "layers": 4096,        # counted layers of the whole structure
}


def validate(s: Structure) -> Structure:
    """Reject impossible structures with a message naming the block and the field (limits: ``LIMITS``)."""
    if len(s.blocks) > LIMITS["blocks"]:
        raise StructureError(f"structure: {len(s.blocks)} blocks, more than the limit of {LIMITS['blocks']}")
    if s.in_channels <= 0:
        raise StructureError(f"structure: field 'in_channels' must be positive, got {s.in_channels}")
    if s.in_channels > LIMITS["channels"]:
        raise StructureError(f"structure: field 'in_channels' is {s.in_channels}, more than the limit of "
                             f"{LIMITS['channels']}")
    if s.shortcut not in SHORTCUTS:
        raise StructureError(f"structure: field 'shortcut' must be one of {SHORTCUTS}, got {s.shortcut!r}")
    prev_out = s.in_channels
    for i, b in enumerate(s.blocks):
        where = f"block {i} ({b.type})"
        if b.type not in BLOCK_TYPES:
            raise StructureError(f"block {i}: unknown type {b.type!r} (known: {', '.join(BLOCK_TYPES)})")
        bt = BLOCK_TYPES[b.type]
        for f in ("in_channels", "out_channels", "kernel", "depth"):
            if getattr(b, f) <= 0:
                raise StructureError(f"{where}: field '{f}' must be positive, got {getattr(b, f)}")
        for f, lim in (("in_channels", "channels"), ("out_channels", "channels"), ("bottleneck", "channels"),
                       ("kernel", "kernel"), ("depth", "depth")):
            v = getattr(b, f)
            if v is not None and v > LIMITS[lim]:
                raise StructureError(f"{where}: field '{f}' is {v}, more than the limit of {LIMITS[lim]}")
        if b.kernel % 2 == 0:
            raise StructureError(f"{where}: field 'kernel' must be odd, got {b.kernel}")
        if b.stride not in (1, 2):
            raise StructureError(f"{where}: field 'stride' must be 1 or 2, got {b.stride}")
        if b.in_channels != prev_out:
            raise StructureError(
                f"{where}: field 'in_channels' is {b.in_channels} but the previous output has {prev_out} channels"
            )
        if bt.has_bottleneck:
            if b.bottleneck is None or b.bottleneck <= 0:
                raise StructureError(f"{where}: field 'bottleneck' must be a positive integer, got {b.bottleneck}")
        elif b.bottleneck is not None:
            raise StructureError(f"{where}: field 'bottleneck' does not apply to type {b.type!r}")
        if b.type in ("conv", "maxpool") and b.depth != 1:
            raise StructureError(f"{where}: field 'depth' must be 1 for type {b.type!r}, got {b.depth}")
        if b.se and b.type != "mbv2":
            raise StructureError(f"{where}: field 'se' applies only to type 'mbv2'")
        if b.type == "maxpool" and b.out_channels != b.in_channels:
            raise StructureError(f"{where}: field 'out_channels' must equal 'in_channels' for a pool")
        prev_out = b.out_channels
    if s.layers > LIMITS["layers"]:
        raise StructureError(f"structure: {s.layers} layers, more than the limit of {LIMITS['layers']}")
    return s


def structure_from_rows(rows: Iterable[tuple], *, name: str = "", source: str = "", shortcut: str = "avgpool",
                        paper_notation: bool = True) -> Structure:
    """Build from Appendix-H rows ``(block, kernel, in, out, stride, bottleneck, layers)``.

    ``block`` is the paper's name ("Conv", "ResBlock", "MBBlock", "MaxPool"); with ``paper_notation`` the
    layers column is the paper's "# layers" and is converted with :func:`paper_layers_to_depth`.
    """
    by_paper = {bt.paper_name: bt.name for bt in BLOCK_TYPES.values()}
    blocks = []
    for blk, k, cin, cout, stride, btn, layers in rows:
        t = by_paper.get(blk, blk)
        depth = paper_layers_to_depth(t, layers) if paper_notation else layers
        blocks.append(Block(t, k, cin, cout, stride, None if btn in (None, "-") else btn, depth))
    return validate(Structure(tuple(blocks), shortcut=shortcut, name=name, source=source))


def load(spec: str | Path | Structure) -> Structure:
    """A zoo name (``maedet-m``) or a path to a structure JSON file."""
    if isinstance(spec, Structure):
        return spec
    from . import zoo

    if isinstance(spec, str) and spec in zoo.names():
        return zoo.get(spec)
    p = Path(spec)
    if not p.exists():
        raise StructureError(
            f"{spec!r} is neither a zoo name ({', '.join(zoo.names())}) nor an existing structure file"
        )
    try:
        text = p.read_text()
    except OSError as e:
        raise StructureError(f"cannot read {p}: {e}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise StructureError(f"{p}: not valid JSON: {e}") from None
    if isinstance(d, dict) and "structure" in d and "blocks" not in d:  # e.g. a search's best.json
        d = d["structure"]
    try:
        return Structure.from_dict(d)
    except StructureError as e:
        raise StructureError(f"{p}: {e}") from None

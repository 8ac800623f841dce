"""Named structures from the paper (Appendix H), the ResNet references, the MobileNetV2 references of
Table 6 (Appendix B) and the starts of the searches (Table 15, ``mbv2-init``), in one registry.

Rows are transcribed from the paper's tables in its own notation ("# layers" counts pairs of bottleneck
blocks for a ResBlock) and converted by :func:`maedet.structure.structure_from_rows`. The paper's own
FLOPs/params for each entry are in :mod:`maedet.paper`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from .structure import Block, Structure, structure_from_rows, validate

_REGISTRY: dict[str, Callable[[], Structure]] = {}


def register(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Structure:
    if name not in _REGISTRY:
        raise KeyError(f"unknown zoo structure {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]()


# (block, kernel, in, out, stride, bottleneck, "# layers" as printed in the paper)
@register("maedet-s")
def maedet_s() -> Structure:
    return structure_from_rows([
        ("Conv", 3, 3, 32, 2, None, 1),
        ("ResBlock", 5, 32, 48, 2, 32, 1),
        ("ResBlock", 3, 48, 272, 2, 120, 2),
        ("ResBlock", 5, 272, 1024, 2, 80, 5),
        ("ResBlock", 3, 1024, 2048, 2, 240, 5),
    ], name="maedet-s", source="Table 13 (MAE-DET-S of Table 1)")


@register("maedet-m")
def maedet_m() -> Structure:
    return structure_from_rows([
        ("Conv", 3, 3, 64, 2, None, 1),
        ("ResBlock", 3, 64, 120, 2, 64, 1),
        ("ResBlock", 5, 120, 512, 2, 72, 5),
        ("ResBlock", 5, 512, 1632, 2, 112, 5),
        ("ResBlock", 5, 1632, 2048, 2, 184, 4),
    ], name="maedet-m", source="Table 12 (MAE-DET-M of Table 1; multi-scale coarse-to-fine of Table 4)")


@register("maedet-l")
def maedet_l() -> Structure:
    return structure_from_rows([
        ("Conv", 3, 3, 80, 2, None, 1),
        ("ResBlock", 3, 80, 144, 2, 80, 1),
        ("ResBlock", 5, 144, 608, 2, 88, 6),
        ("ResBlock", 5, 608, 1912, 2, 136, 6),
        ("ResBlock", 5, 1912, 2400, 2, 220, 5),
    ], name="maedet-l", source="Table 14 (MAE-DET-L of Table 1)")


@register("table4-single-coarse")
def table4_single_coarse() -> Structure:
    return structure_from_rows([
        ("Conv", 3, 3, 96, 2, None, 1),
        ("ResBlock", 5, 96, 208, 2, 32, 2),
        ("ResBlock", 5, 208, 560, 2, 56, 1),
        ("ResBlock", 5, 560, 1264, 2, 112, 2),
        ("ResBlock", 5, 1264, 1712, 2, 224, 3),
        ("ResBlock", 5, 1712, 2048, 1, 224, 3),
        ("ResBlock", 5, 2048, 2048, 1, 256, 4),
    ], name="table4-single-coarse", source="Table 10 (single-scale entropy, coarse mutation; Table 4)")


@register("table4-multi-coarse")
def table4_multi_coarse() -> Structure:
    return structure_from_rows([
        ("Conv", 3, 3, 32, 2, None, 1),
        ("ResBlock", 5, 32, 128, 2, 24, 1),
        ("ResBlock", 5, 128, 512, 2, 72, 5),
        ("ResBlock", 5, 512, 1632, 2, 112, 5),
        ("ResBlock", 5, 1632, 2048, 2, 216, 4),
    ], name="table4-multi-coarse", source="Table 11 (multi-scale entropy, coarse mutation; Table 4)")


@register("init")
def init() -> Structure:
    return structure_from_rows([
        ("Conv", 3, 3, 64, 2, None, 1),
        ("ResBlock", 3, 64, 256, 2, 64, 1),
        ("ResBlock", 3, 256, 512, 2, 128, 1),
        ("ResBlock", 3, 512, 1024, 2, 256, 1),
        ("ResBlock", 3, 1024, 2048, 2, 512, 1),
    ], name="init", source="Table 15 (initial structure of the search)")


def _resnet(name: str, depths: tuple[int, int, int, int]) -> Structure:
    # torchvision/mmdet "pytorch" style: 7x7 stem, 3x3 max-pool, stride on the 3x3 conv,
    # strided 1x1 projection shortcut. Depths here are numbers of bottleneck blocks (not paper pairs).
    rows = [("Conv", 7, 3, 64, 2, None, 1), ("MaxPool", 3, 64, 64, 2, None, 1)]
    cin = 64
    for i, (d, w) in enumerate(zip(depths, (64, 128, 256, 512))):
        rows.append(("ResBlock", 3, cin, 4 * w, 1 if i == 0 else 2, w, d))
        cin = 4 * w
    return structure_from_rows(rows, name=name, source="He et al. 2016 (mmdet ResNet, style='pytorch')",
                               shortcut="conv", paper_notation=False)


@register("resnet50")
def resnet50() -> Structure:
    return _resnet("resnet50", (3, 4, 6, 3))


@register("resnet101")
def resnet101() -> Structure:
    return _resnet("resnet101", (3, 4, 23, 3))


# MobileNetV2 (Sandler et al. 2018, Table 2): (expansion ratio t, output width c, units n, first stride s)
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                         (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNetV2's width rounding: the nearest multiple of ``divisor`` (at least ``divisor``), one
    ``divisor`` more when rounding down loses more than 10% (mmcv/torchvision ``make_divisible``)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def _mobilenet_v2(name: str, widen_factor: float) -> Structure:
    """MobileNetV2 as mmdet builds it for SSDLite (``MobileNetV2(widen_factor=...)``: the stem, the seven
    rows of inverted bottlenecks, and the 1x1 conv to 1280 channels, which stays 1280 for widen_factor <= 1).

    Every unit expands its own input by t (6 x in for the first unit of a row, 6 x out for the others), and
    one block has one bottleneck width, so a row of n units is two blocks here: its first unit, then the
    n - 1 others. The row of t = 1 has no expansion conv (bottleneck = input width). The stride-1 rows
    join the stage before them, so the stages are C1 (stem + t=1 row, stride 2), C2, C3, C4 (the 96-wide
    row, stride 16) and C5 (ending with the 1280-wide conv, stride 32): SSDLite's two inputs are C4 and C5.

    Counting (Table 6 gives backbone FLOPs and params at 320x320): the printed figures are reproduced by
    mmcv's counter on this network with the expansion-free t = 1 row and the last 1x1 conv to 1280
    included: conv MACs + BN (2 per element) + ReLU6 (1 per element), the ``mmcv`` convention of
    :mod:`maedet.flops` (what ``convention="paper"`` gives for structures with inverted bottlenecks):
    MobileNetV2-0.5 217.3M / 0.688M (paper 217M / 0.7M), MobileNetV2-1.0 650.9M / 2.224M (paper 651M /
    2.2M). No other convention matches both rows: conv MACs alone give 195.6M / 611.2M, the MAE-DET code's
    conv + BN 210.5M / 638.5M, conv + ReLU 202.4M / 623.7M; dropping the conv to 1280 leaves 0.48M (0.5) / 1.81M
    (1.0) params; an expansion conv in the t = 1 row (32 -> 32 at 160x160 for 1.0) makes conv + ReLU hit the 1.0
    row (650.7M) but miss the 0.5 row (209.4M).
    """
    stem = make_divisible(32 * widen_factor)
    blocks, cin = [Block("conv", 3, 3, stem, 2)], stem
    for t, c, n, s in MOBILENET_V2_SETTINGS:
        c = make_divisible(c * widen_factor)
        blocks.append(Block("mbv2", 3, cin, c, s, int(round(cin * t)), 1))
        if n > 1:
            blocks.append(Block("mbv2", 3, c, c, 1, int(round(c * t)), n - 1))
        cin = c
    last = int(1280 * widen_factor) if widen_factor > 1.0 else 1280
    blocks.append(Block("conv", 1, cin, last, 1))
    return validate(Structure(tuple(blocks), name=name,
                              source=f"Sandler et al. 2018 (mmdet MobileNetV2, widen_factor={widen_factor}; Table 6)"))


@register("mobilenetv2-0.5")
def mobilenetv2_050() -> Structure:
    return _mobilenet_v2("mobilenetv2-0.5", 0.5)


@register("mobilenetv2-1.0")
def mobilenetv2_100() -> Structure:
    return _mobilenet_v2("mobilenetv2-1.0", 1.0)


@register("mbv2-init")
def mbv2_init() -> Structure:
    """The start of an ``mbv2`` search (Appendix B gives none), built as Table 15 is for the ResNet-like space:
    the target network's stem, strides and widths with one unit per super-block. Here MobileNetV2-0.5 (the
    smaller of Table 6's references): the 16-wide stem, then its seven rows as one inverted bottleneck each
    (kernel 3, expansion ratio 1 for the first row and 6 for the others, a ratio of the block's input as the
    ``mbv2`` mutation space keeps it), without the 1x1 conv to 1280 (a classifier's feature conv; the searched
    backbones end with their last block). Stages C1-C5 at strides 2-32, 21 layers, 92.0M MACs at 320x320
    (``paper`` convention, i.e. mmcv's), 42% of MobileNetV2-0.5's 217M, as Table 15's start (2.30G at 224x224)
    is about half of the 4.4G budget it was searched under."""
    stem = 16
    blocks, cin = [Block("conv", 3, 3, stem, 2)], stem
    for t, c, _, s in MOBILENET_V2_SETTINGS:
        c = make_divisible(c * 0.5)
        blocks.append(Block("mbv2", 3, cin, c, s, cin * t, 1))
        cin = c
    return validate(Structure(tuple(blocks), name="mbv2-init",
                              source="initial structure of the mbv2 search (MobileNetV2-0.5, one unit per row)"))


def with_se(structure: Structure) -> Structure:
    """The structure with squeeze-and-excitation in every inverted bottleneck: Table 6's MAE-DET-MB-M-SE is
    "inserting SE modules to MAE-DET-MB-M" (the scores are unchanged, SE being removed while scoring)."""
    blocks = tuple(replace(b, se=True) if b.type == "mbv2" else b for b in structure.blocks)
    return validate(replace(structure, blocks=blocks, name=structure.name + "-se" if structure.name else ""))

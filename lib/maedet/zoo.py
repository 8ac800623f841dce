"""Named structures from the paper (Appendix H) and the ResNet references, in one registry.

Rows are transcribed from the paper's tables in its own notation ("# layers" counts pairs of bottleneck
blocks for a ResBlock) and converted by :func:`maedet.structure.structure_from_rows`. The paper's own
FLOPs/params for each entry are in :mod:`maedet.paper`.
"""
from __future__ import annotations

from typing import Callable

from .structure import Structure, structure_from_rows

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

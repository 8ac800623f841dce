"""SpineNet: the scale-permuted backbone of Du et al., *SpineNet: Learning Scale-Permuted Backbone for
Recognition and Localization* (CVPR 2020, arXiv:1912.05027), as an mmdetection backbone.

SpineNet replaces both the backbone and the FPN of a detector: after a small stem (7x7 stride-2 conv,
3x3 max-pool, two level-2 bottleneck blocks) comes a *scale-permuted* network of 15 blocks whose levels
(feature strides 2^level) go up and down in the order found by NAS. Every block takes two earlier blocks
as inputs through *cross-scale connections*: each parent is resampled (1x1 conv to ``alpha`` x its
channels, then a stride-2 3x3 conv plus max-pooling when going down or nearest-neighbour upsampling when
going up, then a 1x1 conv to the target block's input channels, no activation), the two are summed, a
ReLU is applied and the block (a ResNet bottleneck or residual block, repeated ``block_repeats`` times)
is built on the sum. Output blocks also take, without resampling, every earlier block of the same level
and width that no later block uses as input (the reference implementation's rule). The five output
blocks (levels 3..7) each go through a 1x1 conv (+BN+ReLU) to the *endpoints* feature dimension, and
these endpoints feed the detection head directly: no neck.

Facts and numbers taken from the public reference code (the code itself is written here from scratch):

* the block specification, the filter sizes per level and the scaling table (endpoints feature
  dimension, filter-size scale, resampling alpha, block repeats per model), the stem, the resampling and
  the merge rule for output blocks: tensorflow/tpu, ``models/official/detection/modeling/architecture/
  spinenet.py`` (the authors' code; the same 15 blocks and table appear in tensorflow/models
  ``official/vision/modeling/backbones/spinenet.py``, whose newer copy adds a 16th level-2 output block
  used for segmentation, not part of the detection model here);
* the bottleneck/residual blocks: tensorflow/tpu ``.../architecture/nn_blocks.py`` (ResNet v1, BN after
  every conv, projection shortcut when channels change);
* RetinaNet settings per model (head width 128 for SpineNet-49S, 256 otherwise; 4 head convs; 9 anchors;
  91 classes; input 640/640/1024/1280/1280 px; anchor size 3): tensorflow/tpu ``.../configs/spinenet/
  spinenet*_retinanet.yaml`` and ``.../configs/retinanet_config.py``;
* the published RetinaNet FLOPs/params: tensorflow/tpu ``models/official/detection/MODEL_ZOO.md``
  (SpineNet-49S 33.8B/11.9M, -49 85.4B/28.5M, -96 265.4B/43.0M, -143 524.0B/67.0M, -190 1885.0B/163.6M);
  the paper text (Fig. 4 caption) confirms SpineNet-49's 85.4B. The paper's table prints -143 as
  524.4B/66.9M (as quoted by the yan-roo/SpineNet-Pytorch README); :data:`PAPER_RETINANET` uses those.
  SpineNet-49S's published figures are matched only with 256-channel endpoints, not the reference's 128
  (see :data:`PAPER_RETINANET`).

"FLOPs" in SpineNet's (and this project's) tables are multiply-accumulates. :func:`retinanet_complexity`
counts them with ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of backbone + mmdet
``RetinaHead`` on the meta device (no memory, no compute): the MACs of convolutions (and matrix products,
of which there are none), no BN, activation, pooling, resize, addition or bias. Params are every
parameter of backbone + head (conv weights and biases, BN affine).

Use in an mmdet config (``neck=None`` is accepted by mmdet's single-stage detectors)::

    custom_imports = dict(imports=['maedet.spinenet'], allow_failed_imports=False)
    model = dict(type='RetinaNet',
                 backbone=dict(type='SpineNet', arch='49'),
                 neck=None,
                 bbox_head=dict(type='RetinaHead', in_channels=256, feat_channels=256, ...))
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_conv_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BlockSpec", "SPINENET_BLOCK_SPECS", "FILTER_SIZE_MAP", "Scaling", "SCALING_MAP",
           "PAPER_RETINANET", "SpineNet", "SPINENETS", "build", "resolve_arch", "retinanet_complexity",
           "backbone_complexity"]


@dataclass(frozen=True)
class BlockSpec:
    """One block of the scale-permuted network: its level (stride 2^level), its block type, the indices of
    its two input blocks (0 and 1 are the two stem blocks, block ``i`` of the specification is index
    ``i + 2``) and whether it is an output block."""
    level: int
    block_fn: str  # "bottleneck" | "residual"
    input_offsets: tuple[int, int]
    is_output: bool


# The block specification of SpineNet-49 found by NAS (tensorflow/tpu spinenet.py).
SPINENET_BLOCK_SPECS: tuple[BlockSpec, ...] = tuple(BlockSpec(*b) for b in (
    (2, "bottleneck", (0, 1), False),
    (4, "residual", (0, 1), False),
    (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False),
    (6, "residual", (3, 5), False),
    (4, "bottleneck", (3, 5), False),
    (5, "residual", (6, 7), False),
    (7, "residual", (6, 8), False),
    (5, "bottleneck", (8, 9), False),
    (5, "bottleneck", (8, 10), False),
    (4, "bottleneck", (5, 10), True),
    (3, "bottleneck", (4, 10), True),
    (5, "bottleneck", (7, 12), True),
    (7, "bottleneck", (5, 14), True),
    (6, "bottleneck", (12, 14), True),
))

# Filters of a block per level before the filter-size scale (a bottleneck outputs 4x this).
FILTER_SIZE_MAP = {1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}

STEM_FILTERS = 64  # the 7x7 stem conv is not scaled by the filter-size scale (only by width_multiplier)
MIN_SCALED_FILTERS = 4  # the fewest filters a level (or the stem) gets under a width_multiplier
NUM_STEM_BLOCKS = 2
STEM_BLOCK_FN = "bottleneck"
EXPANSION = {"bottleneck": 4, "residual": 1}


@dataclass(frozen=True)
class Scaling:
    """A SpineNet model: the scaling of SpineNet-49's specification, plus the RetinaNet it was published
    with (input resolution, head width)."""
    endpoints_num_filters: int
    filter_size_scale: float
    resample_alpha: float
    block_repeats: int
    resolution: int
    head_num_filters: int
    head_num_convs: int = 4


SCALING_MAP = {
    "49S": Scaling(128, 0.65, 0.5, 1, 640, 128),
    "49": Scaling(256, 1.0, 0.5, 1, 640, 256),
    "96": Scaling(256, 1.0, 0.5, 2, 1024, 256),
    "143": Scaling(256, 1.0, 1.0, 3, 1280, 256),
    "190": Scaling(512, 1.3, 1.0, 4, 1280, 512, 7),
}

# Published RetinaNet (backbone + head) FLOPs (multiply-adds) and params at the published resolution.
# Measured by :func:`retinanet_complexity` (91 classes, 9 anchors): -49 85.28B / 28.52M, -96 265.02B /
# 42.95M, -143 523.34B / 66.94M, -190 1881.66B / 163.57M, all within 0.2%. SpineNet-49S as the reference
# code configures it (filter scale 0.65, endpoints 128, head 128) measures 30.78B / 11.26M, -8.9% / -5.4%;
# the same model with 256-channel endpoints (SpineNet's default) feeding the 128-wide head measures
# 33.75B / 11.93M (-0.15% / +0.25%), so the published 49S figures were most likely counted with
# 256-channel endpoints. (The first code release's 49S, filter scale 0.75, gives 34.61B / 14.25M: no.)
PAPER_RETINANET = {
    "49S": dict(flops=33.8e9, params=11.9e6),
    "49": dict(flops=85.4e9, params=28.5e6),
    "96": dict(flops=265.4e9, params=43.0e6),
    "143": dict(flops=524.4e9, params=66.9e6),
    "190": dict(flops=1885.0e9, params=163.6e6),
}


def resolve_arch(arch: str) -> str:
    """The key of :data:`SCALING_MAP` for ``'49S'``, ``'49s'``, ``'spinenet-49s'``, ``'SpineNet-49S'``, ...;
    ValueError naming the choices otherwise."""
    key = str(arch).strip().upper()
    for prefix in ("SPINENET-", "SPINENET_", "SPINENET"):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    if key not in SCALING_MAP:
        raise ValueError(f"unknown SpineNet arch {arch!r}; choose one of {', '.join(SCALING_MAP)} "
                         f"(or {', '.join(SPINENETS)})")
    return key


class ConvNormAct(nn.Sequential):
    """conv (no bias) -> norm -> optional activation, 'same' padding for odd kernels."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, *, conv_cfg=None,
                 norm_cfg=None, act_cfg=None):
        layers = [build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size, stride=stride,
                                   padding=kernel_size // 2, bias=False),
                  build_norm_layer(norm_cfg, out_channels)[1]]
        if act_cfg is not None:
            layers.append(build_activation_layer(act_cfg))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 ``filters``, 3x3 ``filters``, 1x1 ``4 * filters``; projection shortcut
    (1x1 conv + BN) when the input channels differ; activation after the sum."""
    expansion = 4

    def __init__(self, in_channels, filters, *, drop_path_rate=0.0, conv_cfg=None, norm_cfg=None,
                 act_cfg=None):
        super().__init__()
        out = filters * self.expansion
        kw = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.conv1 = ConvNormAct(in_channels, filters, 1, act_cfg=act_cfg, **kw)
        self.conv2 = ConvNormAct(filters, filters, 3, act_cfg=act_cfg, **kw)
        self.conv3 = ConvNormAct(filters, out, 1, **kw)
        self.shortcut = ConvNormAct(in_channels, out, 1, **kw) if in_channels != out else nn.Identity()
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act = build_activation_layer(act_cfg)

    def forward(self, x):
        return self.act(self.drop_path(self.conv3(self.conv2(self.conv1(x)))) + self.shortcut(x))


class Residual(nn.Module):
    """ResNet basic (residual) block: two 3x3 convs of ``filters``; projection shortcut when the input
    channels differ; activation after the sum."""
    expansion = 1

    def __init__(self, in_channels, filters, *, drop_path_rate=0.0, conv_cfg=None, norm_cfg=None,
                 act_cfg=None):
        super().__init__()
        kw = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.conv1 = ConvNormAct(in_channels, filters, 3, act_cfg=act_cfg, **kw)
        self.conv2 = ConvNormAct(filters, filters, 3, **kw)
        self.shortcut = (ConvNormAct(in_channels, filters, 1, **kw) if in_channels != filters
                         else nn.Identity())
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act = build_activation_layer(act_cfg)

    def forward(self, x):
        return self.act(self.drop_path(self.conv2(self.conv1(x))) + self.shortcut(x))


BLOCKS = {"bottleneck": Bottleneck, "residual": Residual}


def block_group(block_fn, in_channels, filters, repeats, **kw) -> nn.Sequential:
    """``repeats`` blocks of one type; only the first may project its shortcut."""
    cls = BLOCKS[block_fn]
    out = filters * cls.expansion
    return nn.Sequential(*(cls(in_channels if r == 0 else out, filters, **kw) for r in range(repeats)))


class Resample(nn.Module):
    """A cross-scale connection: matches a parent block's resolution and channels to the target block.

    1x1 conv to ``int(alpha * parent filters)`` (a bottleneck parent counts its filters as channels / 4),
    then, going down, a stride-2 3x3 conv and (for more than 2x) one max-pool (3x3 for 4x, 5x5 beyond,
    stride the remaining factor); going up, nearest-neighbour upsampling; then a 1x1 conv (BN, no
    activation) to the target block's input channels (4x its filters for a bottleneck).
    """

    def __init__(self, in_channels, in_block_fn, in_level, target_channels, target_level, alpha, *,
                 conv_cfg=None, norm_cfg=None, act_cfg=None):
        super().__init__()
        kw = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        mid = int(in_channels // EXPANSION[in_block_fn] * alpha)
        self.reduce = ConvNormAct(in_channels, mid, 1, act_cfg=act_cfg, **kw)
        self.down = None
        if target_level > in_level:
            down = [ConvNormAct(mid, mid, 3, 2, act_cfg=act_cfg, **kw)]
            factor = 2 ** (target_level - in_level - 1)
            if factor > 1:
                kernel = 3 if factor <= 2 else 5
                down.append(nn.MaxPool2d(kernel, stride=factor, padding=kernel // 2))
            self.down = nn.Sequential(*down)
        self.expand = ConvNormAct(mid, target_channels, 1, **kw)

    def forward(self, x, size):
        x = self.reduce(x)
        if self.down is not None:
            x = self.down(x)
        if tuple(x.shape[-2:]) != tuple(size):  # upsampling (or an odd size after downsampling)
            x = F.interpolate(x, size=size, mode="nearest")
        return self.expand(x)


def _default_init_cfg():
    # The reference initialises convs with TF's variance scaling (scale 1, fan_in, normal): kaiming with
    # gain 1; BN gamma 1, beta 0.
    return [dict(type="Kaiming", layer="Conv2d", mode="fan_in", nonlinearity="linear",
                 distribution="normal"),
            dict(type="Constant", val=1, bias=0, layer=["_BatchNorm", "GroupNorm"])]


@MODELS.register_module()
class SpineNet(BaseModule):
    """The SpineNet family as an mmdet backbone (and neck): outputs a tuple of ``max_level - min_level + 1``
    tensors (default levels 3..7, strides 8..128), each with ``endpoints_num_filters`` channels.

    Args:
        arch: ``'49S'``, ``'49'``, ``'96'``, ``'143'`` or ``'190'`` (case-insensitive, ``'spinenet-'`` prefix
            allowed); picks the scaling of :data:`SCALING_MAP`.
        in_channels: image channels.
        min_level, max_level: the output levels; each must have exactly one output block.
        block_specs: the block specification (default: :data:`SPINENET_BLOCK_SPECS`).
        endpoints_num_filters, filter_size_scale, resample_alpha, block_repeats: override the arch's
            scaling.
        width_multiplier: uniform channel scaling for reduced-scale training (default 1: the published
            model, unchanged). The filters of every level become ``int(FILTER_SIZE_MAP[level] *
            filter_size_scale * width_multiplier)`` (the reference's own rule with the filter-size scale
            times the multiplier; at least 4) and the stem's 64 filters ``int(64 * width_multiplier)`` (at
            least 4), so the per-level proportions of the family are kept (SpineNet-49/96 at x0.125: stem 8,
            filters 8/16/32/32/32/32 at levels 2..7, as ResNet-50 at x0.125). The resampling widths follow
            (``alpha`` x the parent's filters); the endpoints keep ``endpoints_num_filters`` (the detector's
            pyramid width: set it to the head width).
        drop_path_rate: stochastic depth of the scale-permuted blocks, rising linearly to this rate
            over the blocks as in the reference (0 = off).
        conv_cfg, norm_cfg, act_cfg: mmcv layer configs. The default BN (momentum 0.01, eps 1e-3) is the
            reference's Keras BN (momentum 0.99); ``act_cfg=dict(type='SiLU')`` is its swish variant.
        norm_eval: keep BN layers in eval mode while training.
    """

    def __init__(self, arch="49", in_channels=3, min_level=3, max_level=7, block_specs=None,
                 endpoints_num_filters=None, filter_size_scale=None, resample_alpha=None,
                 block_repeats=None, drop_path_rate=0.0, conv_cfg=None,
                 norm_cfg=dict(type="BN", momentum=0.01, eps=1e-3, requires_grad=True),
                 act_cfg=dict(type="ReLU"), norm_eval=False, init_cfg=None, width_multiplier=1.0):
        super().__init__(init_cfg=_default_init_cfg() if init_cfg is None else init_cfg)
        self.arch = resolve_arch(arch)
        s = SCALING_MAP[self.arch]
        width_multiplier = float(width_multiplier)
        if not (math.isfinite(width_multiplier) and width_multiplier > 0):
            raise ValueError(f"SpineNet width_multiplier must be a positive number, got {width_multiplier!r}")
        self.width_multiplier = width_multiplier
        self.stem_filters = (STEM_FILTERS if width_multiplier == 1.0
                             else max(MIN_SCALED_FILTERS, int(STEM_FILTERS * width_multiplier + 1e-9)))
        self.endpoints_num_filters = endpoints_num_filters or s.endpoints_num_filters
        self.filter_size_scale = filter_size_scale or s.filter_size_scale
        self.resample_alpha = resample_alpha or s.resample_alpha
        self.block_repeats = block_repeats or s.block_repeats
        self.block_specs = tuple(BlockSpec(*b) if not isinstance(b, BlockSpec) else b
                                 for b in (block_specs or SPINENET_BLOCK_SPECS))
        self.min_level, self.max_level = min_level, max_level
        self.norm_eval = norm_eval
        kw = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)

        # stem: 7x7/2 conv, 3x3/2 max-pool, two level-2 bottleneck block groups
        self.stem = nn.Sequential(ConvNormAct(in_channels, self.stem_filters, 7, 2, **kw),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        filters = self._filters(2)
        ch = self.stem_filters
        self.stem_blocks = nn.ModuleList()
        for _ in range(NUM_STEM_BLOCKS):
            self.stem_blocks.append(block_group(STEM_BLOCK_FN, ch, filters, self.block_repeats, **kw))
            ch = filters * EXPANSION[STEM_BLOCK_FN]
        # (level, block_fn, channels) of every feature so far; outgoing connections per feature
        feats = [(2, STEM_BLOCK_FN, ch)] * NUM_STEM_BLOCKS
        outdegree = [0] * NUM_STEM_BLOCKS

        # the scale-permuted network
        self.resamples = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self.merges: list[tuple[int, ...]] = []  # same-level unused blocks summed into an output block
        self.output_index: dict[int, int] = {}  # level -> feature index of its output block
        n = len(self.block_specs)
        for i, spec in enumerate(self.block_specs):
            if spec.block_fn not in BLOCKS:
                raise ValueError(f"block {i}: block_fn must be one of {', '.join(BLOCKS)}, "
                                 f"got {spec.block_fn!r}")
            filters = self._filters(spec.level)
            target_ch = filters * EXPANSION[spec.block_fn]
            pair = nn.ModuleList()
            for j in spec.input_offsets:
                if not 0 <= j < len(feats):
                    raise ValueError(f"block {i}: input offset {j} is not an existing block "
                                     f"(0..{len(feats) - 1})")
                lvl, fn, c = feats[j]
                pair.append(Resample(c, fn, lvl, target_ch, spec.level, self.resample_alpha, **kw))
                outdegree[j] += 1
            self.resamples.append(pair)
            merge = ()
            if spec.is_output:
                merge = tuple(j for j, ((lvl, _, c), d) in enumerate(zip(feats, outdegree))
                              if d == 0 and lvl == spec.level and c == target_ch)
                for j in merge:
                    outdegree[j] += 1
            self.merges.append(merge)
            rate = drop_path_rate * (i + 1) / n if drop_path_rate > 0 else 0.0
            self.blocks.append(block_group(spec.block_fn, target_ch, filters, self.block_repeats,
                                           drop_path_rate=rate, **kw))
            feats.append((spec.level, spec.block_fn, target_ch))
            outdegree.append(0)
            if spec.is_output:
                if spec.level in self.output_index:
                    raise ValueError(f"two output blocks at level {spec.level}")
                if not min_level <= spec.level <= max_level:
                    raise ValueError(f"output block at level {spec.level} is outside "
                                     f"[min_level, max_level] = [{min_level}, {max_level}]")
                self.output_index[spec.level] = len(feats) - 1
        missing = [lvl for lvl in range(min_level, max_level + 1) if lvl not in self.output_index]
        if missing:
            raise ValueError(f"no output block for level(s) {missing}")
        self.merge_act = build_activation_layer(act_cfg)

        # endpoints: 1x1 conv (+BN+act) of each output block to the endpoints feature dimension
        self.levels = tuple(range(min_level, max_level + 1))
        self.endpoints = nn.ModuleList(
            ConvNormAct(feats[self.output_index[lvl]][2], self.endpoints_num_filters, 1, **kw)
            for lvl in self.levels)
        self.out_channels = self.endpoints_num_filters
        self.strides = tuple(2 ** lvl for lvl in self.levels)

    def _filters(self, level: int) -> int:
        if self.width_multiplier == 1.0:
            return int(FILTER_SIZE_MAP[level] * self.filter_size_scale)
        return max(MIN_SCALED_FILTERS,
                   int(FILTER_SIZE_MAP[level] * self.filter_size_scale * self.width_multiplier + 1e-9))

    def forward(self, x):
        h, w = x.shape[-2:]

        def size(level):
            return (math.ceil(h / 2 ** level), math.ceil(w / 2 ** level))

        x = self.stem(x)
        feats = []
        for group in self.stem_blocks:
            x = group(x)
            feats.append(x)
        for spec, pair, merge, group in zip(self.block_specs, self.resamples, self.merges, self.blocks):
            target = size(spec.level)
            parents = [r(feats[j], target) for r, j in zip(pair, spec.input_offsets)]
            parents += [feats[j] for j in merge]
            feats.append(group(self.merge_act(sum(parents))))
        return tuple(ep(feats[self.output_index[lvl]]) for ep, lvl in zip(self.endpoints, self.levels))

    def train(self, mode=True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


def _constructor(arch):
    def make(**kw):
        return SpineNet(arch=arch, **kw)
    make.__name__ = f"spinenet_{arch.lower()}"
    make.__doc__ = f"SpineNet-{arch} (:class:`SpineNet` with ``arch='{arch}'``)."
    return make


# timm-style named constructors
SPINENETS = {f"spinenet-{a.lower()}": _constructor(a) for a in SCALING_MAP}


def build(name: str, **kw) -> SpineNet:
    """Build a named SpineNet (``'spinenet-49s'``, ``'spinenet-49'``, ``'spinenet-96'``, ...); keyword
    arguments go to :class:`SpineNet`."""
    return SPINENETS[f"spinenet-{resolve_arch(name).lower()}"](**kw)


def retinanet_head_cfg(arch: str, num_classes: int = 91, in_channels: int | None = None,
                       feat_channels: int | None = None) -> dict:
    """The mmdet ``RetinaHead`` config of SpineNet's RetinaNet: 4 shared convs of the model's head width
    per branch, 9 anchors (3 scales x 3 ratios, octave base scale 3), strides 8..128. ``num_classes``
    defaults to the reference's 91 (COCO ids incl. background, sigmoid outputs); mmdet's COCO uses 80."""
    s = SCALING_MAP[resolve_arch(arch)]
    return dict(type="RetinaHead", num_classes=num_classes,
                in_channels=in_channels or s.endpoints_num_filters,
                feat_channels=feat_channels or s.head_num_filters, stacked_convs=s.head_num_convs,
                anchor_generator=dict(type="AnchorGenerator", octave_base_scale=3, scales_per_octave=3,
                                      ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]))


def retinanet_complexity(arch: str, input_size: int | None = None, num_classes: int = 91,
                         head_num_filters: int | None = None, **backbone_kw) -> dict:
    """FLOPs (multiply-accumulates) and params of SpineNet + RetinaNet head at ``input_size`` (square;
    default the model's published resolution), as SpineNet's tables count them.

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass on the meta device:
    conv (and matmul) MACs only (FLOP counter's 2 per multiply-add halved); BN, activations, pooling,
    upsampling, additions and biases are not counted. Params: all parameters of backbone and head
    (the head is mmdet's ``RetinaHead``, conv weights and biases, no norm).

    ``head_num_filters`` overrides the head width, ``backbone_kw`` go to :class:`SpineNet` (e.g.
    ``endpoints_num_filters=256``, the setting that reproduces SpineNet-49S's published figures; see
    :data:`PAPER_RETINANET`).

    Returns a dict with ``flops``, ``params``, ``backbone_flops``, ``backbone_params``, ``head_flops``,
    ``head_params``, ``input_size``, and the published ``paper_flops`` / ``paper_params``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    key = resolve_arch(arch)
    size = input_size or SCALING_MAP[key].resolution
    with torch.device("meta"):
        backbone = SpineNet(arch=key, **backbone_kw).eval()
        head = MODELS.build(retinanet_head_cfg(key, num_classes, backbone.out_channels,
                                               head_num_filters)).eval()
        x = torch.empty(1, 3, size, size)

    def macs(fn, *args):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            out = fn(*args)
        return out, fc.get_total_flops() // 2

    feats, bb_flops = macs(backbone, x)
    _, head_flops = macs(head, feats)
    bb_params = sum(p.numel() for p in backbone.parameters())
    head_params = sum(p.numel() for p in head.parameters())
    paper = PAPER_RETINANET[key]
    return dict(arch=key, input_size=size, flops=bb_flops + head_flops, params=bb_params + head_params,
                backbone_flops=bb_flops, backbone_params=bb_params, head_flops=head_flops,
                head_params=head_params, paper_flops=paper["flops"], paper_params=paper["params"])


def backbone_complexity(input_size, arch: str = "49", **backbone_kw) -> dict:
    """MACs and params of the SpineNet backbone alone (stem, scale-permuted blocks, resampling and the
    endpoints' 1x1 convs, which stand in for an FPN) at ``input_size`` (an int, or (H, W)), counted as
    :func:`retinanet_complexity` counts them: ``FlopCounterMode`` on one forward pass on the meta device,
    conv MACs only (2 FLOPs per multiply-add halved; BN, activations, pooling, resizing, additions not
    counted); params: every parameter of the module (conv weights, BN affine). ``backbone_kw`` go to
    :class:`SpineNet` (e.g. ``width_multiplier``, ``endpoints_num_filters``). Returns ``macs``, ``params``,
    ``input_size`` (H, W), ``out_channels`` and ``strides``."""
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(input_size, int):
        h = w = input_size
    else:
        h, w = (int(v) for v in input_size)
    if h < 1 or w < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    with torch.device("meta"):
        net = SpineNet(arch=arch, **backbone_kw).eval()
        x = torch.empty(1, 3, h, w)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x)
    return dict(macs=int(fc.get_total_flops() // 2), params=int(sum(p.numel() for p in net.parameters())),
                input_size=(h, w), out_channels=net.out_channels, strides=net.strides)

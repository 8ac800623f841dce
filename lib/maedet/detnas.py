"""DetNAS (Chen et al., NeurIPS 2019): its search space as a one-shot supernet backbone for mmdetection, and
its evolutionary search over paths.

DetNAS searches a detector's backbone in three steps: (1) pre-train a one-shot *supernet* on ImageNet, (2)
fine-tune it on the detection data set, both *path-wise* (each iteration one single *path* -- one choice
block per block position -- is drawn uniformly and trained; no gradient reaches the other choices), (3)
search the trained supernet with an evolutionary algorithm (EA), the fitness of a path being its val AP
after its BN statistics have been recomputed for that path. This module holds what steps 1-3 need on
mmengine/mmdet:

* the *choice blocks* (:class:`ShuffleChoiceBlock`, :class:`XceptionChoiceBlock`) and the *search spaces*
  (:data:`SEARCH_SPACES`);
* :class:`DetNASSupernet`, an mmdet backbone holding every choice of every block, which samples a path per
  training iteration (``sample=True``) or runs a fixed path, and :class:`DetNASBackbone`, the stand-alone
  single-path network (:meth:`DetNASSupernet.extract_backbone`, :func:`path_state_dict`);
* :func:`path_flops` / :func:`path_params` (analytic), :func:`recalibrate_bn`, :func:`evolution_search`.

Both classes are registered in ``mmdet.registry.MODELS`` on import::

    custom_imports = dict(imports=['maedet.detnas'], allow_failed_imports=False)
    model = dict(backbone=dict(_delete_=True, type='DetNASSupernet', arch='300M', seed=0),
                 neck=dict(in_channels=[64, 160, 320, 640]))

Source of the facts (the code here is our own): the paper (Sec. 3.2-3.4, 4, Table 1) and the released code,
github.com/megvii-model/DetNAS at commit aa92a90604c870fcb7e3ea9f60d16e6f107454d9 ("the DetNAS code" below):
``maskrcnn_benchmark/modeling/backbone/{detnasnet,shuffle_blocks}.py`` (blocks, widths, published paths),
``Supernet-ImageNet/{detnasnet,shuffle_blocks,train}.py`` (ImageNet supernet, initialisation, BN
recalibration by momentum 1/iters), ``distributed_arch_search/{search,arch_search_config,test_server}.py``
(EA and its numbers, FLOPs constraint, BN recomputation before each evaluation),
``maskrcnn_benchmark/utils/{complexity,module_flops_comp}.py`` (how the constraint's FLOPs are counted).

Search space (paper Table 1; widths from the DetNAS code)
---------------------------------------------------------
A stem (3x3 conv, stride 2, with bias, + BN + ReLU) and 4 stages of ShuffleNetV2 blocks; the first block of
a stage has stride 2. Every block position has 4 choices (``CHOICES``): 0 = ShuffleNetV2 block with a 3x3,
1 = 5x5, 2 = 7x7 depthwise kernel, 3 = the Xception-like block (three 3x3 depthwise separable convs).

=========== ============== ================================ =============================================
arch        blocks         widths (stem, C2, C3, C4, C5)    ImageNet last conv (classification only)
=========== ============== ================================ =============================================
``300M``    [4, 4, 8, 4]   16, 64, 160, 320, 640            1024   the "small" (20-block) space
``1.3G``    [8, 8, 16, 8]  48, 96, 240, 480, 960            1024   the "large" (40-block) space
``3.8G``    [8, 8, 16, 8]  72, 172, 432, 864, 1728          1728   DetNASNet (3.8): the large space x ~1.8
=========== ============== ================================ =============================================

``small`` / ``large`` (and ``DetNAS-300M`` etc.) are aliases. A dict ``dict(stage_blocks=..., widths=...,
last_channels=1024)`` defines another space (e.g. a tiny one for tests).

Choice blocks (as the DetNAS code builds them; ``mid = C_out // 2`` in every block of a stage)
----------------------------------------------------------------------------------------------
* stride 1 (``C_in == C_out = C``): channel shuffle + split into two halves of C/2; the first half passes
  unchanged, the second goes through the main branch; the two are concatenated (first half first).
* stride 2: both branches see the whole input; the projection branch is ``dw kxk/2 - BN - 1x1 - BN - ReLU``
  (k = the choice's kernel, 3 for Xception) and keeps C_in channels, the main branch gives C_out - C_in.
* ShuffleNetV2 kxk main branch: ``1x1 - BN - ReLU - dw kxk (stride) - BN - 1x1 - BN - ReLU``.
* Xception main branch: ``dw3x3 (stride) - BN - 1x1 - BN - ReLU - dw3x3 - BN - 1x1 - BN - ReLU - dw3x3 - BN
  - 1x1 - BN - ReLU``.

The channel shuffle has two forms in the DetNAS code: method 1 (``channel_shuffle1``: the ShuffleNetV2
transpose of 2 groups, then the first / second half) is what the ImageNet supernet and the detection
supernet configs (``*_search.yaml``) use; method 2 (``channel_shuffle2``: even / odd channels, as in the
SPOS ShuffleNet code) is the maskrcnn-benchmark default used by the stand-alone fine-tuning configs of the
published networks. Both are here (``channel_shuffle=1`` default); they differ only by a fixed permutation of
channels, so FLOPs and params are the same.

With ``channel_shuffle=1`` the supernet equals the DetNAS code's ImageNet supernet (``ShuffleNetV2DetNAS`` of
``Supernet-ImageNet/detnasnet.py`` without its classification head) tensor for tensor: same parameter count
(6,808,256 for 300M, 28,642,008 for 1.3G) and identical C2-C5 outputs for a path once the weights are copied
over (checked for the published 300M and 1.3G paths). The only difference is the order of the state dict
within a block: the DetNAS code registers the main branch (``conv``) before the projection branch
(``proj_conv``); here ``branch_proj`` comes first.

FLOPs
-----
"FLOPs" in DetNAS (its Complexity counter; the 300e6 constraint of the search) are multiply-accumulates
(MACs) of the convolutions: ``C_out * C_in/groups * k*k * H_out*W_out``, bias/BN/ReLU not counted. That is what
:func:`path_flops` returns. Note that ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per MAC: its
total is twice these numbers. The search constraint of the DetNAS code counts the backbone body (stem + 20/40
blocks, what this module's backbones are) at 224x224; the paper's "300M / 1.3G / 3.8G" are the ImageNet
networks, i.e. with the classification head (last 1x1 conv + FC to 1000 classes):
``path_flops(..., classifier=True)``.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "CHOICES", "NUM_CHOICES", "SearchSpace", "SEARCH_SPACES", "search_space", "validate_path",
    "PUBLISHED_PATHS", "DETNAS_COCO_FPN_300M", "DETNAS_COCO_RETINANET_300M", "DETNAS_COCO_FPN_1_3G",
    "DETNAS_COCO_FPN_3_8G", "ShuffleChoiceBlock", "XceptionChoiceBlock", "make_choice_block",
    "DetNASSupernet", "DetNASBackbone", "path_state_dict", "block_flops_table", "path_flops", "path_params",
    "recalibrate_bn", "evolution_search", "Candidate", "SearchResult", "DETNAS_EA", "scale_space",
    "WIDTH_MULTIPLE",
]

# --------------------------------------------------------------------------------------------------------------
# search space
# --------------------------------------------------------------------------------------------------------------

#: The 4 choices of every block, in the DetNAS code's order (``blocks_key``): a path is a list of these indices.
CHOICES = ("shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3")
NUM_CHOICES = len(CHOICES)
_KERNEL = (3, 5, 7, 3)  # depthwise kernel of each choice (Xception: 3x3, also in its projection branch)


@dataclass(frozen=True)
class SearchSpace:
    """A DetNAS search space: a stem and 4 stages of choice blocks.

    ``widths`` = (stem, C2, C3, C4, C5) output channels; ``stage_blocks`` = blocks per stage;
    ``last_channels`` = the 1x1 conv before the classifier of the ImageNet network (not part of the backbone,
    used only by ``path_flops(..., classifier=True)``)."""

    name: str
    stage_blocks: tuple
    widths: tuple
    last_channels: int = 1024
    num_classes: int = 1000

    @property
    def num_blocks(self) -> int:
        return sum(self.stage_blocks)

    @property
    def out_channels(self) -> tuple:
        """Channels of C2-C5 (the stage outputs)."""
        return tuple(self.widths[1:])

    def blocks(self):
        """``(stage, c_in, c_out, stride)`` of every block position, in order."""
        c_in = self.widths[0]
        for s, n in enumerate(self.stage_blocks):
            c_out = self.widths[s + 1]
            for j in range(n):
                yield s, c_in, c_out, 2 if j == 0 else 1
                c_in = c_out


SEARCH_SPACES = {
    # the "small" 20-block space of the paper's ablations (DetNAS code: 'COCO-FPN-300M', 'COCO-RetinaNet-300M',
    # Supernet-ImageNet '300M'); paper Table 1 c2/n2
    "300M": SearchSpace("DetNAS-300M", (4, 4, 8, 4), (16, 64, 160, 320, 640), 1024),
    # the "large" 40-block space of the main results (DetNAS code: 'COCO-FPN-1.3G'); paper Table 1 c1/n1
    "1.3G": SearchSpace("DetNAS-1.3G", (8, 8, 16, 8), (48, 96, 240, 480, 960), 1024),
    # DetNASNet (3.8): the large space with ~1.8x channels (DetNAS code: 'COCO-FPN-3.8G')
    "3.8G": SearchSpace("DetNAS-3.8G", (8, 8, 16, 8), (72, 172, 432, 864, 1728), 1728),
}
_ALIASES = {"small": "300M", "large": "1.3G"}


def search_space(arch) -> SearchSpace:
    """The :class:`SearchSpace` of ``arch``: ``'300M'``, ``'1.3G'``, ``'3.8G'`` (or ``'DetNAS-300M'``...,
    ``'small'`` = 300M, ``'large'`` = 1.3G), a ``SearchSpace``, or a dict ``dict(stage_blocks, widths,
    last_channels=1024, name='custom')``. Raises ValueError for anything else."""
    if isinstance(arch, SearchSpace):
        return arch
    if isinstance(arch, str):
        key = arch.strip()
        key = re.sub(r"^detnas-", "", key, flags=re.IGNORECASE)
        key = _ALIASES.get(key.lower(), key.upper() if key[-1:].lower() in "mg" else key)
        if key in SEARCH_SPACES:
            return SEARCH_SPACES[key]
        raise ValueError(f"unknown DetNAS arch {arch!r}: expected one of {sorted(SEARCH_SPACES)} "
                         f"(aliases {sorted(_ALIASES)}) or a dict(stage_blocks=..., widths=...)")
    if isinstance(arch, dict):
        unknown = set(arch) - {"stage_blocks", "widths", "last_channels", "num_classes", "name"}
        if unknown or "stage_blocks" not in arch or "widths" not in arch:
            raise ValueError(f"arch dict needs 'stage_blocks' and 'widths' (optional 'last_channels', "
                             f"'num_classes', 'name'), got keys {sorted(arch)}")
        blocks = tuple(int(n) for n in arch["stage_blocks"])
        widths = tuple(int(c) for c in arch["widths"])
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"arch stage_blocks must be 4 positive numbers, got {list(blocks)}")
        if len(widths) != 5 or min(widths) < 4 or any(c % 4 for c in widths[1:]):
            raise ValueError(f"arch widths must be 5 channel numbers (stem, C2..C5), C2..C5 multiples of 4 "
                             f"(the channel split of a stride-1 block), got {list(widths)}")
        if any(b <= a for a, b in zip(widths, widths[1:])):
            raise ValueError(f"arch widths must increase (a stride-2 block's main branch gives C_out - C_in "
                             f"channels), got {list(widths)}")
        return SearchSpace(str(arch.get("name", "custom")), blocks, widths, int(arch.get("last_channels", 1024)),
                           int(arch.get("num_classes", 1000)))
    raise ValueError(f"unknown DetNAS arch {arch!r}: expected a name {sorted(SEARCH_SPACES)} or a dict")


WIDTH_MULTIPLE = 4  # C2-C5 stay multiples of 4 under scaling: the stride-1 blocks split C into two even halves


def scale_space(arch, factor: float, multiple: int = WIDTH_MULTIPLE, minimum: int = WIDTH_MULTIPLE) -> SearchSpace:
    """The search space of ``arch`` (:func:`search_space`) with its channel table -- stem, C2..C5 and the
    ImageNet ``last_channels`` -- times ``factor`` (uniform channel scaling for reduced-scale training),
    each rounded to the nearest multiple of ``multiple`` (halves up; default 4, which keeps the ShuffleNetV2
    channel split valid: a stride-1 block splits C into two halves of C/2 and its main branch is C/2 wide)
    and at least ``minimum``; where rounding would make a width not larger than the previous one (a stride-2
    block's main branch gives ``C_out - C_in`` channels) it is raised to the previous one plus ``multiple``.
    Block counts are kept; the name gets a ``-w{factor}`` suffix. ``factor == 1`` returns the space
    unchanged."""
    space = search_space(arch)
    factor = float(factor)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"DetNAS width_multiplier must be a positive number, got {factor!r}")
    multiple, minimum = int(multiple), int(minimum)
    if multiple < 1 or multiple % 2 or minimum < multiple or minimum % multiple:
        raise ValueError(f"scale_space needs an even multiple >= 2 and a minimum that is a multiple of it, got "
                         f"multiple={multiple}, minimum={minimum}")
    if factor == 1.0:
        return space
    widths, prev = [], 0
    for c in space.widths:
        c = max(minimum, int(c * factor / multiple + 0.5) * multiple)
        if c <= prev:
            c = prev + multiple
        widths.append(c)
        prev = c
    last = max(minimum, int(space.last_channels * factor / multiple + 0.5) * multiple)
    return SearchSpace(f"{space.name}-w{factor:g}", space.stage_blocks, tuple(widths), last, space.num_classes)


def validate_path(path, arch) -> tuple:
    """``path`` as a tuple of ints, checked against the search space of ``arch``: one choice in
    ``0..NUM_CHOICES-1`` per block position. Raises ValueError naming the problem."""
    space = search_space(arch)
    if isinstance(path, (torch.Tensor, np.ndarray)):
        path = path.tolist()
    if isinstance(path, (str, bytes)) or not isinstance(path, Iterable):
        raise ValueError(f"path must be a sequence of {space.num_blocks} choice indices, got {path!r}")
    path = list(path)
    if len(path) != space.num_blocks:
        raise ValueError(f"path has {len(path)} choices but the {space.name} search space has "
                         f"{space.num_blocks} blocks {list(space.stage_blocks)}")
    out = []
    for i, c in enumerate(path):
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
            raise ValueError(f"path: choice at block {i} must be an integer index, got {c!r}")
        if not 0 <= int(c) < NUM_CHOICES:
            raise ValueError(f"path: choice {int(c)} at block {i} is out of range 0..{NUM_CHOICES - 1} "
                             f"({', '.join(f'{k}={n}' for k, n in enumerate(CHOICES))})")
        out.append(int(c))
    return tuple(out)


# --------------------------------------------------------------------------------------------------------------
# published paths (DetNAS code, maskrcnn_benchmark/modeling/backbone/detnasnet.py @ aa92a906; same indices as
# CHOICES: 0 = 3x3, 1 = 5x5, 2 = 7x7, 3 = Xception)
# --------------------------------------------------------------------------------------------------------------

#: DetNAS searched on COCO with FPN in the small space (README: ImageNet top-1 err 26.2, COCO minival AP 36.6).
DETNAS_COCO_FPN_300M = (2, 1, 2, 0, 2, 1, 1, 2, 3, 3, 1, 3, 0, 0, 3, 1, 3, 1, 3, 2)
#: DetNAS searched on COCO with RetinaNet in the small space (README: err 26.0, AP 34.1).
DETNAS_COCO_RETINANET_300M = (2, 3, 1, 1, 3, 2, 1, 3, 3, 1, 1, 1, 3, 3, 2, 0, 3, 3, 3, 3)
#: DetNASNet, searched on COCO with FPN in the large space (README: err 22.8, AP 40.3; paper Table 2: 40.2).
DETNAS_COCO_FPN_1_3G = (0, 0, 3, 1, 2, 1, 0, 2, 0, 3, 1, 2, 3, 3, 2, 0, 2, 1, 1, 3,
                        2, 0, 2, 2, 2, 1, 3, 1, 0, 3, 3, 3, 1, 3, 3, 3, 3, 3, 3, 3)
#: DetNASNet (3.8): the same path with the 3.8G widths (README: err 21.6, AP 42.0).
DETNAS_COCO_FPN_3_8G = DETNAS_COCO_FPN_1_3G

#: name -> (arch, path) of the published DetNAS networks.
PUBLISHED_PATHS = {
    "DetNAS-COCO-FPN-300M": ("300M", DETNAS_COCO_FPN_300M),
    "DetNAS-COCO-RetinaNet-300M": ("300M", DETNAS_COCO_RETINANET_300M),
    "DetNAS-COCO-FPN-1.3G": ("1.3G", DETNAS_COCO_FPN_1_3G),
    "DetNAS-COCO-FPN-3.8G": ("3.8G", DETNAS_COCO_FPN_3_8G),
}

# --------------------------------------------------------------------------------------------------------------
# choice blocks
# --------------------------------------------------------------------------------------------------------------


def _norm(norm_cfg, c: int) -> nn.Module:
    from mmcv.cnn import build_norm_layer

    return build_norm_layer(dict(norm_cfg), c)[1]


def _dw(c: int, k: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False)


def _pw(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False)


def channel_shuffle(x: torch.Tensor, method: int = 1):
    """Shuffle the channels of ``x`` (2 groups) and split them into the two halves of a stride-1 block.

    method 1 (DetNAS supernet): transpose (2, C/2) -> (C/2, 2), then first half / second half.
    method 2 (SPOS / maskrcnn-benchmark default): even channels / odd channels."""
    b, c, h, w = x.shape
    if method == 1:
        x = x.reshape(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        return x[:, : c // 2], x[:, c // 2:]
    return x[:, 0::2], x[:, 1::2]


class _ChoiceBlock(nn.Module):
    """Common part of the two ShuffleNetV2 choice blocks: the split/shuffle (stride 1) or the projection
    branch (stride 2), and the concatenation. Subclasses set ``branch_main``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm_cfg, channel_shuffle: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"choice block stride must be 1 or 2, got {stride}")
        if stride == 1 and c_in != c_out:
            raise ValueError(f"a stride-1 choice block keeps its channels, got {c_in} -> {c_out}")
        if channel_shuffle not in (1, 2):
            raise ValueError(f"channel_shuffle must be 1 or 2, got {channel_shuffle}")
        self.c_in, self.c_out, self.kernel, self.stride = c_in, c_out, kernel, stride
        self.shuffle_method = channel_shuffle
        self.mid = c_out // 2  # the DetNAS code's base_mid_channels = stage out_channels // 2
        # channels into / out of the main branch
        self.main_in = c_in if stride == 2 else c_in // 2
        self.main_out = c_out - c_in if stride == 2 else c_out // 2
        if stride == 2:
            self.branch_proj = nn.Sequential(
                _dw(c_in, kernel, 2), _norm(norm_cfg, c_in),
                _pw(c_in, c_in), _norm(norm_cfg, c_in), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x_proj, x_main = channel_shuffle(x, self.shuffle_method)
        else:
            x_proj, x_main = self.branch_proj(x), x
        return torch.cat((x_proj, self.branch_main(x_main)), 1)


class ShuffleChoiceBlock(_ChoiceBlock):
    """ShuffleNetV2 block with a ``kernel`` x ``kernel`` depthwise conv (choices 0, 1, 2)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm_cfg=dict(type="BN"),
                 channel_shuffle: int = 1):
        super().__init__(c_in, c_out, kernel, stride, norm_cfg, channel_shuffle)
        m = self.mid
        self.branch_main = nn.Sequential(
            _pw(self.main_in, m), _norm(norm_cfg, m), nn.ReLU(inplace=True),
            _dw(m, kernel, stride), _norm(norm_cfg, m),
            _pw(m, self.main_out), _norm(norm_cfg, self.main_out), nn.ReLU(inplace=True))


class XceptionChoiceBlock(_ChoiceBlock):
    """ShuffleNetV2 block whose main branch is three 3x3 depthwise separable convs (choice 3)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm_cfg=dict(type="BN"), channel_shuffle: int = 1):
        super().__init__(c_in, c_out, 3, stride, norm_cfg, channel_shuffle)
        i, m, o = self.main_in, self.mid, self.main_out
        self.branch_main = nn.Sequential(
            _dw(i, 3, stride), _norm(norm_cfg, i), _pw(i, m), _norm(norm_cfg, m), nn.ReLU(inplace=True),
            _dw(m, 3, 1), _norm(norm_cfg, m), _pw(m, m), _norm(norm_cfg, m), nn.ReLU(inplace=True),
            _dw(m, 3, 1), _norm(norm_cfg, m), _pw(m, o), _norm(norm_cfg, o), nn.ReLU(inplace=True))


def make_choice_block(choice: int, c_in: int, c_out: int, stride: int, norm_cfg=dict(type="BN"),
                      channel_shuffle: int = 1) -> nn.Module:
    """The choice block ``choice`` (index into :data:`CHOICES`)."""
    if choice == 3:
        return XceptionChoiceBlock(c_in, c_out, stride, norm_cfg, channel_shuffle)
    return ShuffleChoiceBlock(c_in, c_out, _KERNEL[choice], stride, norm_cfg, channel_shuffle)


class _Stem(nn.Sequential):
    """3x3 conv, stride 2 (with bias, as the DetNAS code's ConvBNReLU) + BN + ReLU."""

    def __init__(self, c_out: int, norm_cfg):
        super().__init__()
        self.conv = nn.Conv2d(3, c_out, 3, 2, 1, bias=True)
        self.bn = _norm(norm_cfg, c_out)
        self.relu = nn.ReLU(inplace=True)


def _detnas_init(module: nn.Module) -> None:
    """The initialisation of the DetNAS ImageNet supernet (``_initialize_weights``): conv weights
    N(0, 1/fan-in-per-group) (i.e. std 1/weight.shape[1]), the stem's N(0, 0.01), biases 0; BN weight 1,
    bias 1e-4, running mean 0."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0, 0.01 if name.startswith("stem") else 1.0 / m.weight.shape[1])
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BatchNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.constant_(m.bias, 1e-4)
            if m.running_mean is not None:
                nn.init.zeros_(m.running_mean)


# --------------------------------------------------------------------------------------------------------------
# supernet and single-path backbone
# --------------------------------------------------------------------------------------------------------------


class _DetNASBase(BaseModule):
    """Shared arguments of the two backbones: arch, out_indices, norm, shuffle, norm_eval."""

    def __init__(self, arch, out_indices, norm_cfg, norm_eval, channel_shuffle, init_cfg, width_multiplier=1.0):
        super().__init__(init_cfg)
        self.width_multiplier = float(width_multiplier)
        self.space = scale_space(arch, self.width_multiplier)
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(not 0 <= i < 4 for i in out_indices) or len(set(out_indices)) != len(out_indices):
            raise ValueError(f"out_indices must be distinct stages among 0..3 (C2..C5), got {list(out_indices)}")
        if channel_shuffle not in (1, 2):
            raise ValueError(f"channel_shuffle must be 1 or 2, got {channel_shuffle!r}")
        self.out_indices = out_indices
        self.norm_cfg = dict(norm_cfg)
        self.norm_eval = bool(norm_eval)
        self.channel_shuffle = int(channel_shuffle)
        self.out_channels = [self.space.out_channels[i] for i in out_indices]
        self.strides = [2 ** (i + 2) for i in out_indices]
        self.stem = _Stem(self.space.widths[0], self.norm_cfg)
        # index of the last block of every stage
        self._stage_ends = tuple(int(e) - 1 for e in np.cumsum(self.space.stage_blocks))

    def _run(self, x, ops):
        """Stem, then the block modules ``ops`` (one per position); the selected stage outputs."""
        x = self.stem(x)
        outs = []
        for i, op in enumerate(ops):
            x = op(x)
            if i in self._stage_ends:
                s = self._stage_ends.index(i)
                if s in self.out_indices:
                    outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


@MODELS.register_module()
class DetNASSupernet(_DetNASBase):
    """The one-shot supernet of a DetNAS search space as an mmdet backbone.

    Every block position holds all :data:`NUM_CHOICES` choice blocks (``self.blocks[i][c]``); a forward
    pass runs one path through them:

    * ``forward(x, path=p)``: path ``p``;
    * in ``train()`` mode with ``sample=True``: a path drawn uniformly (each block's choice independently and
      uniformly, as the DetNAS detection supernet training does; its ImageNet pre-training instead draws a
      FLOPs bin of 290-360M uniformly first, not done here) from the supernet's own generator seeded
      with ``seed``, a new one per call, i.e. per training iteration (mmdet runs the backbone once per
      iteration); the path used is kept in ``last_path``;
    * otherwise (eval mode, or ``sample=False``): the fixed path (``path`` argument, :meth:`set_path`); with
      none set, ValueError.

    ``sample`` defaults to ``path is None``: give a path for the single-path network, none for a supernet
    that trains path-wise. Choices that a path does not use get no gradient (their ``.grad`` stays None,
    so optimizers skip them: "no gradient or weight update acts on other paths"); under DDP this needs
    ``model_wrapper_cfg=dict(type='MMDistributedDataParallel', find_unused_parameters=True)``, and every rank
    must use the same seed so that all draw the same path (DetNAS broadcasts the path from rank 0). The
    generator is not checkpointed: a resumed run redraws the sequence from ``seed``.

    Args:
        arch: search space (:func:`search_space`): ``'300M'`` (small, 20 blocks), ``'1.3G'`` (large, 40
            blocks), ``'3.8G'``, or a dict.
        path: a fixed path (list of choice indices), or None.
        sample: draw a path per training forward (default: ``path is None``).
        seed: seed of the path generator.
        out_indices: stages returned, 0..3 = C2..C5 (strides 4..32), as mmdet's ResNet.
        norm_cfg: mmcv norm config (DetNAS trains the supernet with SyncBN: ``dict(type='SyncBN')``).
        norm_eval: keep BN in eval mode while training.
        channel_shuffle: 1 (DetNAS supernet, default) or 2 (even/odd split), see the module doc.
        init_cfg: mmengine init config (e.g. Pretrained); without it the DetNAS initialisation is applied at
            construction.
        width_multiplier: uniform channel scaling of the search space's channel table for reduced-scale
            training (:func:`scale_space`: multiples of 4, increasing); 1 (default): the published widths.
    """

    def __init__(self, arch="300M", path=None, sample=None, seed: int = 0, out_indices=(0, 1, 2, 3),
                 norm_cfg=dict(type="BN", requires_grad=True), norm_eval: bool = False, channel_shuffle: int = 1,
                 init_cfg=None, width_multiplier: float = 1.0):
        super().__init__(arch, out_indices, norm_cfg, norm_eval, channel_shuffle, init_cfg, width_multiplier)
        self.blocks = nn.ModuleList(
            nn.ModuleList(make_choice_block(c, c_in, c_out, stride, self.norm_cfg, self.channel_shuffle)
                          for c in range(NUM_CHOICES))
            for _, c_in, c_out, stride in self.space.blocks())
        self.path = None
        self.set_path(path)
        self.sample = (path is None) if sample is None else bool(sample)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self.last_path = None
        _detnas_init(self)

    def set_path(self, path) -> None:
        """Fix the path run outside sampling (None clears it)."""
        self.path = None if path is None else validate_path(path, self.space)

    def sample_path(self) -> tuple:
        """Draw the next path of the supernet's generator (uniform over the choices of each block)."""
        return tuple(int(c) for c in self._rng.integers(0, NUM_CHOICES, self.space.num_blocks))

    def reset_sampler(self, seed: int | None = None) -> None:
        """Restart the path generator (from ``seed``, default the constructor's)."""
        self.seed = self.seed if seed is None else int(seed)
        self._rng = np.random.default_rng(self.seed)

    def forward(self, x, path=None):
        if path is not None:
            p = validate_path(path, self.space)
        elif self.training and self.sample:
            p = self.sample_path()
        elif self.path is not None:
            p = self.path
        else:
            raise ValueError("DetNASSupernet has no path to run: it samples only in train() mode with "
                             "sample=True; pass forward(x, path=...) or call set_path(path) first")
        self.last_path = p
        return self._run(x, [self.blocks[i][c] for i, c in enumerate(p)])

    def extract_backbone(self, path=None) -> "DetNASBackbone":
        """A stand-alone :class:`DetNASBackbone` of ``path`` (default: the fixed path) holding only the
        chosen ops, with this supernet's weights and BN statistics for that path, in the same train/eval
        mode."""
        p = self.path if path is None else validate_path(path, self.space)
        if p is None:
            raise ValueError("extract_backbone needs a path (argument or set_path)")
        net = DetNASBackbone(arch=self.space, path=p, out_indices=self.out_indices, norm_cfg=self.norm_cfg,
                             norm_eval=self.norm_eval, channel_shuffle=self.channel_shuffle)
        net.load_state_dict(path_state_dict(self.state_dict(), p))
        p0 = next(self.parameters())
        return net.to(device=p0.device, dtype=p0.dtype).train(self.training)


@MODELS.register_module()
class DetNASBackbone(_DetNASBase):
    """A single path of a DetNAS search space as a stand-alone mmdet backbone (only the chosen ops;
    ``self.blocks[i]`` is the choice block ``path[i]``). Its state dict is that of a
    :class:`DetNASSupernet` restricted to the path (:func:`path_state_dict`). Arguments as the supernet's;
    ``path`` is required; ``width_multiplier`` scales the channel table (:func:`scale_space`; the analytic
    counters take the scaled space: ``path_flops(path, scale_space(arch, w), resolution)``)."""

    def __init__(self, arch="300M", path=None, out_indices=(0, 1, 2, 3),
                 norm_cfg=dict(type="BN", requires_grad=True), norm_eval: bool = False, channel_shuffle: int = 1,
                 init_cfg=None, width_multiplier: float = 1.0):
        super().__init__(arch, out_indices, norm_cfg, norm_eval, channel_shuffle, init_cfg, width_multiplier)
        if path is None:
            raise ValueError("DetNASBackbone needs a path (e.g. maedet.detnas.DETNAS_COCO_FPN_300M)")
        self.path = validate_path(path, self.space)
        self.blocks = nn.ModuleList(
            make_choice_block(c, c_in, c_out, stride, self.norm_cfg, self.channel_shuffle)
            for c, (_, c_in, c_out, stride) in zip(self.path, self.space.blocks()))
        _detnas_init(self)

    def forward(self, x):
        return self._run(x, self.blocks)


def path_state_dict(state_dict: dict, path, prefix: str = "") -> dict:
    """The state dict of the :class:`DetNASBackbone` of ``path`` from a :class:`DetNASSupernet` state dict:
    keys ``{prefix}blocks.{i}.{c}.*`` are kept for ``c == path[i]`` (as ``{prefix}blocks.{i}.*``) and dropped
    for the other choices; all other keys are unchanged (so a detector checkpoint converts with
    ``prefix='backbone.'``)."""
    path = list(path)
    pat = re.compile(rf"^{re.escape(prefix)}blocks\.(\d+)\.(\d+)\.(.*)$")
    out = {}
    for k, v in state_dict.items():
        m = pat.match(k)
        if m is None:
            out[k] = v
            continue
        i, c, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        if i >= len(path):
            raise ValueError(f"path has {len(path)} choices but the state dict has block {i}")
        if c == path[i]:
            out[f"{prefix}blocks.{i}.{rest}"] = v
    return out


# --------------------------------------------------------------------------------------------------------------
# FLOPs (MACs) and params, analytically
# --------------------------------------------------------------------------------------------------------------


def _out(h: int, stride: int) -> int:
    """Output size of an odd-kernel conv with padding k//2."""
    return (h - 1) // stride + 1


def _block_convs(choice: int, c_in: int, c_out: int, stride: int, h: int, w: int):
    """``(c_in, c_out, k, groups, h_out, w_out)`` of every conv of a choice block (each one followed by a BN)."""
    k = _KERNEL[choice]
    mid = c_out // 2
    i = c_in if stride == 2 else c_in // 2
    o = c_out - c_in if stride == 2 else c_out // 2
    ho, wo = _out(h, stride), _out(w, stride)
    convs = []
    if stride == 2:  # projection branch
        convs += [(c_in, c_in, k, c_in, ho, wo), (c_in, c_in, 1, 1, ho, wo)]
    if choice == 3:
        convs += [(i, i, 3, i, ho, wo), (i, mid, 1, 1, ho, wo),
                  (mid, mid, 3, mid, ho, wo), (mid, mid, 1, 1, ho, wo),
                  (mid, mid, 3, mid, ho, wo), (mid, o, 1, 1, ho, wo)]
    else:  # the first 1x1 runs at the input resolution
        convs += [(i, mid, 1, 1, h, w), (mid, mid, k, mid, ho, wo), (mid, o, 1, 1, ho, wo)]
    return convs


def _macs(convs) -> int:
    return sum(co * (ci // g) * k * k * h * w for ci, co, k, g, h, w in convs)


def _params(convs) -> int:  # conv weights + BN weight and bias
    return sum(co * (ci // g) * k * k + 2 * co for ci, co, k, g, _, _ in convs)


def _hw(resolution) -> tuple:
    if isinstance(resolution, (int, np.integer)):
        h = w = int(resolution)
    else:
        h, w = (int(r) for r in resolution)
    if h < 1 or w < 1:
        raise ValueError(f"resolution must be positive, got {resolution!r}")
    return h, w


@lru_cache(maxsize=64)
def _tables(space: SearchSpace, h: int, w: int):
    sh, sw = _out(h, 2), _out(w, 2)
    c0 = space.widths[0]
    stem_macs = c0 * 3 * 9 * sh * sw
    stem_params = c0 * 3 * 9 + c0 + 2 * c0  # conv weight + bias, BN
    macs, params = [], []
    h, w = sh, sw
    for _, c_in, c_out, stride in space.blocks():
        convs = [_block_convs(c, c_in, c_out, stride, h, w) for c in range(NUM_CHOICES)]
        macs.append(tuple(_macs(cv) for cv in convs))
        params.append(tuple(_params(cv) for cv in convs))
        h, w = _out(h, stride), _out(w, stride)
    c_last, n = space.last_channels, space.num_classes
    head_macs = c_last * space.widths[-1] * h * w + n * c_last  # last 1x1 conv + FC
    head_params = c_last * space.widths[-1] + 3 * c_last + n * c_last + n  # conv (+bias) + BN, FC (+bias)
    return stem_macs, tuple(macs), head_macs, stem_params, tuple(params), head_params


def block_flops_table(arch, resolution=224) -> tuple:
    """``(stem_macs, table)``: ``table[i][c]`` = MACs of choice ``c`` at block ``i`` (a path's MACs are the stem's
    plus one entry per block)."""
    h, w = _hw(resolution)
    t = _tables(search_space(arch), h, w)
    return t[0], t[1]


def path_flops(path, arch="300M", resolution=224, classifier: bool = False) -> int:
    """MACs (multiply-accumulates) of the convolutions of the backbone of ``path`` (stem + blocks) on a
    ``resolution`` input (int or (H, W)) -- what DetNAS calls FLOPs. ``torch.utils.flop_counter`` reports
    2x this. ``classifier=True`` adds the ImageNet head (last 1x1 conv + FC), the network the paper's
    300M/1.3G/3.8G refer to."""
    space = search_space(arch)
    p = validate_path(path, space)
    stem, table, head, *_ = _tables(space, *_hw(resolution))
    return stem + sum(table[i][c] for i, c in enumerate(p)) + (head if classifier else 0)


def path_params(path, arch="300M", classifier: bool = False) -> int:
    """Parameters of the backbone of ``path`` (conv weights, the stem conv's bias, BN weights and biases;
    BN buffers not counted): the ``numel`` sum of :class:`DetNASBackbone`'s parameters. ``classifier=True``
    adds the ImageNet head."""
    space = search_space(arch)
    p = validate_path(path, space)
    *_, stem, table, head = _tables(space, 224, 224)
    return stem + sum(table[i][c] for i, c in enumerate(p)) + (head if classifier else 0)


# --------------------------------------------------------------------------------------------------------------
# BN recalibration
# --------------------------------------------------------------------------------------------------------------


def recalibrate_bn(model: nn.Module, path, batches: Iterable, momentum: float | None = None) -> int:
    """Recompute the BN statistics of ``model`` for one ``path`` on ``batches`` (no gradients), as DetNAS
    does before evaluating each path (it uses 500 training images).

    ``model`` is a :class:`DetNASSupernet`, a :class:`DetNASBackbone`, or any module containing a supernet
    (an mmdet detector). The path is set on every supernet inside (``set_path``; it stays set, so the model
    then evaluates that path). The running statistics of every BN layer are reset and re-estimated, except
    those of the choice blocks the path does not use (left untouched). ``momentum=None`` (default) gives
    each batch equal weight (cumulative average; the DetNAS ImageNet code gets the same with momentum
    1/iteration); pass ``momentum=0.1`` for the exponential average of the DetNAS detection search.

    A batch is a tensor of images (run through ``model.extract_feat`` if the model has it, i.e. backbone +
    neck of a detector, else ``model(batch)``) or an mmdet data batch (a dict with ``inputs``; run through
    the data preprocessor and ``model(..., mode='loss')``, so head BNs are updated too, as DetNAS runs the
    whole detector). Train/eval modes, sampling flags and momenta are restored afterwards. Returns the
    number of batches used."""
    supernets = [m for m in model.modules() if isinstance(m, DetNASSupernet)]
    skip = set()
    if supernets:
        for net in supernets:
            net.set_path(path)
            for i, ops in enumerate(net.blocks):
                for c, op in enumerate(ops):
                    if c != net.path[i]:
                        skip.update(id(m) for m in op.modules())
    elif any(isinstance(m, DetNASBackbone) for m in model.modules()):
        for net in (m for m in model.modules() if isinstance(m, DetNASBackbone)):
            if path is not None and validate_path(path, net.space) != net.path:
                raise ValueError(f"recalibrate_bn: path {list(path)} is not the DetNASBackbone's path "
                                 f"{list(net.path)}")
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise ValueError("recalibrate_bn: no batches given")
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and id(m) not in skip]
    modes = {id(m): m.training for m in model.modules()}
    momenta = [bn.momentum for bn in bns]
    samples = [net.sample for net in supernets]
    n = 0
    try:
        for net in supernets:
            net.sample = False
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = momentum
        model.train()
        for bn in bns:  # also those a norm_eval flag keeps in eval mode
            bn.train()
        with torch.no_grad():
            for batch in itertools.chain([first], batches):
                if isinstance(batch, dict):
                    data = model.data_preprocessor(batch, True)
                    model(**data, mode="loss")
                elif hasattr(model, "extract_feat"):
                    model.extract_feat(batch)
                else:
                    model(batch)
                n += 1
    finally:
        for net, s in zip(supernets, samples):
            net.sample = s
        for bn, mom in zip(bns, momenta):
            bn.momentum = mom
        for m in model.modules():
            m.training = modes[id(m)]
    return n


# --------------------------------------------------------------------------------------------------------------
# evolutionary search
# --------------------------------------------------------------------------------------------------------------

#: The EA's numbers in the DetNAS code (distributed_arch_search/arch_search_config.py; paper Sec. 4:
#: "repeated for 20 iterations. The population size |P| is 50 and the parents size is 10. Thus, there are
#: 1000 networks evaluated in one search"). flops_limit=300e6 MACs at 224x224 for the 300M space.
DETNAS_EA = dict(population=50, generations=20, topk=10, mutation_num=20, crossover_num=20, mutation_prob=0.1)


@dataclass
class Candidate:
    """One evaluated path."""

    path: tuple
    fitness: float
    flops: int
    generation: int
    origin: str  # 'random', 'mutation' or 'crossover'


@dataclass
class SearchResult:
    """What :func:`evolution_search` returns.

    ``history[g]`` describes generation ``g``: its ``candidates`` (:class:`Candidate`, in evaluation order),
    the generation's own best (``best_path``/``best_fitness``), the best so far (``best_so_far_*``), and how
    many candidates came from mutation / crossover / random sampling."""

    best_path: tuple
    best_fitness: float
    best_flops: int
    top_k: list
    history: list
    evaluated: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def evolution_search(fitness: Callable[[tuple], float], arch="300M", flops_budget: float | None = None,
                     resolution=224, population: int = 50, generations: int = 20, topk: int = 10,
                     mutation_num: int = 20, crossover_num: int = 20, mutation_prob: float = 0.1, seed: int = 0,
                     max_tries: int = 10000, flops_fn: Callable[[tuple], float] | None = None) -> SearchResult:
    """DetNAS's evolutionary search over the paths of a search space; ``fitness(path) -> float`` is
    maximised (val AP of the path in the real use, after :func:`recalibrate_bn`).

    The algorithm of the DetNAS code (``EvolutionTrainer``), with its defaults (:data:`DETNAS_EA`):

    1. the first generation: ``population`` random paths;
    2. every candidate is evaluated once; the ``topk`` best paths ever evaluated are the parents;
    3. the next generation: ``mutation_num`` mutations (a random parent, each choice redrawn uniformly with
       probability ``mutation_prob``), ``crossover_num`` crossovers (two random parents, each choice taken
       from either with probability 1/2), and random paths up to ``population``;
    4. repeat for ``generations`` generations (``population * generations`` evaluations; 1000 in DetNAS).

    Every candidate must be new (never evaluated, not already in its generation) and, if ``flops_budget`` is
    given, have ``flops_fn(path) <= flops_budget`` (default :func:`path_flops` at ``resolution``, MACs of the
    backbone at 224x224 as in the DetNAS code); others are rejected and redrawn. Mutation and crossover stop
    after 10 x their number of draws (the DetNAS bound, which its code counts only on accepted draws, so
    there it never binds; here every draw counts; the remainder is filled randomly); random sampling
    raises RuntimeError after ``max_tries`` draws. A budget that no path meets raises ValueError before
    anything is evaluated. Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed (and a
    deterministic ``fitness``) gives the same search. The last generation is not followed by a new one.
    """
    space = search_space(arch)
    for name, v in dict(population=population, generations=generations, topk=topk).items():
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if mutation_num < 0 or crossover_num < 0 or mutation_num + crossover_num > population:
        raise ValueError(f"mutation_num ({mutation_num}) + crossover_num ({crossover_num}) must be between 0 and "
                         f"population ({population})")
    if not 0.0 <= mutation_prob <= 1.0:
        raise ValueError(f"mutation_prob must be in [0, 1], got {mutation_prob}")
    rng = np.random.default_rng(seed)
    n = space.num_blocks
    if flops_fn is None:
        stem, table = block_flops_table(space, resolution)

        def flops_fn(p):
            return stem + sum(table[i][c] for i, c in enumerate(p))

        smallest = stem + sum(min(row) for row in table)
    else:
        smallest = None
    if flops_budget is not None and smallest is not None and smallest > flops_budget:
        raise ValueError(f"flops_budget={flops_budget:g} MACs admits no path of the {space.name} search space at "
                         f"resolution {resolution}: the smallest path has {smallest} MACs")

    evaluated: dict = {}  # path -> Candidate
    flops_cache: dict = {}

    def flops_of(p):
        if p not in flops_cache:
            flops_cache[p] = flops_fn(p)
        return flops_cache[p]

    def legal(p, taken):
        if p in evaluated or p in taken:
            return False
        return flops_budget is None or flops_of(p) <= flops_budget

    def draw(make, num, tries, taken, strict):
        got = []
        for _ in range(tries):
            if len(got) >= num:
                break
            p = make()
            if legal(p, taken):
                got.append(p)
                taken.add(p)
        if strict and len(got) < num:
            raise RuntimeError(
                f"evolution_search: only {len(got)} of {num} new random paths within flops_budget="
                f"{flops_budget} found in {tries} draws"
                + (f" (smallest path: {smallest} MACs)" if smallest is not None else "")
                + "; the budget admits too few paths (or the search space is exhausted); raise the budget or "
                "max_tries")
        return got

    def random_path():
        return tuple(int(c) for c in rng.integers(0, NUM_CHOICES, n))

    parents: list = []  # the top-k Candidates so far, best first

    def pick():
        return parents[int(rng.integers(len(parents)))].path

    def mutate():
        p = list(pick())
        for i in range(n):
            if rng.random() < mutation_prob:
                p[i] = int(rng.integers(NUM_CHOICES))
        return tuple(p)

    def crossover():
        a, b = pick(), pick()
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))

    history = []
    taken: set = set()
    batch = [(p, "random") for p in draw(random_path, population, max_tries, taken, True)]
    for g in range(generations):
        cands = []
        for p, origin in batch:
            f = float(fitness(p))
            if not math.isfinite(f):
                raise ValueError(f"fitness returned {f} for path {list(p)}")
            c = Candidate(p, f, int(flops_of(p)), g, origin)
            evaluated[p] = c
            cands.append(c)
        parents = sorted(parents + cands, key=lambda c: -c.fitness)[:topk]  # stable: earlier wins ties
        best = max(cands, key=lambda c: c.fitness)
        history.append(dict(
            generation=g, candidates=cands, best_path=best.path, best_fitness=best.fitness,
            best_so_far_path=parents[0].path, best_so_far_fitness=parents[0].fitness,
            n_mutation=sum(c.origin == "mutation" for c in cands),
            n_crossover=sum(c.origin == "crossover" for c in cands),
            n_random=sum(c.origin == "random" for c in cands)))
        if g == generations - 1:
            break
        taken = set()
        mut = draw(mutate, mutation_num, 10 * mutation_num, taken, False)
        cro = draw(crossover, crossover_num, 10 * crossover_num, taken, False)
        rnd = draw(random_path, population - len(mut) - len(cro), max_tries, taken, True)
        batch = [(p, "mutation") for p in mut] + [(p, "crossover") for p in cro] + [(p, "random") for p in rnd]

    top = parents[0]
    return SearchResult(
        best_path=top.path, best_fitness=top.fitness, best_flops=top.flops, top_k=list(parents), history=history,
        evaluated=list(evaluated.values()),
        settings=dict(arch=space.name, flops_budget=flops_budget, resolution=resolution, population=population,
                      generations=generations, topk=topk, mutation_num=mutation_num, crossover_num=crossover_num,
                      mutation_prob=mutation_prob, seed=seed, max_tries=max_tries))

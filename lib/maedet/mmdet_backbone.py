"""``MAEDetBackbone``: any structure of this project as an mmdetection backbone.

Importing this module registers the class in ``mmdet.registry.MODELS``, so a stock mmdet config uses a
searched backbone with nothing copied into mmdet::

    custom_imports = dict(imports=['maedet.mmdet_backbone'], allow_failed_imports=False)
    model = dict(backbone=dict(_delete_=True, type='MAEDetBackbone', structure='maedet-m',
                               out_indices=(2, 3, 4)),
                 neck=dict(in_channels=[512, 1632, 2048], start_level=0))

``structure`` is a zoo name (``maedet-s/m/l``, ``resnet50``, ``resnet101``, ...), a structure JSON file (a
search's ``best.json`` too) or a dict (a structure, or a dict holding one under ``"structure"``).
``out_indices`` are 0-based stages: 0 = C1 (stride 2) ... 4 = C5 (stride 32). mmdet's ResNet numbers its
outputs from C2, so its ``out_indices=(0, 1, 2, 3)`` is our ``(1, 2, 3, 4)``.

Pretrained initialisation goes through mmengine's ``BaseModule``
(``init_cfg=dict(type='Pretrained', checkpoint='backbone.pth')``); the checkpoint is expected in the format
:func:`save_pretrained` writes (keys ``body.stages.*``). A detector checkpoint can be used with
``prefix='backbone.'``. Unlike mmengine's silent ``strict=False`` load, a checkpoint that does not fit the
structure (no matching key, or a shape mismatch) raises an error before anything is loaded.

Importing the module also turns on ``torch.set_flush_denormal(True)``: networks trained from scratch on
CPU produce denormal activations/gradients early in training, which make CPU kernels up to 10x slower
(measured on this project's reduced-scale YOLOF/Mask R-CNN runs); flushing them to zero changes nothing
measurable in the results.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from .networks import Backbone
from .structure import Structure, StructureError, load, validate

# numpy computes (and caches) its float limits lazily and warns when it does so with denormals flushed:
# compute them first
for _t in (np.float16, np.float32, np.float64, np.longdouble):
    np.finfo(_t)
torch.set_flush_denormal(True)


def _patch_ssd_head():
    """mmdet 3.3's SSDHead builds no ``loss_cls`` module (its loss is written inline), but the shared
    ``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls``: every SSD/SSDLite prediction (val, test,
    inference) fails with AttributeError. A class-level ``None`` gives that lookup its default."""
    from mmdet.models.dense_heads import SSDHead

    if "loss_cls" not in vars(SSDHead):
        SSDHead.loss_cls = None


_patch_ssd_head()

__all__ = ["MAEDetBackbone", "scale_width", "resolve", "neck_in_channels", "backbone_state_dict",
           "save_pretrained"]


def _round_width(c: int, factor: float, multiple: int, minimum: int) -> int:
    return max(minimum, int(c * factor / multiple + 0.5) * multiple)  # nearest multiple, halves up


def scale_width(structure: Structure, factor: float, multiple: int = 8, minimum: int = 8) -> Structure:
    """A validated copy with every block's ``out_channels`` and ``bottleneck`` times ``factor``, rounded to a
    multiple of ``multiple`` (at least ``minimum``), each block's ``in_channels`` re-chained to the previous
    output. Depths, kernels, strides and the input channels are kept, so FLOPs scale by about factor^2.
    ``factor == 1`` returns the structure unchanged."""
    factor = float(factor)
    if not factor > 0:
        raise ValueError(f"width_multiplier must be positive, got {factor}")
    if factor == 1.0:
        return structure
    blocks, prev = [], structure.in_channels
    for b in structure.blocks:
        out = prev if b.type == "maxpool" else _round_width(b.out_channels, factor, multiple, minimum)
        btn = None if b.bottleneck is None else _round_width(b.bottleneck, factor, multiple, minimum)
        blocks.append(replace(b, in_channels=prev, out_channels=out, bottleneck=btn))
        prev = out
    name = f"{structure.name}-w{factor:g}" if structure.name else ""
    return validate(replace(structure, blocks=tuple(blocks), name=name, source=structure.source))


def resolve(structure, width_multiplier: float = 1.0) -> Structure:
    """A :class:`Structure` from a zoo name, a JSON path, a dict or a Structure, width-scaled. A SpineNet /
    DetNAS backbone spec (:func:`maedet.detectors.backbone_spec`) is not a structure: StructureError saying so."""
    from .detectors import is_foreign

    if is_foreign(structure):
        kind = structure.get("type") if isinstance(structure, dict) else structure
        raise StructureError(f"{kind!r} is a backbone spec (SpineNet / DetNAS), not a structure of this project: "
                             f"it has no MAEDetBackbone; build it through maedet.detectors.make_config "
                             f"(flops: maedet.detectors.foreign_backbone_cost)")
    if isinstance(structure, Structure):
        s = structure
    elif isinstance(structure, dict):
        d = structure
        if "blocks" not in d and isinstance(d.get("structure"), dict):  # e.g. a search's best.json
            d = d["structure"]
        s = Structure.from_dict(dict(d))
    elif isinstance(structure, (str, Path)):
        s = load(str(structure))
    else:
        raise StructureError(f"structure must be a zoo name, a JSON path, a dict or a Structure, "
                             f"got {type(structure).__name__}")
    return scale_width(s, width_multiplier)


def neck_in_channels(structure, out_indices=(1, 2, 3, 4), width_multiplier: float = 1.0) -> list[int]:
    """The channels of the selected stages: what an FPN's ``in_channels`` must be."""
    s = resolve(structure, width_multiplier)
    n = s.num_stages
    for i in out_indices:
        if not 0 <= i < n:
            raise ValueError(f"out_indices: stage {i} does not exist (structure has {n} stages)")
    return [s.stage_channels[i] for i in out_indices]


@MODELS.register_module()
class MAEDetBackbone(BaseModule):
    """The training network of a structure (conv + norm (+ ReLU), bottleneck units with residual links)
    returning the stage features selected by ``out_indices``.

    Args:
        structure: zoo name, structure JSON path, dict, or :class:`Structure`.
        out_indices: 0-based stages to return (0 = C1 stride 2 ... 4 = C5 stride 32). Default C2-C5.
        width_multiplier: uniform channel scaling (:func:`scale_width`) for reduced-scale training.
        norm_cfg: mmcv norm config, built with ``mmcv.cnn.build_norm_layer`` (BN, SyncBN, GN, ...).
        norm_eval: keep the norm layers in eval mode (frozen statistics) while training.
        frozen_stages: freeze the parameters and statistics of stages 0..frozen_stages (-1: none).
        zero_init_residual: zero the last norm's weight of every residual branch.
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=...)``; ``None``: Kaiming
            (fan_out) convolutions, unit norms, zero-initialised residual norms.

    Attributes:
        out_channels: channels of the returned features (a list, one per ``out_indices``).
        strides: their strides.
        structure: the (scaled) :class:`Structure`.
    """

    def __init__(self, structure="maedet-m", out_indices=(1, 2, 3, 4), width_multiplier: float = 1.0,
                 norm_cfg=dict(type="BN", requires_grad=True), norm_eval: bool = False, frozen_stages: int = -1,
                 zero_init_residual: bool = True, init_cfg=None):
        super().__init__(init_cfg)
        from mmcv.cnn import build_norm_layer

        self.structure = resolve(structure, width_multiplier)
        self.width_multiplier = float(width_multiplier)
        self.norm_eval = bool(norm_eval)
        self.out_indices = tuple(int(i) for i in out_indices)
        norm_cfg = dict(norm_cfg)

        def norm_layer(c):
            return build_norm_layer(norm_cfg, c)[1]

        self.body = Backbone(self.structure, out_indices=self.out_indices, norm_layer=norm_layer,
                             zero_init_residual=zero_init_residual, frozen_stages=frozen_stages)
        self.out_channels = list(self.body.out_channels)
        self.strides = [self.structure.stage_strides[i] for i in self.out_indices]

    def init_weights(self):
        """Default initialisation (via the child ``body``), then the Pretrained checkpoint if any."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, (list, tuple)) else [self.init_cfg] if self.init_cfg else []
        for c in cfgs:
            if c.get("type") == "Pretrained":
                self._check_pretrained(c)
        super().init_weights()

    def _check_pretrained(self, cfg: dict) -> None:
        """Fail loudly when a Pretrained checkpoint does not fit (mmengine only warns)."""
        from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint_with_prefix

        prefix = cfg.get("prefix")
        if prefix is None:
            ckpt = CheckpointLoader.load_checkpoint(cfg["checkpoint"], map_location="cpu", logger="current")
            sd = ckpt.get("state_dict", ckpt.get("model", ckpt)) if isinstance(ckpt, dict) else ckpt
        else:
            sd = _load_checkpoint_with_prefix(prefix, cfg["checkpoint"], map_location="cpu")
        sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
        own = self.state_dict()
        common = [k for k in own if k in sd]
        if not common:
            raise ValueError(f"pretrained checkpoint {cfg['checkpoint']}: none of its {len(sd)} keys match this "
                             f"backbone (expected keys like {next(iter(own))!r}; a detector checkpoint needs "
                             f"prefix='backbone.')")
        bad = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in common
               if tuple(sd[k].shape) != tuple(own[k].shape)]
        if bad:
            raise ValueError(f"pretrained checkpoint {cfg['checkpoint']} does not fit structure "
                             f"{self.structure.name or self.structure.digest()} (width x{self.width_multiplier:g}): "
                             + "; ".join(bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""))

    def forward(self, x):
        return self.body(x)

    def train(self, mode: bool = True):
        super().train(mode)
        self.body.train(mode)  # re-applies frozen stages
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, (_BatchNorm, torch.nn.GroupNorm)):
                    m.eval()
        return self


def backbone_state_dict(module: torch.nn.Module) -> dict:
    """State dict of a :class:`~maedet.networks.Backbone` or :class:`MAEDetBackbone` keyed like an
    ``MAEDetBackbone`` (``body.*``), i.e. what ``init_cfg=dict(type='Pretrained', ...)`` loads."""
    body = module.body if isinstance(module, MAEDetBackbone) else module
    return {f"body.{k}": v.detach().cpu() for k, v in body.state_dict().items()}


def save_pretrained(module: torch.nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Save a (classification-)pretrained backbone so that an ``MAEDetBackbone`` of the same structure and
    width loads it with ``init_cfg=dict(type='Pretrained', checkpoint=path)``. Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"state_dict": backbone_state_dict(module), "meta": dict(meta or {})}
    body = module.body if isinstance(module, MAEDetBackbone) else module
    if hasattr(body, "structure"):
        obj["meta"].setdefault("structure", body.structure.to_dict())
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path

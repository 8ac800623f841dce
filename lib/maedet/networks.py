"""Torch builders: a structure -> ``nn.Module``, in two modes.

* :class:`Backbone` - the *training network*: every conv followed by BN (+ ReLU), bottleneck units with
  residual links (projection shortcut = AvgPool2d(2) then 1x1 conv + BN when strided, or ResNet's strided
  1x1 conv for ``shortcut="conv"``), returning the stage features C1..C5 selected by ``out_indices``.
  Inverted bottlenecks (``mbv2``) are expansion conv, depthwise conv, optional SE, linear projection.
* :class:`ScoringNet` - the *scoring network* of the entropy estimators: the main path's convolutions
  only (no BN, no residual links, no SE, bias-free), with or without ReLU. Weights are re-drawn from
  N(0, 1) by :meth:`ScoringNet.reinit`. SE is removed while scoring, as BN and the residual links are (the
  ZenDet version of the paper, Appendix E: on the zero-mean scoring input the pooled SE input is ~0, so
  the gate is a constant ~0.5, and the estimators divide every conv output by its own scale anyway).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .structure import SE, Conv, Pool, Structure, Unit


def _bn(c: int) -> nn.Module:
    return nn.BatchNorm2d(c)


class _ConvBN(nn.Sequential):
    def __init__(self, op: Conv, norm_layer: Callable[[int], nn.Module], act: bool):
        layers = [
            nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride, op.kernel // 2, groups=op.groups,
                      bias=False),
            norm_layer(op.out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(avgpool(x))))), the FCs as 1x1 convs with bias."""

    def __init__(self, op: SE):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(op.channels, op.reduced, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(op.reduced, op.channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x)))))


def _pool(op: Pool) -> nn.Module:
    if op.kind == "max":
        return nn.MaxPool2d(op.kernel, op.stride, op.kernel // 2)
    return nn.AvgPool2d(op.kernel, op.stride, ceil_mode=True, count_include_pad=False)


def _path(ops, norm_layer) -> nn.Sequential:
    mods = []
    for op in ops:
        if isinstance(op, Conv):
            mods.append(_ConvBN(op, norm_layer, op.relu))
        else:
            mods.append(SqueezeExcite(op) if isinstance(op, SE) else _pool(op))
    return nn.Sequential(*mods)


class UnitModule(nn.Module):
    """One bottleneck / inverted-bottleneck / conv / pool unit of the training network."""

    def __init__(self, unit: Unit, norm_layer):
        super().__init__()
        self.main = _path(unit.main, norm_layer)
        self.has_shortcut = unit.shortcut is not None
        self.shortcut = _path(unit.shortcut, norm_layer) if unit.shortcut else nn.Identity()
        self.post_relu = nn.ReLU(inplace=True) if unit.post_relu else None

    def forward(self, x):
        y = self.main(x)
        if self.has_shortcut:
            y = y + self.shortcut(x)
        if self.post_relu is not None:
            y = self.post_relu(y)
        return y

    def last_norm(self) -> nn.Module | None:
        """The BN closing the residual branch (zero-initialised with ``zero_init_residual``)."""
        if not self.has_shortcut:
            return None
        last = self.main[-1]
        return last[1] if isinstance(last, _ConvBN) else None


class Backbone(nn.Module):
    """The training network of a structure; ``forward`` returns the selected stage features.

    Args:
        structure: the backbone structure.
        out_indices: 0-based stage indices to return (0 = C1 ... 4 = C5). Default: all stages.
        norm_layer: ``channels -> nn.Module`` (default ``nn.BatchNorm2d``).
        zero_init_residual: zero the last BN gamma of every residual branch (mmdet's default for ResNet).
        frozen_stages: freeze the parameters (and BN statistics) of stages 0..frozen_stages (-1 = none).
    """

    def __init__(self, structure: Structure, out_indices: Sequence[int] | None = None,
                 norm_layer: Callable[[int], nn.Module] = _bn, zero_init_residual: bool = True,
                 frozen_stages: int = -1):
        super().__init__()
        self.structure = structure
        n = structure.num_stages
        self.out_indices = tuple(range(n)) if out_indices is None else tuple(out_indices)
        for i in self.out_indices:
            if not 0 <= i < n:
                raise ValueError(f"out_indices: stage {i} does not exist (structure has {n} stages)")
        self.zero_init_residual = zero_init_residual
        self.frozen_stages = frozen_stages
        stages: list[list[nn.Module]] = [[] for _ in range(n)]
        for blk, st in zip(structure.blocks, structure.stage_of_block):
            for unit in blk.units(structure.shortcut):
                stages[st].append(UnitModule(unit, norm_layer))
        self.stages = nn.ModuleList(nn.Sequential(*mods) for mods in stages)
        self.out_channels = [structure.stage_channels[i] for i in self.out_indices]
        self.init_weights()
        self._freeze()

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.SyncBatchNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, UnitModule) and (bn := m.last_norm()) is not None and bn.weight is not None:
                    nn.init.zeros_(bn.weight)

    def _freeze(self):
        for i in range(self.frozen_stages + 1):
            st = self.stages[i]
            st.eval()
            for p in st.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()
        return self

    def forward(self, x):
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class ScoringNet(nn.Module):
    """The scoring network: the main-path convolutions as a plain chain, bias-free, no BN, no shortcut.

    ``forward(x, on_op)`` runs the chain; after every op it calls ``on_op(op, x, stage)`` where ``stage``
    is the 0-based stage index when the op ends a stage (else ``None``), and continues with the tensor
    ``on_op`` returns (the estimators normalise and/or apply ReLU there). Pools are applied as they are.
    """

    def __init__(self, structure: Structure):
        super().__init__()
        self.structure = structure
        ops, ends = [], {}
        stage_ends = set(structure.stage_ends)
        for i, (blk, st) in enumerate(zip(structure.blocks, structure.stage_of_block)):
            for unit in blk.units(structure.shortcut):
                ops.extend(op for op in unit.main if not isinstance(op, SE))  # SE is removed while scoring
            if i in stage_ends:
                ends[len(ops) - 1] = st
        self.ops = ops
        self.stage_end = ends
        # built on the meta device and materialised empty: the weights are drawn by reinit(), so the
        # default (slow) initialisation of large networks is skipped
        self.convs = nn.ModuleList(
            nn.Conv2d(o.in_channels, o.out_channels, o.kernel, o.stride, o.kernel // 2, groups=o.groups, bias=False,
                      device="meta")
            for o in ops if isinstance(o, Conv)
        ).to_empty(device="cpu")

    @torch.no_grad()
    def reinit(self, generator: torch.Generator | None = None):
        """Draw every weight from N(0, 1)."""
        for c in self.convs:
            # drawn in float32 whatever the compute dtype, so float64 runs see the very same weights
            c.weight.copy_(torch.randn(c.weight.shape, generator=generator, dtype=torch.float32))

    def forward(self, x, on_op=None):
        ci = 0
        for i, op in enumerate(self.ops):
            if isinstance(op, Conv):
                x = self.convs[ci](x)
                ci += 1
            elif op.kind == "max":
                x = F.max_pool2d(x, op.kernel, op.stride, op.kernel // 2)
            else:
                x = F.avg_pool2d(x, op.kernel, op.stride, ceil_mode=True, count_include_pad=False)
            if on_op is not None:
                x = on_op(op, x, self.stage_end.get(i))
        return x


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

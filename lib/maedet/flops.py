"""FLOPs and parameters, counted analytically from a structure (no torch module is built).

The paper's "FLOPs" are multiply-accumulates (MACs) as mmcv's complexity counter reports them: it adds
up, over the modules *it recognises*,

* convolution: ``H_out * W_out * k * k * C_in / groups * C_out``
* batch norm (``nn.BatchNorm2d`` only): 2 x elements of its input (affine)
* ReLU (``nn.ReLU`` modules only): elements of its output
* pooling: elements of its input (also the global pooling of an SE layer)
* the residual addition, the sigmoid and the product of an SE layer: never counted

Which parts a published figure contains therefore depends on how the measured model was written. The
conventions:

``conv``          convolutions only.
``mmcv``          conv + BN + ReLU + pooling: mmcv's counter on our training module (nn.ReLU, nn.BatchNorm2d).
``maedet-code``   conv + BN + pooling: the authors' released backbone (functional ReLU). Reproduces
                  MAE-DET-S/M/L of Table 1 within 0.05%.
``mmdet-syncbn``  conv + ReLU + pooling: mmdet's ResNet trained with SyncBN, which mmcv's counter does not
                  recognise. Reproduces ResNet-50/101 of Table 1 within 0.05%.
``paper``         ``mmdet-syncbn`` for the ResNet references (``shortcut="conv"``); ``mmcv`` for structures with
                  inverted bottlenecks (Table 6: mmdet's MobileNetV2 in SSDLite, with BN and nn.ReLU6
                  modules; reproduces MobileNetV2-0.5/1.0 to the printed digit); else ``maedet-code``.

Params are conv weights plus the BN affine parameters (no classifier head), plus the weights and biases
of the two 1x1 convs of an SE layer. An SE layer's conv MACs are its two 1x1 convs on the pooled 1x1 map
(the bias additions, channels + reduced per image, are left out). Tests cross-check the parts
against mmengine's counter run on the built torch module.
"""
from __future__ import annotations

from dataclasses import dataclass

from .structure import SE, Conv, Pool, Structure

CONVENTIONS = ("paper", "maedet-code", "mmdet-syncbn", "mmcv", "conv")
# which parts (conv, bn, relu, pool) each convention adds up
_PARTS = {
    "conv": (1, 0, 0, 0),
    "mmcv": (1, 1, 1, 1),
    "maedet-code": (1, 1, 0, 1),
    "mmdet-syncbn": (1, 0, 1, 1),
}


def resolve_convention(structure: Structure, convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    if convention == "paper":
        if structure.shortcut == "conv":
            return "mmdet-syncbn"
        return "mmcv" if any(b.type == "mbv2" for b in structure.blocks) else "maedet-code"
    return convention


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output size of a conv (padding kernel//2) or pool with these settings."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def parse_resolution(text: str | int | tuple) -> tuple[int, int]:
    """'1280x800' (width x height, as the paper writes it), '384' or (h, w) -> (height, width)."""
    if isinstance(text, tuple):
        h, w = text
    elif isinstance(text, int):
        h = w = text
    else:
        parts = str(text).lower().replace("*", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"resolution {text!r}: expected N or WxH, e.g. 384 or 1280x800") from None
        if len(nums) == 1:
            h = w = nums[0]
        elif len(nums) == 2:
            w, h = nums
        else:
            raise ValueError(f"resolution {text!r}: expected N or WxH, e.g. 384 or 1280x800")
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution {text!r}: sizes must be positive")
    return int(h), int(w)


@dataclass
class Cost:
    convention: str      # the resolved convention of ``macs`` and ``stage_macs``
    macs: int
    conv_macs: int
    bn_flops: int
    relu_flops: int
    pool_flops: int
    params: int
    layers: int
    stage_macs: list     # per stage, chosen convention
    stage_params: list

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _ops_cost(ops, h: int, w: int):
    """(conv, bn, relu, pool, params, h_out, w_out) of a sequence of ops applied to an h x w map."""
    conv = bn = relu = pool = params = 0
    for op in ops:
        if isinstance(op, Conv):
            ho, wo = conv_out(h, op.kernel, op.stride), conv_out(w, op.kernel, op.stride)
            conv += ho * wo * op.fan_in * op.out_channels
            params += op.fan_in * op.out_channels
            if op.bn:
                bn += 2 * op.out_channels * ho * wo
                params += 2 * op.out_channels
            if op.relu:
                relu += op.out_channels * ho * wo
            h, w = ho, wo
        elif isinstance(op, SE):  # global pool, 1x1 conv + bias, ReLU, 1x1 conv + bias; the shape is kept
            pool += op.channels * h * w
            conv += 2 * op.channels * op.reduced
            relu += op.reduced
            params += 2 * op.channels * op.reduced + op.reduced + op.channels
        elif isinstance(op, Pool):
            pool += op.channels * h * w
            if op.kind == "avg":  # kernel = stride, ceil mode
                h, w = -(-h // op.stride), -(-w // op.stride)
            else:
                h, w = conv_out(h, op.kernel, op.stride), conv_out(w, op.kernel, op.stride)
        else:  # pragma: no cover
            raise TypeError(op)
    return conv, bn, relu, pool, params, h, w


def count(structure: Structure, resolution=(224, 224), convention: str = "paper") -> Cost:
    """Count MACs (and their parts) and params of the backbone at one input size (batch 1)."""
    convention = resolve_convention(structure, convention)
    wc, wb, wr, wp = _PARTS[convention]
    h, w = parse_resolution(resolution)
    tot = [0, 0, 0, 0, 0]  # conv, bn, relu, pool, params
    n_st = structure.num_stages
    st_macs, st_params = [0] * n_st, [0] * n_st
    for blk, stage in zip(structure.blocks, structure.stage_of_block):
        # units after the first are identical: count the second once and multiply
        for unit, mult in blk.unit_groups(structure.shortcut):
            c, b, r, p, n, ho, wo = _ops_cost(unit.main, h, w)
            if unit.shortcut:
                c2, b2, r2, p2, n2, _, _ = _ops_cost(unit.shortcut, h, w)
                c, b, r, p, n = c + c2, b + b2, r + r2, p + p2, n + n2
            if unit.post_relu:
                r += unit.main[-1].out_channels * ho * wo
            vals = (c, b, r, p, n)
            for i in range(5):
                tot[i] += mult * vals[i]
            st_macs[stage] += mult * (wc * c + wb * b + wr * r + wp * p)
            st_params[stage] += mult * n
            h, w = ho, wo
    conv, bn, relu, pool, params = tot
    macs = wc * conv + wb * bn + wr * relu + wp * pool
    return Cost(convention, macs, conv, bn, relu, pool, params, structure.layers, st_macs, st_params)


def macs(structure: Structure, resolution=(224, 224), convention: str = "paper") -> int:
    return count(structure, resolution, convention).macs


def params(structure: Structure) -> int:
    return count(structure, (32, 32)).params

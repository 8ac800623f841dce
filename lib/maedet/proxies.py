"""Zero-shot proxies of the related work (the comparison of the paper's Appendix E, Table 9), on our
structures and on any ``nn.Module``.

Two interfaces, one set of definitions:

* **Structure estimators.** Importing this module registers ``zen``, ``naswot``, ``synflow``, ``gradnorm`` and
  ``snip`` in :data:`maedet.score.ESTIMATORS` (``maedet.score.score`` imports it on demand), each
  ``fn(structure, settings) -> float``: a scalar, to which alpha does not apply (``--alpha none``). The network
  is :class:`StructureNet`: :class:`maedet.networks.Backbone` (BN, ReLU, residual links; default Kaiming
  initialisation, *without* zero-initialised residual BN so that gradients reach every branch), whose last stage
  C5 is the "pre-pooling feature map", followed by a fixed random linear head (1000 classes, seeded) on globally
  pooled C5 where a loss is needed. Zen-NAS uses the no-shortcut variant (``shortcuts=False``). There is no data
  set in the zero-shot setting: the data-dependent proxies (NASWOT, GradNorm, SNIP) get N(0, 1) input and labels
  drawn uniformly from the seed. ``settings`` supplies resolution, batch size, dtype (SynFlow always runs in
  float64) and seed; ``repeats`` applies to Zen-NAS only (the others use one draw, as their papers do).
  Everything is deterministic for a seed.
* **Module API.** :func:`compute` / :func:`compute_many` (and one function per proxy) on any module whose
  ``forward`` returns logits (or a tuple whose last element is the logits); the pre-pooling features come from
  ``module.forward_pre_gap(x)`` when it exists (else from ``forward``). Real ``inputs``/``targets`` are used
  where given. The caller's module is never modified (each proxy works on a deep copy).

Definitions (notes/implementation-facts.md, section 5):

``zen``      Lin et al. 2021 (Zen-NAS). All conv/linear weights ~ N(0, 1), biases 0, BN affine (1, 0), BN in
             training mode (batch statistics), ReLU kept, residual links removed (for structures). With
             x, eps ~ N(0, 1): Delta = mean over the batch of sum over (C, H, W) of |f(x) - f(x + 0.01 eps)| on the
             pre-GAP features; score = log Delta + sum over BN layers of log sqrt(mean over channels of the
             batch variance) of the clean pass (``bn_stat="batch"``, the paper's sigma_i; a BN whose input is
             identically zero, on a dead branch of a cell, adds no term). The authors' code reads
             the BN *running* variance instead, which after two passes with momentum 0.1 is 0.81 + 0.19 x the batch
             variance (``bn_stat="running"`` reproduces that). Averaged over ``repeats`` draws.
``naswot``   Mellor et al. 2021. Binary codes c = 1[x > 0] at every ``nn.ReLU`` module over a minibatch, all
             layers together; K = c c^T + (1 - c)(1 - c)^T (N_A minus the Hamming distance); score = log|det K|
             (``slogdet``, float64). Default initialisation, BN in training mode.
``synflow``  Tanaka et al. 2020 as in Abdelfattah et al. 2021. BN replaced by identity; every parameter and
             buffer -> |value|; input all ones (batch 1); R = sum of the network output (logits); score =
             sum over conv/linear weights of |theta * dR/dtheta|. Computed in float64; the proxy returns the
             natural log of that sum (rank-equivalent; the raw sum reaches 1e30+ on deep networks).
``gradnorm`` Abdelfattah et al. 2021. Cross-entropy loss on one minibatch (BN in training mode, default
             initialisation); score = sum over conv/linear layers of ||dL/dW||_2 (per-layer norms, summed).
``snip``     Lee et al. 2019 as used by Abdelfattah et al. 2021: sum over conv/linear weights of |W * dL/dW|.
``entropy``  (module API only; the structure estimators are in :mod:`maedet.score`) The MAE-DET entropy of the
             released code, generalised to any module through forward hooks: conv/linear weights ~ N(0, 1), BN
             and ReLU replaced by identity (a linear network), input N(0, 1); after every convolution the output is
             divided by its standard deviation (whole tensor, unbiased) and log std accumulated; score =
             log(C_final) + sum of log std + log std of the pre-GAP features themselves (which picks up what
             follows the last convolution: sums of branches, pools, zero ops; it is 0 when the features are the
             output of a conv), C_final the channels of the pre-GAP features. On a chain of convolutions this *is*
             the ``forward`` estimator; on a DAG with sums (cells with skip edges, residual blocks) it is an
             approximation: every branch is rescaled to unit variance before the sum (so the branches are
             re-weighted) and the log std of parallel convolutions are all added (so it grows with the total
             number of convolutions, not the depth along a path). A convolution whose output is identically
             zero (fed only by ``none`` edges) is skipped; a network whose features are zero scores -inf.
``entropy-exact`` The quantity ``entropy`` approximates, computed without rescaling: the same linear Gaussian
             network in float64, score = log(C_final) + log std of its pre-GAP features. Equal to ``entropy`` on
             chains; exact on DAGs (up to float64 range, ~1e300).

Values of a degenerate network (a cell whose output is identically zero) are -inf for the log-valued proxies
and 0 for GradNorm/SNIP; the structure estimators reject non-finite values (``ScoreError``).
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from .score import ScoreError, ScoreSettings, register
from .structure import SE, Conv, Structure

# structure estimators registered in maedet.score.ESTIMATORS
PROXIES = ("zen", "naswot", "synflow", "gradnorm", "snip")
# everything compute() knows
MODULE_PROXIES = PROXIES + ("entropy", "entropy-exact")
# proxies that use the data batch (the others draw their own Gaussian/ones input)
DATA_PROXIES = ("naswot", "gradnorm", "snip")
# proxies whose value is a natural log
LOG_PROXIES = ("zen", "naswot", "synflow", "entropy", "entropy-exact")

STRUCTURE_CLASSES = 1000     # the fixed random head of StructureNet (ImageNet-sized)
ZEN_MIXUP_GAMMA = 1e-2

_WEIGHTED = (_ConvNd, nn.Linear)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _dtype(d) -> torch.dtype:
    if isinstance(d, torch.dtype):
        return d
    return {"float32": torch.float32, "float64": torch.float64}[str(d)]


def _last(out):
    return out[-1] if isinstance(out, (tuple, list)) else out


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _last(net(x))


def _features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    f = getattr(net, "forward_pre_gap", None)
    return _last(f(x) if callable(f) else net(x))


def weighted_layers(module: nn.Module) -> list[nn.Module]:
    """The layers whose weights the gradient proxies sum over: convolutions and linear layers."""
    return [m for m in module.modules() if isinstance(m, _WEIGHTED)]


def _replace(module: nn.Module, predicate: Callable[[nn.Module], bool], factory: Callable[[nn.Module], nn.Module]):
    """Replace (recursively, in place) every submodule matching ``predicate`` by ``factory(submodule)``."""
    for name, child in list(module.named_children()):
        if predicate(child):
            setattr(module, name, factory(child))
        else:
            _replace(child, predicate, factory)
    return module


def _without_bn(module: nn.Module) -> nn.Module:
    return _replace(module, lambda m: isinstance(m, _BatchNorm), lambda m: nn.Identity())


def _without_relu(module: nn.Module) -> nn.Module:
    return _replace(module, lambda m: isinstance(m, nn.ReLU), lambda m: nn.Identity())


@torch.no_grad()
def gaussian_init(module: nn.Module, generator: torch.Generator | None = None,
                  layers: tuple = _WEIGHTED) -> nn.Module:
    """Zen-NAS / MAE-DET initialisation: weights of ``layers`` ~ N(0, 1) (drawn in float32 in module order, so
    float64 runs see the same weights), biases 0, norm layers weight 1 bias 0."""
    for m in module.modules():
        if isinstance(m, layers):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator, dtype=torch.float32))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and getattr(m, "affine", False):
            m.weight.fill_(1.0)
            m.bias.zero_()
    return module


def _gen(seed: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1000003 + stream)


def gaussian_inputs(shape: Sequence[int], seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=_gen(seed, 1), dtype=torch.float32).to(_dtype(dtype))


def random_labels(n: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, num_classes, (n,), generator=_gen(seed, 2))


@contextmanager
def _training(net: nn.Module, mode: bool):
    old = [(m, m.training) for m in net.modules()]
    net.train(mode)
    try:
        yield net
    finally:
        for m, t in old:
            m.training = t


def _finite_log(v: float) -> float:
    return math.log(v) if v > 0 else float("-inf")


# --------------------------------------------------------------------------------------------------
# Zen-NAS
# --------------------------------------------------------------------------------------------------
def zen_score(module: nn.Module, input_shape: Sequence[int], *, repeats: int = 1, seed: int = 0,
              mixup_gamma: float = ZEN_MIXUP_GAMMA, bn_stat: str = "batch", dtype=torch.float32,
              inplace: bool = False) -> float:
    """Zen-score of ``module`` (its pre-GAP features; residual links are whatever the module has: pass a
    no-shortcut network to follow Zen-NAS). See the module docstring."""
    if bn_stat not in ("batch", "running"):
        raise ValueError(f"bn_stat must be 'batch' or 'running', got {bn_stat!r}")
    dt = _dtype(dtype)
    net = (module if inplace else copy.deepcopy(module)).to(dt)
    bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    gen = _gen(seed, 3)
    batch_vars: dict[int, float] = {}
    capture = [False]

    def pre_hook(m, inp):
        if capture[0]:
            x = inp[0]
            dims = [d for d in range(x.dim()) if d != 1]
            batch_vars[id(m)] = float(x.var(dim=dims, unbiased=True).mean())

    hooks = [m.register_forward_pre_hook(pre_hook) for m in bns] if bn_stat == "batch" else []
    scores = []
    try:
        with _training(net, True), torch.no_grad():
            for _ in range(repeats):
                gaussian_init(net, gen)
                if bn_stat == "running":
                    for m in bns:
                        m.reset_running_stats()
                x = torch.randn(tuple(input_shape), generator=gen, dtype=torch.float32).to(dt)
                eps = torch.randn(tuple(input_shape), generator=gen, dtype=torch.float32).to(dt)
                capture[0] = True
                f1 = _features(net, x)
                capture[0] = False
                f2 = _features(net, x + mixup_gamma * eps)
                delta = float((f1 - f2).abs().flatten(1).sum(1).mean())
                # a BN on an identically zero branch (a conv fed only by 'none' edges) normalises nothing:
                # it contributes no term (its log would be -inf)
                if bn_stat == "batch":
                    log_bn = sum(0.5 * math.log(batch_vars[id(m)]) for m in bns if batch_vars.get(id(m), 0) > 0)
                else:
                    log_bn = sum(0.5 * _finite_log(float(m.running_var.mean())) for m in bns)
                scores.append(_finite_log(delta) + log_bn)
    finally:
        for h in hooks:
            h.remove()
    return float(np.mean(scores))


# --------------------------------------------------------------------------------------------------
# NASWOT
# --------------------------------------------------------------------------------------------------
def hamming_kernel(codes: torch.Tensor) -> torch.Tensor:
    """K = c c^T + (1 - c)(1 - c)^T of binary codes ``[N, D]`` (float64): N_A minus the Hamming distance."""
    c = codes.flatten(1)
    d = c.shape[1]
    # (1 - c)(1 - c)^T = D - s_i - s_j + c c^T with s the row sums: one product. 0/1 sums below 2^24 are exact
    # in float32 (every partial sum is an integer no larger than D).
    c = c.to(torch.float32 if d < 2 ** 24 else torch.float64)
    cc = (c @ c.T).to(torch.float64)
    s = c.sum(1, dtype=torch.float64)
    return 2.0 * cc - s[:, None] - s[None, :] + float(d)


def naswot_logdet(kernel) -> float:
    """log |det K| (``slogdet``), as Mellor et al. score it."""
    k = kernel.detach().cpu().numpy() if isinstance(kernel, torch.Tensor) else np.asarray(kernel, dtype=np.float64)
    _, logdet = np.linalg.slogdet(k)
    return float(logdet)


@contextmanager
def _relu_kernel(net: nn.Module, batch: int):
    """Accumulate the NASWOT kernel over every ``nn.ReLU`` module during the forward passes inside."""
    state = {"K": torch.zeros(batch, batch, dtype=torch.float64), "layers": 0}

    def hook(m, inp, out):
        state["K"] += hamming_kernel((out.detach() > 0).flatten(1))
        state["layers"] += 1

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        yield state
    finally:
        for h in hooks:
            h.remove()


def naswot_score(module: nn.Module, inputs: torch.Tensor, *, inplace: bool = False) -> float:
    net = module if inplace else copy.deepcopy(module)
    with _training(net, True), torch.no_grad(), _relu_kernel(net, inputs.shape[0]) as st:
        net(inputs)
    if st["layers"] == 0:
        raise ValueError("naswot: the module has no nn.ReLU modules (functional ReLUs are not seen by hooks)")
    return naswot_logdet(st["K"])


# --------------------------------------------------------------------------------------------------
# SynFlow
# --------------------------------------------------------------------------------------------------
def synflow_score(module: nn.Module, input_shape: Sequence[int], *, log: bool = True, inplace: bool = False) -> float:
    """SynFlow in float64 with BN as identity; ``log=True`` returns the natural log of the sum."""
    net = _without_bn(module if inplace else copy.deepcopy(module)).to(torch.float64)
    with torch.no_grad():
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.abs_()
    net.zero_grad(set_to_none=True)
    with _training(net, False):
        x = torch.ones((1,) + tuple(input_shape[1:]), dtype=torch.float64)
        torch.sum(_logits(net, x)).backward()
    total = 0.0
    with torch.no_grad():
        for m in weighted_layers(net):
            if m.weight.grad is not None:
                total += float((m.weight * m.weight.grad).abs().sum())
    if math.isnan(total):
        raise ScoreError("synflow: NaN in float64")
    return _finite_log(total) if log else total


# --------------------------------------------------------------------------------------------------
# GradNorm and SNIP (one backward pass; NASWOT can ride on its forward pass)
# --------------------------------------------------------------------------------------------------
def gradient_scores(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, *,
                    loss_fn: Callable = F.cross_entropy, naswot: bool = False, seed: int = 0,
                    inplace: bool = False) -> dict[str, float]:
    """``{"gradnorm", "snip"}`` (and ``"naswot"`` from the same forward pass when asked) on one minibatch.

    ``targets`` default: labels drawn uniformly from ``seed`` over the logits' classes.
    """
    net = module if inplace else copy.deepcopy(module)
    net.zero_grad(set_to_none=True)
    out: dict[str, float] = {}
    with _training(net, True):
        if naswot:
            with _relu_kernel(net, inputs.shape[0]) as st:
                logits = _logits(net, inputs)
            out["naswot"] = naswot_logdet(st["K"])
        else:
            logits = _logits(net, inputs)
        if targets is None:
            targets = random_labels(inputs.shape[0], logits.shape[1], seed)
        loss = loss_fn(logits, targets)
        loss.backward()
    gn = sn = 0.0
    with torch.no_grad():
        for m in weighted_layers(net):
            g = m.weight.grad
            if g is None:
                continue
            gn += float(g.norm())
            sn += float((m.weight * g).abs().sum())
    out["gradnorm"], out["snip"] = gn, sn
    return out


def gradnorm_score(module, inputs, targets=None, **kw) -> float:
    return gradient_scores(module, inputs, targets, **kw)["gradnorm"]


def snip_score(module, inputs, targets=None, **kw) -> float:
    return gradient_scores(module, inputs, targets, **kw)["snip"]


# --------------------------------------------------------------------------------------------------
# Entropy on a module (MAE-DET, released-code style) and its exact DAG counterpart
# --------------------------------------------------------------------------------------------------
def _linear_gaussian_copy(module: nn.Module, relu: bool, inplace: bool) -> nn.Module:
    net = _without_bn(module if inplace else copy.deepcopy(module))
    if not relu:
        net = _without_relu(net)
    return net


def entropy_score(module: nn.Module, input_shape: Sequence[int], *, repeats: int = 1, seed: int = 0,
                  dtype=torch.float32, relu: bool = False, inplace: bool = False) -> float:
    """MAE-DET entropy of the pre-GAP features by forward hooks (see the module docstring).

    The RNG stream (per repeat: every conv weight in module order, then the input) is the one of
    :class:`maedet.networks.ScoringNet`, so a plain conv chain gives the ``forward`` estimator's value.
    """
    dt = _dtype(dtype)
    net = _linear_gaussian_copy(module, relu, inplace).to(dt)
    convs = [m for m in net.modules() if isinstance(m, _ConvNd)]
    acc = [0.0]

    def hook(m, inp, out):
        std = float(out.std())
        if std == 0:      # a dead branch (its input is identically zero): nothing to rescale or count
            return out
        if not math.isfinite(std):
            acc[0] = float("nan")
            return out
        acc[0] += math.log(std)
        return out / std

    gen = torch.Generator().manual_seed(int(seed))
    hooks = [m.register_forward_hook(hook) for m in convs]
    vals = []
    try:
        with _training(net, False), torch.no_grad():
            for _ in range(repeats):
                gaussian_init(net, gen, layers=(_ConvNd,))
                x = torch.randn(tuple(input_shape), generator=gen, dtype=torch.float32).to(dt)
                acc[0] = 0.0
                f = _features(net, x)
                # what follows the last conv (sums of branches, pools, zero ops) is in the features' own std;
                # 0 after a conv chain (its output was just rescaled to std 1)
                vals.append(math.log(f.shape[1]) + acc[0] + _finite_log(float(f.std())))
    finally:
        for h in hooks:
            h.remove()
    return float(np.mean(vals))


def entropy_exact_score(module: nn.Module, input_shape: Sequence[int], *, repeats: int = 1, seed: int = 0,
                        relu: bool = False, inplace: bool = False) -> float:
    """log(C_final) + log std of the pre-GAP features of the linear Gaussian network, float64, no rescaling."""
    net = _linear_gaussian_copy(module, relu, inplace).to(torch.float64)
    gen = torch.Generator().manual_seed(int(seed))
    vals = []
    with _training(net, False), torch.no_grad():
        for _ in range(repeats):
            gaussian_init(net, gen, layers=(_ConvNd,))
            x = torch.randn(tuple(input_shape), generator=gen, dtype=torch.float32).to(torch.float64)
            f = _features(net, x)
            std = float(f.std())
            if math.isinf(std):
                raise ScoreError("entropy-exact: the feature std overflows float64; use 'entropy'")
            vals.append(math.log(f.shape[1]) + _finite_log(std))
    return float(np.mean(vals))


# --------------------------------------------------------------------------------------------------
# One interface for any module
# --------------------------------------------------------------------------------------------------
def compute_many(names: Iterable[str], module: nn.Module, inputs: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None, *, input_shape: Sequence[int] | None = None,
                 seed: int = 0, dtype="float32", repeats: int = 1, share: bool = True,
                 timings: dict | None = None, inplace: bool = False) -> dict[str, float]:
    """Several proxies of ``module``; returns ``{name: value}``.

    ``inputs``/``targets``: the data batch of NASWOT, GradNorm and SNIP (default: N(0, 1) of ``input_shape``
    and uniform labels, both from ``seed``). ``input_shape`` (default: the shape of ``inputs``) is the input of
    Zen-NAS and the entropies (Gaussian by definition) and, batch set to 1, of SynFlow. ``repeats`` applies to
    Zen-NAS and the entropies. With ``share=True`` NASWOT, GradNorm and SNIP come from one forward/backward pass
    (same network, same batch: exactly the separate values). ``timings`` (a dict) receives wall seconds per
    proxy; a shared pass is split evenly among the proxies that share it. ``inplace=True`` lets the proxies
    modify ``module`` (saves the deep copies; the module is garbage afterwards).
    """
    names = list(names)
    unknown = [n for n in names if n not in MODULE_PROXIES]
    if unknown:
        raise ValueError(f"unknown proxy {unknown[0]!r}; known: {', '.join(MODULE_PROXIES)}")
    dt = _dtype(dtype)
    if input_shape is None:
        if inputs is None:
            raise ValueError("give inputs or input_shape")
        input_shape = tuple(inputs.shape)
    input_shape = tuple(int(v) for v in input_shape)
    if inputs is None and any(n in DATA_PROXIES for n in names):
        inputs = gaussian_inputs(input_shape, seed, dt)
    if inputs is not None:
        inputs = inputs.to(dt)
    if inplace:
        base = module.to(dt)
    else:
        p0 = next(iter(module.parameters()), None)
        base = module if p0 is None or p0.dtype == dt else copy.deepcopy(module).to(dt)
    # the last proxy to run may use the module itself when inplace (each one modifies its copy)
    out: dict[str, float] = {}
    timings = timings if timings is not None else {}

    def own(i_last: bool):
        return inplace and i_last

    grad_set = [n for n in names if n in DATA_PROXIES]
    order = [n for n in names if n not in DATA_PROXIES] + (["_grads"] if share and grad_set else grad_set)
    for i, n in enumerate(order):
        last = i == len(order) - 1
        t0 = time.perf_counter()
        if n == "_grads":
            need_grad = any(g in grad_set for g in ("gradnorm", "snip"))
            if need_grad:
                r = gradient_scores(base, inputs, targets, naswot="naswot" in grad_set, seed=seed, inplace=own(last))
            else:
                r = {"naswot": naswot_score(base, inputs, inplace=own(last))}
            dtm = (time.perf_counter() - t0) / len(grad_set)
            for g in grad_set:
                out[g] = r[g]
                timings[g] = dtm
            continue
        if n == "zen":
            v = zen_score(base, input_shape, repeats=repeats, seed=seed, dtype=dt, inplace=own(last))
        elif n == "naswot":
            v = naswot_score(base, inputs, inplace=own(last))
        elif n in ("gradnorm", "snip"):
            v = gradient_scores(base, inputs, targets, seed=seed, inplace=own(last))[n]
        elif n == "synflow":
            v = synflow_score(base, input_shape, inplace=own(last))
        elif n == "entropy":
            v = entropy_score(base, input_shape, repeats=repeats, seed=seed, dtype=dt, inplace=own(last))
        else:  # entropy-exact
            v = entropy_exact_score(base, input_shape, repeats=repeats, seed=seed, inplace=own(last))
        out[n] = float(v)
        timings[n] = time.perf_counter() - t0
    return {n: out[n] for n in names}


def compute(name: str, module: nn.Module, inputs: torch.Tensor | None = None, targets: torch.Tensor | None = None,
            **kw) -> float:
    """One proxy of any module (see :func:`compute_many` for the keyword arguments)."""
    return compute_many([name], module, inputs, targets, **kw)[name]


# --------------------------------------------------------------------------------------------------
# Our structures as networks for the proxies
# --------------------------------------------------------------------------------------------------
def _plain_body(structure: Structure) -> nn.Sequential:
    """The training network's main path with the shortcut path of every unit dropped (Zen-NAS's
    ``no_reslink``): conv-BN(-ReLU) per op, pools as they are, the post-addition ReLU kept."""
    mods: list[nn.Module] = []
    for blk in structure.blocks:
        for unit in blk.units(structure.shortcut):
            for op in unit.main:
                if isinstance(op, Conv):
                    mods.append(nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride, op.kernel // 2,
                                          groups=op.groups, bias=False))
                    mods.append(nn.BatchNorm2d(op.out_channels))
                    if op.relu:
                        mods.append(nn.ReLU(inplace=True))
                elif isinstance(op, SE):
                    from .networks import SqueezeExcite

                    mods.append(SqueezeExcite(op))
                elif op.kind == "max":
                    mods.append(nn.MaxPool2d(op.kernel, op.stride, op.kernel // 2))
                else:
                    mods.append(nn.AvgPool2d(op.kernel, op.stride, ceil_mode=True, count_include_pad=False))
            if unit.post_relu:
                mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)


class StructureNet(nn.Module):
    """A structure as a classifier for the proxies.

    ``shortcuts=True``: :class:`maedet.networks.Backbone` (residual links, BN, ReLU), Kaiming initialisation
    without zero-initialised residual BN. ``shortcuts=False``: the same main paths without any shortcut
    (Zen-NAS). ``forward_pre_gap`` returns C5 (the last stage); ``forward`` the logits of a linear head
    (``num_classes``) on globally average-pooled C5.
    """

    def __init__(self, structure: Structure, *, shortcuts: bool = True, num_classes: int = STRUCTURE_CLASSES):
        super().__init__()
        from .networks import Backbone

        self.structure = structure
        if shortcuts:
            self.body = Backbone(structure, out_indices=(structure.num_stages - 1,), zero_init_residual=False)
        else:
            self.body = _plain_body(structure)
            for m in self.body.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.head = nn.Linear(structure.stage_channels[-1], num_classes)

    def forward_pre_gap(self, x):
        return _last(self.body(x))

    def forward(self, x):
        return self.head(self.forward_pre_gap(x).mean(dim=(2, 3)))


def structure_net(structure: Structure, seed: int = 0, *, shortcuts: bool = True,
                  num_classes: int = STRUCTURE_CLASSES) -> StructureNet:
    """:class:`StructureNet` with its default initialisation drawn from ``seed`` (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return StructureNet(structure, shortcuts=shortcuts, num_classes=num_classes)


def _shape(structure: Structure, settings: ScoreSettings, batch: int | None = None) -> tuple:
    h, w = settings.resolution
    return (settings.batch_size if batch is None else batch, structure.in_channels, h, w)


def structure_proxy(name: str, structure: Structure, settings: ScoreSettings | None = None) -> float:
    """A proxy of a structure (what the registered estimators call)."""
    settings = settings or ScoreSettings()
    if name not in PROXIES:
        raise ScoreError(f"unknown proxy {name!r}; known: {', '.join(PROXIES)}")
    dt = _dtype(settings.dtype)
    shape = _shape(structure, settings)
    net = structure_net(structure, settings.seed, shortcuts=(name != "zen"))
    if name == "zen":
        return zen_score(net, shape, repeats=settings.repeats, seed=settings.seed, dtype=dt, inplace=True)
    if name == "synflow":
        return synflow_score(net, shape, inplace=True)
    net = net.to(dt)
    x = gaussian_inputs(shape, settings.seed, dt)
    if name == "naswot":
        return naswot_score(net, x, inplace=True)
    y = random_labels(shape[0], STRUCTURE_CLASSES, settings.seed)
    return gradient_scores(net, x, y, inplace=True)[name]


def _register(name: str):
    def fn(structure: Structure, settings: ScoreSettings) -> float:
        return structure_proxy(name, structure, settings)

    fn.__name__ = f"proxy_{name}"
    fn.__doc__ = f"The {name} zero-shot proxy of a structure (maedet.proxies)."
    register(name)(fn)


for _n in PROXIES:
    _register(_n)
del _n

"""The multi-scale entropy score Z(F) = sum_s alpha_s H(C_s) (Eq. 5), with named estimators of H(C_s).

``forward``      What the authors' released code computes (facts file, section 1). The scoring network is
                 the main path as a purely linear chain of bias-free convolutions with N(0,1) weights; the
                 input is N(0,1) of shape [batch, 3, R, R]. After every conv the output is divided by its
                 own standard deviation (over the whole tensor, unbiased) and the natural log of that std is
                 accumulated. H(C_s) = log(C_s) + sum of the log stds of every conv up to the end of stage
                 s, where C_s is the stage's channel count. Averaged over ``repeats`` draws.
``paper-text``   Eq. 2-5 as the paper writes them. ReLU after every conv (Eq. 2); every feature map is
                 rescaled by its Euclidean norm gamma (Eq. 4; we take the norm per image, i.e. the root of
                 the sum of squares divided by the batch size); H(C_s) = 1/2 log Var(h) of the last
                 pre-activation map of stage s plus the sum of log gamma before it, "multiplied by the size
                 of the feature map", which we read as its spatial size H_s x W_s.
``closed-form``  The authors' later code: every log std replaced by its fan-in value 1/2 log(fan_in)
                 (stem: 1/2 log(C_in k^2); bottleneck: 1/2 log(C_in btn^2 k^2); inverted bottleneck:
                 1/2 log(C_in k^2 btn), see below); no forward pass. Ignores zero padding, so it sits
                 slightly above ``forward``.
``expected``     The exact expectation of the ``forward`` estimator's per-conv variance, zero padding
                 included. For a zero-mean Gaussian linear network, E[y_p^2] = C_in/groups * sum over the
                 k x k window of E[x_q^2]: the second moment can be propagated per spatial position without
                 any channels. Starting from a constant map it stays an outer product of two 1-D profiles
                 (height x width), so each conv costs two 1-D box sums. It tracks ``forward`` at every
                 resolution at the cost of ``closed-form`` (max-pooling is approximated by the window max of
                 the second moments; only the ResNet references have one).
``random``       A deterministic pseudo-random number per structure and seed: the score of random search.

Inverted bottlenecks (``mbv2``). A depthwise conv computes y_{c,p} = sum over the k x k window of
w_{c,q} x_{c,p+q}: one input channel per output channel, so its fan-in is k^2 (``Conv.fan_in`` =
C_in / groups x k^2), and with independent zero-mean weights of unit variance E[y_{c,p}^2] = sum over the
window of E[x_{c,p+q}^2], the same box sum as a dense conv with C_in / groups = 1. All channels of a map have
the same expected second moment (they are exchangeable under the weight draw), so the per-position
propagation of ``expected`` applies unchanged, and the unit contributes 1/2 log(C_in) (expansion, 1x1),
1/2 log(k^2) + padding term (depthwise) and 1/2 log(btn) (projection, 1x1); without expansion conv
(expansion ratio 1) the first term is absent. This is also what the released ``ResK1DWSEK1`` block's
closed form adds up (log sqrt(C_in) + log sqrt(k^2) + log sqrt(btn)). SE layers are removed from the
scoring network (see :mod:`maedet.networks`) and add nothing to any estimator. The depthwise conv draws only
k^2 weights per channel, so its measured std fluctuates more than a dense conv's; the spread is averaged
over btn channels and stays far below the seed-to-seed noise of the score (tests: forward vs expected
within 0.1% on MobileNetV2-0.5/1.0).

All estimators are invariant to the batch size except through sampling noise (``forward``,
``paper-text``). A non-finite value raises :class:`ScoreError`.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .structure import SE, Conv, Pool, Structure

DETECTION_ALPHA = (0.0, 0.0, 1.0, 1.0, 6.0)      # the paper's multi-scale prior, C1..C5
SINGLE_SCALE_ALPHA = (0.0, 0.0, 0.0, 0.0, 1.0)   # classification: the last stage only


class ScoreError(ValueError):
    """The score could not be computed (non-finite value, bad alpha, bad settings)."""


# Bounds on the score settings, far above what any estimator needs (the released code scores at batch 32,
# 480x480, 4 repeats), so that a mistyped value is rejected instead of exhausting memory or time.
MAX_BATCH, MAX_REPEATS, MAX_SIDE = 1024, 100, 4096
MAX_FORWARD_PIXELS = 32 * 512 * 512   # batch x height x width of one forward pass


@dataclass(frozen=True)
class ScoreSettings:
    resolution: tuple = (384, 384)   # (height, width)
    batch_size: int = 32
    repeats: int = 4
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self):
        from .flops import parse_resolution

        object.__setattr__(self, "resolution", parse_resolution(self.resolution))
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ScoreError(f"batch_size must be between 1 and {MAX_BATCH}, got {self.batch_size}")
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise ScoreError(f"repeats must be between 1 and {MAX_REPEATS}, got {self.repeats}")
        if max(self.resolution) > MAX_SIDE:
            raise ScoreError(f"resolution {self.resolution[1]}x{self.resolution[0]}: a side is larger than "
                             f"the limit of {MAX_SIDE}")
        if self.dtype not in ("float32", "float64"):
            raise ScoreError(f"dtype must be float32 or float64, got {self.dtype!r}")


@dataclass
class ScoreResult:
    estimator: str
    score: float
    stage_scores: list | None          # H(C_s) for every stage (None for scalar proxies)
    alpha: list | None
    settings: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"estimator": self.estimator, "score": self.score, "stage_scores": self.stage_scores,
                "alpha": self.alpha, "settings": self.settings}


# An estimator maps (structure, settings) to per-stage values H(C_s) (a list, multi-scale) or to one
# number (a scalar proxy, to which alpha does not apply).
Estimator = Callable[[Structure, ScoreSettings], "list[float] | float"]
ESTIMATORS: dict[str, Estimator] = {}
# estimators that need no forward pass and no torch (safe in a fast search loop)
ANALYTIC = {"closed-form", "expected", "random"}
# estimators that give one value per stage (combined with alpha)
MULTI_SCALE = {"forward", "paper-text", "closed-form", "expected"}


def register(name: str):
    def deco(fn):
        ESTIMATORS[name] = fn
        return fn

    return deco


def parse_alpha(text: str | Sequence[float] | None) -> tuple | None:
    if text is None:
        return None
    if isinstance(text, str):
        try:
            vals = tuple(float(v) for v in text.replace(":", ",").split(",") if v.strip())
        except ValueError:
            raise ScoreError(f"alpha {text!r}: expected comma-separated numbers, e.g. 0,0,1,1,6") from None
    else:
        vals = tuple(float(v) for v in text)
    if not vals or not all(math.isfinite(v) for v in vals):
        raise ScoreError(f"alpha {text!r}: expected finite numbers")
    return vals


def combine(stage_scores: Sequence[float], alpha: Sequence[float]) -> float:
    if len(alpha) != len(stage_scores):
        raise ScoreError(
            f"alpha has {len(alpha)} weights but the structure has {len(stage_scores)} stages "
            f"(one weight per stage C1..C{len(stage_scores)})"
        )
    return float(sum(a * h for a, h in zip(alpha, stage_scores)))


def score(structure: Structure, estimator: str = "forward", alpha: Sequence[float] | None = DETECTION_ALPHA,
          settings: ScoreSettings | None = None) -> ScoreResult:
    """Z(F) of a structure under one estimator. ``alpha`` needs one weight per stage."""
    settings = settings or ScoreSettings()
    if estimator not in ESTIMATORS:
        _load_plugins()
    if estimator not in ESTIMATORS:
        raise ScoreError(f"unknown estimator {estimator!r}; known: {', '.join(sorted(ESTIMATORS))}")
    alpha = parse_alpha(alpha)
    if estimator in MULTI_SCALE:  # check before any expensive forward pass
        if alpha is None:
            raise ScoreError(f"estimator {estimator!r} is multi-scale: give alpha (one weight per stage)")
        combine([0.0] * structure.num_stages, alpha)
    out = ESTIMATORS[estimator](structure, settings)
    if isinstance(out, (list, tuple, np.ndarray)):
        stages = [float(v) for v in out]
        if alpha is None:
            raise ScoreError(f"estimator {estimator!r} is multi-scale: give alpha (one weight per stage)")
        total = combine(stages, alpha)
    else:
        stages, total, alpha = None, float(out), None
    bad = [i for i, v in enumerate(stages or []) if not math.isfinite(v)]
    if bad or not math.isfinite(total):
        where = f" (stages {', '.join(f'C{i + 1}' for i in bad)})" if bad else ""
        raise ScoreError(f"estimator {estimator!r} gave a non-finite score{where} for {structure.name or 'structure'}")
    return ScoreResult(estimator, total, stages, list(alpha) if alpha is not None else None,
                       {"resolution": list(settings.resolution), "batch_size": settings.batch_size,
                        "repeats": settings.repeats, "dtype": settings.dtype, "seed": settings.seed})


def _load_plugins():
    """Estimators defined in other modules (the zero-shot proxies) register on import."""
    try:
        from . import proxies  # noqa: F401
    except ImportError:
        pass


# --------------------------------------------------------------------------------------------------
# closed-form: the fan-in formula
# --------------------------------------------------------------------------------------------------
def _unit_groups(structure: Structure):
    """(stage, unit, multiplicity) with the identical repeated units of a block collapsed."""
    for blk, st in zip(structure.blocks, structure.stage_of_block):
        for unit, mult in blk.unit_groups(structure.shortcut):
            yield st, unit, mult


@register("closed-form")
def closed_form(structure: Structure, settings: ScoreSettings) -> list[float]:
    acc = 0.0
    stage_vals = [0.0] * structure.num_stages
    for st, unit, mult in _unit_groups(structure):
        acc += mult * sum(0.5 * math.log(op.fan_in) for op in unit.main if isinstance(op, Conv))
        stage_vals[st] = acc
    return [math.log(c) + v for c, v in zip(structure.stage_channels, stage_vals)]


# --------------------------------------------------------------------------------------------------
# expected: second moments propagated per position (separable 1-D profiles), padding included
# --------------------------------------------------------------------------------------------------
class _Profiles:
    """Cache of 1-D second-moment profiles: state id -> vector; (state, op) -> (state', log factor)."""

    def __init__(self):
        self.vectors: list[np.ndarray] = []
        self.means: list[float] = []
        self.index: dict[int, int] = {}          # length -> state id of the constant profile
        self.trans: dict[tuple, tuple] = {}

    def start(self, n: int) -> int:
        if n not in self.index:
            self.index[n] = self._add(np.ones(n))
        return self.index[n]

    def step(self, state: int, kind: str, k: int, s: int) -> tuple[int, float]:
        key = (state, kind, k, s)
        hit = self.trans.get(key)
        if hit is not None:
            return hit
        v = self.vectors[state]
        pad = k // 2
        n_out = (len(v) + 2 * pad - k) // s + 1
        padded = np.concatenate([np.zeros(pad), v, np.zeros(pad + k)])
        starts = np.arange(n_out) * s
        if kind == "conv":
            c = np.concatenate([[0.0], np.cumsum(padded)])
            out = c[starts + k] - c[starts]            # box sum over the window
            mean = out.mean()
            res = (self._add(out / mean), math.log(mean / k))  # 1-D factor of E[y^2] / (C_in k^2)
        elif kind == "max":
            win = np.stack([padded[starts + j] for j in range(k)])
            out = win.max(axis=0)
            res = (self._add(out), 0.0)
        else:  # avg pool, kernel = stride, ceil mode, padding not counted
            n_out = -(-len(v) // s)
            out = np.array([v[i * s:(i + 1) * s].mean() for i in range(n_out)])
            res = (self._add(out), 0.0)
        if len(self.trans) > 500_000:  # bound memory in very long searches
            self.trans.clear()
        self.trans[key] = res
        return res

    def _add(self, v: np.ndarray) -> int:
        self.vectors.append(v)
        self.means.append(float(v.mean()))
        return len(self.vectors) - 1

    def mean(self, state: int) -> float:
        return self.means[state]


_PROFILES = _Profiles()


@register("expected")
def expected(structure: Structure, settings: ScoreSettings) -> list[float]:
    h, w = settings.resolution
    sa, sb = _PROFILES.start(h), _PROFILES.start(w)
    # profiles are kept at mean 1, except after a pool, whose mean scales the next conv's variance
    acc = 0.0
    stage_vals = [0.0] * structure.num_stages
    for st, unit, mult in _unit_groups(structure):
        for _ in range(mult):  # the profile changes with every repetition
            for op in unit.main:
                if isinstance(op, SE):  # removed while scoring
                    continue
                if not isinstance(op, Conv):
                    sa, _ = _PROFILES.step(sa, op.kind, op.kernel, op.stride)
                    sb, _ = _PROFILES.step(sb, op.kind, op.kernel, op.stride)
                elif op.kernel == 1 and op.stride == 1:
                    pre = _PROFILES.mean(sa) * _PROFILES.mean(sb)
                    acc += 0.5 * math.log(op.fan_in * pre)
                    if pre != 1.0:  # renormalise after a pool
                        sa, sb = _renorm(sa), _renorm(sb)
                else:
                    sa, fa = _PROFILES.step(sa, "conv", op.kernel, op.stride)
                    sb, fb = _PROFILES.step(sb, "conv", op.kernel, op.stride)
                    # E[y^2] averaged over positions = fan_in * mean(box sum of a)/k * mean(box sum of b)/k
                    acc += 0.5 * (math.log(op.fan_in) + fa + fb)
        stage_vals[st] = acc
    return [math.log(c) + v for c, v in zip(structure.stage_channels, stage_vals)]


def _renorm(state: int) -> int:
    key = (state, "renorm", 0, 0)
    hit = _PROFILES.trans.get(key)
    if hit is None:
        v = _PROFILES.vectors[state]
        hit = (_PROFILES._add(v / v.mean()), 0.0)
        _PROFILES.trans[key] = hit
    return hit[0]


# --------------------------------------------------------------------------------------------------
# forward (the released code) and paper-text: real forward passes through the scoring network
# --------------------------------------------------------------------------------------------------
def _forward_passes(structure: Structure, settings: ScoreSettings, on_op_factory) -> list[float]:
    import torch

    from .networks import ScoringNet

    dtype = torch.float64 if settings.dtype == "float64" else torch.float32
    h, w = settings.resolution
    if settings.batch_size * h * w > MAX_FORWARD_PIXELS:
        raise ScoreError(f"batch_size x resolution = {settings.batch_size} x {h}x{w} is more than the forward "
                         f"estimators' limit of {MAX_FORWARD_PIXELS:,} input pixels (the released code uses 32 x "
                         f"480x480); lower --batch-size or --resolution")
    with torch.no_grad():
        net = ScoringNet(structure).to(dtype)
        gen = torch.Generator().manual_seed(int(settings.seed))
        totals = np.zeros(structure.num_stages)
        for _ in range(settings.repeats):
            net.reinit(gen)
            x = torch.randn((settings.batch_size, structure.in_channels, h, w), generator=gen).to(dtype)
            stage_vals, on_op = on_op_factory(structure, settings)
            net(x, on_op)
            totals += np.asarray(stage_vals)
    return list(totals / settings.repeats)


def _check(v: float, what: str, op) -> float:
    if not math.isfinite(v):
        raise ScoreError(f"non-finite {what} after {op}")
    return v


@register("forward")
def forward(structure: Structure, settings: ScoreSettings) -> list[float]:
    channels = structure.stage_channels

    def factory(structure, settings):
        vals = [0.0] * structure.num_stages
        acc = [0.0]

        def on_op(op, x, stage):
            if isinstance(op, Conv):
                std = float(x.std())
                acc[0] += _check(math.log(std) if std > 0 else float("-inf"), "log std", op)
                x = x / std
            if stage is not None:
                vals[stage] = math.log(channels[stage]) + acc[0]
            return x

        return vals, on_op

    return _forward_passes(structure, settings, factory)


@register("paper-text")
def paper_text(structure: Structure, settings: ScoreSettings) -> list[float]:
    import torch

    from .flops import conv_out

    # spatial size of every stage's feature map at this resolution
    h, w = settings.resolution
    sizes = []
    for blk in structure.blocks:
        for unit in blk.units(structure.shortcut):
            for op in unit.main:
                if isinstance(op, SE):  # keeps the shape
                    continue
                if isinstance(op, Conv) or op.kind == "max":
                    h, w = conv_out(h, op.kernel, op.stride), conv_out(w, op.kernel, op.stride)
                else:
                    h, w = -(-h // op.stride), -(-w // op.stride)
        sizes.append(h * w)
    stage_size = [sizes[i] for i in structure.stage_ends]

    def factory(structure, settings):
        vals = [0.0] * structure.num_stages
        log_gamma = [0.0]
        b = settings.batch_size

        def on_op(op, x, stage):
            if stage is not None:  # Eq. 4 on the last pre-activation map of the stage, x feature size
                var = float(x.var())
                h_s = 0.5 * _check(math.log(var) if var > 0 else float("-inf"), "log variance", op) + log_gamma[0]
                vals[stage] = stage_size[stage] * h_s
            if isinstance(op, Conv):
                x = torch.relu(x)
                gamma = float(torch.sqrt((x * x).sum() / b))
                log_gamma[0] += _check(math.log(gamma) if gamma > 0 else float("-inf"), "log gamma", op)
                x = x / gamma
            return x

        return vals, on_op

    return _forward_passes(structure, settings, factory)


@register("random")
def random_score(structure: Structure, settings: ScoreSettings) -> float:
    h = hashlib.sha256(f"{settings.seed}:{structure.key()}".encode()).digest()
    return int.from_bytes(h[:8], "little") / 2**64

"""Thin wrappers around mmdetection: a detector config from (backbone, head, dataset, profile), training
with resume, COCO evaluation, inference speed and one ``results.json``; plus a small classification trainer
(the "ImageNet top-1" column at reduced scale and the pretrained init of Table 7).

Every backbone, the ResNet references included, goes through :class:`maedet.mmdet_backbone.MAEDetBackbone`
(same code, same initialisation) inside mmdet's own bundled detector configs, so comparisons are fair.
What is swapped in the bundled config (everything else keeps mmdet's defaults, as the paper did):

* backbone -> ``MAEDetBackbone`` (from scratch: BN trained, no frozen stage, ``norm_eval=False``);
  FPN detectors (FCOS, RetinaNet, GFL) read C3-C5 (``out_indices=(2, 3, 4)``, FPN ``start_level=0``, P6-P7
  added by the FPN exactly as in the bundled configs); Mask R-CNN and SCNet read C2-C5; YOLOF reads C5 only.
  SCNet (Table 5's transfer row; the ``paper`` profile) is mmdet's bundled SCNet without its semantic branch,
  which needs COCO-stuff segmentation maps;
* data preprocessing -> torchvision-style RGB mean/std (the caffe-style FCOS/YOLOF configs assume caffe
  pretrained weights);
* neck / head widths -> ``neck_channels`` (YOLOF's encoder, 512 wide at 256 elsewhere, gets twice that;
  GroupNorm heads (FCOS, GFL) get at most 32 groups of >= 4 channels);
* data, schedule and optimiser -> the profile (the paper: SGD, momentum 0.9, weight decay 1e-4, x0.1 decays
  at 28/36 and 33/36 of training, multi-scale training); each config's ``paramwise_cfg`` is kept.

Profile fields (a dict; missing ones take :data:`DEFAULT_PROFILE`; ``params.yaml`` holds named profiles):

``img_scale``         (w, h) the images are resized to, keeping the aspect ratio (train scale before jitter,
                      and the test scale); also the resolution FLOPs are reported at
``multiscale``        (lo, hi) ratio range of random rescaling during training (paper 3x: (0.8, 1.0),
                      6x: (0.6, 1.2)); (1, 1) disables it
``flip``              horizontal-flip probability (default 0: digits are not mirror-invariant; mmdet's
                      COCO configs use 0.5)
``batch_size``        training images per iteration (the paper: 16)
``val_batch_size``    images per evaluation batch
``epochs``            training epochs; LR decays x0.1 at round(28/36 E) and round(33/36 E) (the paper's 3x)
``lr``                SGD learning rate (paper: 0.02 at batch 16); ``momentum``, ``weight_decay`` likewise
``warmup_iters``      linear warm-up iterations (from lr x 0.001)
``grad_clip``         max gradient norm (mmdet's FCOS default 35; ``None``: no clipping)
``width_multiplier``  uniform backbone channel scaling (:func:`maedet.mmdet_backbone.scale_width`)
``neck_channels``     FPN / head width (the paper: 256; 192 for MAE-DET-S)
``norm``              backbone norm layer type: ``BN`` (single process), ``SyncBN`` (the paper, multi-GPU)
``num_workers``       data-loading worker processes (0: in the training process)
``threads``           torch threads of the training process
``val_interval``      evaluate every that many epochs during training (0: only after the last epoch); every
                      evaluation is kept in ``results.json`` as ``val_history`` (the learning curve). Costs one
                      val pass per evaluation (the default profile of params.yaml: every 4 epochs)
``head_variant``      ``default``: the bundled head config as is; ``improved`` (FCOS only): mmdet's improved FCOS
                      (``fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou``: norm_on_bbox,
                      centerness_on_reg, center_sampling, conv_bias, GIoU loss, NMS IoU 0.6)
``backbone_lr_mult``  learning-rate multiplier of the backbone's parameters (``None``: the bundled
                      ``paramwise_cfg`` decides; YOLOF's trains the backbone at 1/3 the rate)
``max_keep_ckpts``    epoch checkpoints kept in ``work_dir`` (one per epoch is written, for resuming)
``log_interval``      iterations between loss logs (``work_dir/*/vis_data/scalars.json``)
``log_level``         console/log-file level of mmengine (``WARNING`` keeps runs quiet)
``rcnn_rois``         Mask R-CNN: RoIs sampled per training image for the box/mask heads (mmdet's default
                      512; 128 at reduced scale, where images hold ~5 objects: 3x faster, as CPU RoIAlign
                      dominates; ``None``: mmdet's default)
``speed_images``      images timed for the inference speed (batch 1, after 3 warm-up images; 0: skip)

Fields added after runs were recorded (``OPTIONAL_PROFILE``; a run's ledger digest holds one only when its
profile sets it, so the runs recorded before it keep their digests):

``anchor_base_scale``  RetinaNet only: the anchor generator's ``octave_base_scale`` (``None``: mmdet's 4, i.e.
                      the smallest anchor is 4 x stride 8 = 32 px, sized for 800-px COCO images; 2 gives 16 px)
``head_norm``         RetinaNet only: ``GN`` puts GroupNorm in its classification and box towers (``None``: the
                      bundled head, without norm layers; FCOS and GFL have GN towers in their bundled configs)
"""
from __future__ import annotations

import copy
import json
import os
import statistics
import time
from pathlib import Path

HEADS = {
    "fcos": "mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    "retinanet": "mmdet::retinanet/retinanet_r50_fpn_1x_coco.py",
    "gfl": "mmdet::gfl/gfl_r50_fpn_1x_coco.py",
    "yolof": "mmdet::yolof/yolof_r50-c5_8xb8-1x_coco.py",
    "mask_rcnn": "mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
    "scnet": "mmdet::scnet/scnet_r50_fpn_1x_coco.py",
    "ssdlite": "mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py",
}
MASK_HEADS = ("mask_rcnn", "scnet")
# stages each detector reads (0-based: 0 = C1 ... 4 = C5)
OUT_INDICES = {"fcos": (2, 3, 4), "retinanet": (2, 3, 4), "gfl": (2, 3, 4), "yolof": (4,), "mask_rcnn": (1, 2, 3, 4),
               "scnet": (1, 2, 3, 4), "ssdlite": (3, 4)}
SSDLITE_SIZE = 320  # the input size SSDLite's bundled anchors are laid out for

DEFAULT_PROFILE = dict(
    img_scale=(192, 192), multiscale=(0.8, 1.0), flip=0.0, batch_size=8, val_batch_size=8, epochs=12,
    lr=0.01, momentum=0.9, weight_decay=1e-4, warmup_iters=100, grad_clip=35.0,
    width_multiplier=0.125, neck_channels=32, norm="BN", num_workers=0, threads=2, val_interval=0,
    max_keep_ckpts=1, log_interval=50, log_level="WARNING", speed_images=20, rcnn_rois=128,
    head_variant="default", backbone_lr_mult=None,
)
OPTIONAL_PROFILE = dict(anchor_base_scale=None, head_norm=None)
HEAD_NORMS = (None, "GN")
HEAD_VARIANTS = ("default", "improved")

# Bump when a change to this package alters what a training run computes for the same settings: it is part of
# the ledger's config digest (maedet.ledger), so recorded runs of the old code are then retrained.
TRAINING_REVISION = 1

def head_profile(profile: dict | None, head: str) -> dict:
    """The profile one head trains with: ``profile`` without its ``heads`` table, updated by
    ``profile["heads"][head]`` (params.yaml keeps per-head adaptations there, e.g. FCOS's improved variant).
    Runs store this resolved dict, so a change to one head's entry leaves the other heads' runs untouched."""
    p = dict(profile or {})
    p.pop("datasets", None)  # per-dataset adaptations: applied by dataset_profile (experiments.detect_run)
    per_head = p.pop("heads", None) or {}
    if not isinstance(per_head, dict):
        raise ValueError(f"profile field 'heads' must map head names to profile fields, got {per_head!r}")
    unknown = set(per_head) - set(HEADS)
    if unknown:
        raise ValueError(f"profile 'heads' names unknown head(s): {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(HEADS)})")
    p.update(per_head.get(head) or {})
    return p


def dataset_profile(profile: dict | None, dataset: str) -> dict:
    """``profile`` adapted to a detection dataset: ``profile["datasets"][dataset]`` (params.yaml keeps what a
    practitioner changes for another data set there, e.g. the tree-crown tiles' input size and schedule)
    updates it, and the ``datasets`` table is dropped. A dataset without an entry trains the profile as it is,
    so the digits runs' profiles (and their ledger digests) do not depend on the table."""
    p = dict(profile or {})
    per = p.pop("datasets", None) or {}
    if not isinstance(per, dict) or not all(isinstance(v, dict) or v is None for v in per.values()):
        raise ValueError(f"profile field 'datasets' must map dataset names to profile fields, got {per!r}")
    heads_entry = (per.get(dataset) or {}).get("heads")
    if heads_entry is not None:
        raise ValueError("a 'datasets' entry cannot hold a 'heads' table (put per-head fields under 'heads')")
    p.update(per.get(dataset) or {})
    return p


PYTORCH_MEAN = [123.675, 116.28, 103.53]  # RGB, what classify() and the detectors normalise with
PYTORCH_STD = [58.395, 57.12, 57.375]

METRIC_KEYS = {"bbox_mAP": "AP", "bbox_mAP_50": "AP50", "bbox_mAP_75": "AP75", "bbox_mAP_s": "AP_S",
               "bbox_mAP_m": "AP_M", "bbox_mAP_l": "AP_L", "segm_mAP": "mask_AP", "segm_mAP_50": "mask_AP50",
               "segm_mAP_75": "mask_AP75", "segm_mAP_s": "mask_AP_S", "segm_mAP_m": "mask_AP_M",
               "segm_mAP_l": "mask_AP_L"}


# --------------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------------
def _torch_load_compat():
    """mmengine 0.10 calls ``torch.load`` without ``weights_only``; torch >= 2.6 defaults it to True, which
    rejects mmengine's own checkpoints (message hub, numpy scalars) when resuming."""
    if not os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD"):
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"


def _ensure_registered():
    """Register mmdet's modules (default scope ``mmdet``) and ``MAEDetBackbone``; the latter also flushes
    denormal floats to zero (10x CPU slow-downs early in scratch training otherwise)."""
    _torch_load_compat()
    import maedet.mmdet_backbone  # noqa: F401  (registers MAEDetBackbone, torch.set_flush_denormal(True))
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


def bundled_config(name: str) -> str:
    """Path of a config bundled with the installed mmdet (``mmdet::x/y.py`` or ``x/y.py``)."""
    import mmdet

    rel = name.split("::", 1)[-1]
    path = Path(mmdet.__file__).parent / ".mim" / "configs" / rel
    if not path.exists():
        raise FileNotFoundError(f"mmdet has no bundled config {rel}")
    return str(path)


def dataset_dir(data_root: str | Path, dataset: str | None) -> Path:
    """``data_root/dataset`` (the layout of ``maedet data``), or ``data_root`` itself when it already holds
    ``annotations/train.json``."""
    root = Path(data_root)
    if (root / "annotations" / "train.json").exists() or not dataset:
        return root
    return root / dataset


def coco_classes(ann_file: str | Path) -> tuple[str, ...]:
    """Category names of a COCO annotation file, in category-id order (mmdet's label order)."""
    cats = json.loads(Path(ann_file).read_text())["categories"]
    return tuple(c["name"] for c in sorted(cats, key=lambda c: c["id"]))


def _gn_groups(c: int) -> int:
    """At most 32 GroupNorm groups of at least 4 channels (mmdet's 32 groups at width 256)."""
    g = max(1, min(32, c // 4))
    while c % g:
        g -= 1
    return g


def _zoo_name(s) -> str | None:
    from . import zoo

    for name in zoo.names():
        if zoo.get(name).key() == s.key():
            return name
    return None


def milestones(epochs: int) -> list[int]:
    """The paper's 3x decay points (28 and 33 of 36 epochs) scaled to ``epochs``."""
    e = int(epochs)
    return sorted({max(1, round(e * 28 / 36)), max(1, round(e * 33 / 36))})


# --------------------------------------------------------------------------------------------------
# backbones of other families (Table 3): SpineNet and DetNAS as backbone *specs*
# --------------------------------------------------------------------------------------------------
# A spec is a JSON dict naming a backbone that is not a structure of this project: ``{"type": "SpineNet",
# "arch": "96"}`` (maedet.spinenet) or ``{"type": "DetNASBackbone", "arch": "3.8G", "path": [...]}``
# (maedet.detnas; ``path`` a list of choices or a published path's name), both with an optional ``width_scale``
# (a factor on the profile's width_multiplier for that backbone alone, e.g. to match another backbone's FLOPs;
# stored only when not 1). :func:`backbone_spec` gives its canonical form (what a Run stores, so its ledger
# digest is stable); the names of FOREIGN_BACKBONES are shortcuts for the published networks. A zoo name or an
# existing structure file always means the structure.
FOREIGN_TYPES = ("SpineNet", "DetNASBackbone")
FOREIGN_HEADS = ("gfl", "fcos", "retinanet")  # the heads a spec backbone trains with: 5 levels P3-P7
SPEC_KEYS = {"SpineNet": ("type", "arch", "width_scale"),
             "DetNASBackbone": ("type", "arch", "path", "width_scale")}
FOREIGN_MODULES = {"SpineNet": "maedet.spinenet", "DetNASBackbone": "maedet.detnas"}
FOREIGN_BACKBONES = {
    **{f"spinenet-{a.lower()}": {"type": "SpineNet", "arch": a} for a in ("49S", "49", "96", "143", "190")},
    "detnas-300m": {"type": "DetNASBackbone", "arch": "300M", "path": "DetNAS-COCO-FPN-300M"},
    "detnas-retinanet-300m": {"type": "DetNASBackbone", "arch": "300M", "path": "DetNAS-COCO-RetinaNet-300M"},
    "detnas-1.3g": {"type": "DetNASBackbone", "arch": "1.3G", "path": "DetNAS-COCO-FPN-1.3G"},
    "detnas-3.8g": {"type": "DetNASBackbone", "arch": "3.8G", "path": "DetNAS-COCO-FPN-3.8G"},
}


def is_foreign(backbone) -> bool:
    """Whether ``backbone`` is meant as a spec (not a structure): a dict with ``type`` and no ``blocks`` /
    ``structure``, or a string that is neither a zoo name nor an existing file and starts with ``spinenet``
    or ``detnas``. Cheap (imports no torch); :func:`backbone_spec` validates."""
    if isinstance(backbone, dict):
        return "type" in backbone and "blocks" not in backbone and "structure" not in backbone
    if isinstance(backbone, str):
        from . import zoo

        if backbone in zoo.names() or Path(backbone).exists():
            return False
        return backbone.strip().lower().startswith(("spinenet", "detnas"))
    return False


def _positive(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v) > 0 or float(v) == float("inf"):
        raise ValueError(f"{what} must be a positive number, got {v!r}")
    return float(v)


def backbone_spec(backbone) -> dict:
    """The canonical, JSON-normalised spec of a SpineNet / DetNAS backbone: a name of
    :data:`FOREIGN_BACKBONES` or a spec dict. SpineNet: ``{"type", "arch"}`` with the arch as
    :data:`maedet.spinenet.SCALING_MAP` keys it; DetNAS: ``{"type", "arch", "path"}`` with the arch as
    :data:`maedet.detnas.SEARCH_SPACES` keys it (or a custom ``{"stage_blocks", "widths"}``) and the path as
    a list of choice indices; ``width_scale`` kept only when not 1. Raises ``ValueError`` naming the
    problem (unknown name, type, key or arch; a missing or invalid path; a bad width_scale)."""
    if isinstance(backbone, str):
        key = backbone.strip().lower()
        if key not in FOREIGN_BACKBONES:
            from . import zoo

            raise ValueError(f"unknown backbone {backbone!r}: neither a zoo structure ({', '.join(zoo.names())}), "
                             f"a structure file, nor a spec name ({', '.join(FOREIGN_BACKBONES)})")
        backbone = FOREIGN_BACKBONES[key]
    if not isinstance(backbone, dict):
        raise ValueError(f"a backbone spec is a dict or a name ({', '.join(FOREIGN_BACKBONES)}), got "
                         f"{type(backbone).__name__}")
    t = backbone.get("type")
    if t not in FOREIGN_TYPES:
        raise ValueError(f"unknown backbone spec type {t!r}: one of {', '.join(FOREIGN_TYPES)} (a structure dict "
                         f"has 'blocks')")
    unknown = set(backbone) - set(SPEC_KEYS[t])
    if unknown:
        raise ValueError(f"unknown {t} spec key(s) {', '.join(sorted(map(str, unknown)))} "
                         f"(known: {', '.join(SPEC_KEYS[t])})")
    if backbone.get("arch") is None:
        raise ValueError(f"a {t} spec needs an 'arch'")
    ws = _positive(backbone.get("width_scale", 1.0), f"{t} spec width_scale")
    if t == "SpineNet":
        from .spinenet import resolve_arch

        if not isinstance(backbone["arch"], str):
            raise ValueError(f"SpineNet spec arch must be a name, got {backbone['arch']!r}")
        out = {"type": t, "arch": resolve_arch(backbone["arch"])}
    else:
        from . import detnas

        arch = backbone["arch"]
        if not isinstance(arch, (str, dict)):
            raise ValueError(f"DetNAS spec arch must be a name ({', '.join(detnas.SEARCH_SPACES)}) or a dict, "
                             f"got {arch!r}")
        space = detnas.search_space(arch)
        if isinstance(arch, str):
            arch = next(k for k, v in detnas.SEARCH_SPACES.items() if v is space)
        else:
            arch = {"stage_blocks": list(space.stage_blocks), "widths": list(space.widths)}
        path = backbone.get("path")
        if path is None:
            raise ValueError(f"a DetNASBackbone spec needs a 'path': a list of {space.num_blocks} choices or a "
                             f"published path ({', '.join(detnas.PUBLISHED_PATHS)}); or use a spec name "
                             f"({', '.join(k for k in FOREIGN_BACKBONES if k.startswith('detnas'))})")
        if isinstance(path, str):
            if path not in detnas.PUBLISHED_PATHS:
                raise ValueError(f"unknown DetNAS path name {path!r} (published: {', '.join(detnas.PUBLISHED_PATHS)})")
            path = detnas.PUBLISHED_PATHS[path][1]
        out = {"type": t, "arch": arch, "path": list(detnas.validate_path(path, space))}
    if ws != 1.0:
        out["width_scale"] = ws
    return json.loads(json.dumps(out))


def foreign_spec(backbone) -> dict | None:
    """:func:`backbone_spec` of ``backbone`` when it is meant as a spec (:func:`is_foreign`), else None (a
    structure: zoo name, structure file, structure dict or Structure)."""
    return backbone_spec(backbone) if is_foreign(backbone) else None


def spec_label(spec: dict) -> str:
    """A short name of a spec: its :data:`FOREIGN_BACKBONES` name when it is one (``spinenet-96``,
    ``detnas-3.8g``), else the family, arch and a digest of the path; ``-ws<f>`` for a width_scale."""
    spec = backbone_spec(spec)
    ws = spec.pop("width_scale", 1.0)
    name = next((k for k, v in FOREIGN_BACKBONES.items() if backbone_spec(v) == spec), None)
    if name is None:
        import hashlib

        arch = spec["arch"] if isinstance(spec["arch"], str) else "custom"
        name = f"{spec['type'].lower()}-{arch.lower()}"
        if "path" in spec:
            name += "-" + hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return name if ws == 1.0 else f"{name}-ws{ws:g}"


def foreign_backbone_cfg(spec, width_multiplier: float, neck_channels: int, norm: str = "BN") -> tuple:
    """``(backbone config, FPN in_channels or None, output strides)`` of a spec at a profile's width and
    neck width. SpineNet: the filter-size scale x width (and its stem; :class:`maedet.spinenet.SpineNet`'s
    ``width_multiplier``), endpoints of ``neck_channels`` (its P3-P7 feed the head: no neck, so
    in_channels None). DetNAS: the channel table x width (:func:`maedet.detnas.scale_space`: multiples of 4),
    C3-C5 (``out_indices=(1, 2, 3)``) into the FPN. Both with the project's norm layer (as every structure
    backbone) and their own initialisation."""
    spec = backbone_spec(spec)
    w = float(width_multiplier) * float(spec.get("width_scale", 1.0))
    norm_cfg = dict(type=norm, requires_grad=True)
    if spec["type"] == "SpineNet":
        cfg = dict(type="SpineNet", arch=spec["arch"], width_multiplier=w, endpoints_num_filters=int(neck_channels),
                   min_level=3, max_level=7, norm_cfg=norm_cfg, norm_eval=False)
        return cfg, None, [8, 16, 32, 64, 128]
    from .detnas import scale_space

    cfg = dict(type="DetNASBackbone", arch=spec["arch"], path=list(spec["path"]), width_multiplier=w,
               out_indices=(1, 2, 3), norm_cfg=norm_cfg, norm_eval=False)
    return cfg, list(scale_space(spec["arch"], w).out_channels[1:]), [8, 16, 32]


def foreign_backbone_cost(backbone_cfg: dict, hw) -> dict:
    """MACs and params of a spec backbone as :func:`train` records them, at ``hw`` = (h, w), with the family's
    own counter: DetNAS :func:`maedet.detnas.path_flops` / ``path_params`` on the scaled search space
    (analytic conv MACs, DetNAS's convention); SpineNet :func:`maedet.spinenet.backbone_complexity`
    (``FlopCounterMode`` / 2 on the meta device: conv MACs, its published tables' convention, endpoints
    included). Neither counts BN or activations (``maedet.flops.count``'s ``conv`` convention)."""
    bb = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, (list, tuple)) else v)
          for k, v in dict(backbone_cfg).items()}
    h, w = (int(v) for v in hw)
    if bb.get("type") == "SpineNet":
        from .spinenet import backbone_complexity

        kw = {k: v for k, v in bb.items() if k not in ("type", "init_cfg", "norm_eval")}
        c = backbone_complexity((h, w), **kw)
        return dict(macs=int(c["macs"]), params=int(c["params"]),
                    counter="maedet.spinenet.backbone_complexity (FlopCounterMode / 2, conv MACs)")
    if bb.get("type") == "DetNASBackbone":
        from .detnas import path_flops, path_params, scale_space

        space = scale_space(bb["arch"], float(bb.get("width_multiplier", 1.0)))
        return dict(macs=int(path_flops(bb["path"], space, (h, w))), params=int(path_params(bb["path"], space)),
                    counter="maedet.detnas.path_flops (analytic conv MACs)")
    raise ValueError(f"not a spec backbone config (type {bb.get('type')!r}; known: {', '.join(FOREIGN_TYPES)})")


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------
def resolve_profile(profile: dict | None, head: str) -> dict:
    """``head``'s full profile (defaults filled in, its ``heads`` entry applied), checked: an unknown field, a
    field of another head or a value out of range raises ``ValueError`` naming it."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    p = {**DEFAULT_PROFILE, **OPTIONAL_PROFILE, **head_profile(profile, head)}
    unknown = set(p) - set(DEFAULT_PROFILE) - set(OPTIONAL_PROFILE)
    if unknown:
        raise ValueError(f"unknown profile field(s): {', '.join(sorted(unknown))} "
                         f"(known: {', '.join([*DEFAULT_PROFILE, *OPTIONAL_PROFILE])})")
    for k, d in DEFAULT_PROFILE.items():
        num = isinstance(d, (int, float)) and not isinstance(d, bool)
        if p[k] is None and k not in ("lr", "epochs", "batch_size"):  # e.g. grad_clip, rcnn_rois: None is "off"
            continue
        if num and (isinstance(p[k], bool) or not isinstance(p[k], (int, float))):
            raise ValueError(f"profile field {k} must be a number, got {p[k]!r}")
    if not 0 < float(p["lr"]) <= 1:
        raise ValueError(f"lr must be in (0, 1], got {p['lr']!r}")
    if p["anchor_base_scale"] is not None:
        if head != "retinanet":
            raise ValueError(f"anchor_base_scale is a RetinaNet setting, not one of {head}")
        if not 0.5 <= float(p["anchor_base_scale"]) <= 16:
            raise ValueError(f"anchor_base_scale must be between 0.5 and 16, got {p['anchor_base_scale']!r}")
    if p["head_norm"] not in HEAD_NORMS:
        raise ValueError(f"head_norm must be GN or null, got {p['head_norm']!r}")
    if p["head_norm"] is not None and head != "retinanet":
        raise ValueError(f"head_norm is a RetinaNet setting ({head}'s bundled head decides its own norm)")
    if p["head_variant"] not in HEAD_VARIANTS:
        raise ValueError(f"head_variant must be one of {', '.join(HEAD_VARIANTS)}, got {p['head_variant']!r}")
    if p["head_variant"] == "improved" and head != "fcos":
        raise ValueError(f"head_variant 'improved' exists for fcos only, not {head}")
    return p


def make_config(backbone, head: str, data_root: str | Path, *, profile: dict | None = None, seed: int = 0,
                work_dir: str | Path = "work_dirs/run", dataset: str | None = "digits",
                pretrained: str | Path | None = None):
    """An mmengine ``Config``: mmdet's bundled ``head`` config with ``MAEDetBackbone(backbone)``, the data
    of ``data_root`` (see :func:`dataset_dir`; classes read from its annotation file) and the profile's
    schedule. ``backbone`` is a zoo name, a structure JSON path, a dict or a Structure; ``pretrained`` a
    backbone checkpoint (:func:`maedet.mmdet_backbone.save_pretrained`) loaded as ``init_cfg``.

    ``backbone`` may also be a SpineNet / DetNAS spec (:func:`backbone_spec`; a name of
    :data:`FOREIGN_BACKBONES` or a spec dict), for the heads of :data:`FOREIGN_HEADS`, from scratch
    (:func:`foreign_backbone_cfg`): SpineNet's endpoints (P3-P7, strides 8-128, ``neck_channels`` wide) feed
    the head directly (``neck=None``); DetNAS's C3-C5 feed the FPN as a structure's do."""
    from mmengine.config import Config

    from .mmdet_backbone import resolve

    p = resolve_profile(profile, head)
    spec = foreign_spec(backbone)  # None: a structure (the path below is then the same as before specs)
    if spec is not None:
        if head not in FOREIGN_HEADS:
            raise ValueError(f"a {spec['type']} backbone trains with the heads {', '.join(FOREIGN_HEADS)} "
                             f"(5 pyramid levels P3-P7), not {head!r}")
        if pretrained is not None:
            raise ValueError(f"pretrained init is for structure backbones (maedet.detectors.classify), not a "
                             f"{spec['type']} spec")
    try:
        cfg = Config.fromfile(HEADS[head])
    except Exception:  # older mmengine without package-relative paths
        cfg = Config.fromfile(bundled_config(HEADS[head]))

    out_idx = OUT_INDICES[head]
    width = float(p["width_multiplier"])
    if spec is None:
        s = resolve(backbone)  # validated, unscaled
        # the config carries a zoo name when the structure is a zoo entry (mmengine formats the config text with
        # yapf several times per run: ~0.4 s for a structure dict), else the structure dict itself
        struct = _zoo_name(s) or s.to_dict()
        scaled = resolve(struct, width)
        in_ch = [scaled.stage_channels[i] for i in out_idx]
    else:
        s = None
        spec_cfg, in_ch, spec_strides = foreign_backbone_cfg(spec, width, int(p["neck_channels"]), p["norm"])
    nc = int(p["neck_channels"])
    dd = dataset_dir(data_root, dataset)
    classes = coco_classes(dd / "annotations" / "train.json")
    k = len(classes)

    cfg.custom_imports = dict(imports=["maedet.mmdet_backbone"], allow_failed_imports=False)
    m = cfg.model
    m.data_preprocessor.update(mean=PYTORCH_MEAN, std=PYTORCH_STD, bgr_to_rgb=True, pad_size_divisor=32)
    if spec is None:
        m.backbone = dict(type="MAEDetBackbone", structure=struct, out_indices=out_idx, width_multiplier=width,
                          norm_cfg=dict(type=p["norm"], requires_grad=True), norm_eval=False, frozen_stages=-1,
                          zero_init_residual=True,
                          init_cfg=None if pretrained is None else dict(type="Pretrained", checkpoint=str(pretrained)))
    else:
        cfg.custom_imports = dict(imports=["maedet.mmdet_backbone", FOREIGN_MODULES[spec["type"]]],
                                  allow_failed_imports=False)
        m.backbone = spec_cfg
        head_strides = m.bbox_head.get("anchor_generator", {}).get("strides") or m.bbox_head.get("strides")
        levels = list(spec_strides) if in_ch is None else [int(v) for v in spec_strides] + [64, 128]  # FPN: P6-P7
        if [int(v) for v in head_strides] != levels:
            raise ValueError(f"{head}'s strides {list(head_strides)} do not match the {spec['type']} pyramid {levels}")
    if head == "yolof":
        m.neck.update(in_channels=in_ch[0], out_channels=2 * nc, block_mid_channels=max(8, nc // 2))
        m.bbox_head.update(in_channels=2 * nc, num_classes=k)
    elif head == "mask_rcnn":
        m.neck.update(in_channels=in_ch, out_channels=nc, start_level=0)
        m.rpn_head.update(in_channels=nc, feat_channels=nc)
        m.roi_head.bbox_roi_extractor.update(out_channels=nc)
        m.roi_head.bbox_head.update(in_channels=nc, fc_out_channels=4 * nc, num_classes=k)
        m.roi_head.mask_roi_extractor.update(out_channels=nc)
        m.roi_head.mask_head.update(in_channels=nc, conv_out_channels=nc, num_classes=k)
        if p["rcnn_rois"]:  # RoIs sampled per image for the box/mask heads' losses (mmdet: 512)
            m.train_cfg.rcnn.sampler.num = int(p["rcnn_rois"])
    elif head == "scnet":
        # mmdet's SCNet (cascade of 3 box stages, mask head, global-context and feature-relay heads) at our
        # widths. Its semantic branch needs COCO-stuff segmentation maps, which neither the digits set nor a
        # plain COCO download has: it is left out (SCNet's paper ablates it; the rest of the detector is kept)
        m.data_preprocessor.pop("pad_seg", None)
        m.neck.update(in_channels=in_ch, out_channels=nc, start_level=0)
        m.rpn_head.update(in_channels=nc, feat_channels=nc)
        r = m.roi_head
        r.bbox_roi_extractor.update(out_channels=nc)
        for bh in r.bbox_head:
            bh.update(in_channels=nc, fc_out_channels=4 * nc, num_classes=k)
        r.mask_roi_extractor.update(out_channels=nc)
        r.mask_head.update(in_channels=nc, conv_out_channels=nc, num_classes=k)
        r.glbctx_head.update(in_channels=nc, conv_out_channels=nc, num_classes=k)
        r.feat_relay_head.update(in_channels=4 * nc, out_conv_channels=nc)
        r.semantic_roi_extractor = None
        r.semantic_head = None
        if p["rcnn_rois"]:
            for stage in m.train_cfg.rcnn:
                stage.sampler.num = int(p["rcnn_rois"])
    elif head == "ssdlite":
        # mmdet's SSDLite (Table 6): C4 and C5 (MobileNetV2's out_indices (4, 7): 96 and 1280 channels), four
        # depthwise extra levels of 2nc, nc, nc, nc/2 channels (512/256/256/128 at the paper profile's 256),
        # and its anchors laid out for the profile's input size instead of 320 (sizes x size/320, strides =
        # size / feature-map size, as the bundled strides are at 320)
        w0 = int(p["img_scale"][0])
        extra = (2 * nc, nc, nc, max(8, nc // 2))
        m.neck.update(in_channels=tuple(in_ch), out_channels=tuple(in_ch) + extra)
        m.bbox_head.update(in_channels=tuple(in_ch) + extra, num_classes=k)
        f, fmaps = -(-w0 // 16), []
        for _ in range(6):
            fmaps.append(f)
            f = -(-f // 2)
        sc = w0 / SSDLITE_SIZE
        ag = m.bbox_head.anchor_generator
        ag.update(strides=[round(w0 / fm) for fm in fmaps],
                  min_sizes=[round(v * sc) for v in ag.min_sizes], max_sizes=[round(v * sc) for v in ag.max_sizes])
        m.data_preprocessor.update(pad_size_divisor=1)
    else:
        # the bundled configs feed C2-C5 with start_level=1; we feed C3-C5 with start_level=0: same FPN
        if in_ch is None:  # a SpineNet spec: its endpoints are the P3-P7 pyramid, no neck
            m.neck = None
        else:
            m.neck.update(in_channels=in_ch, out_channels=nc, start_level=0)
        m.bbox_head.update(in_channels=nc, feat_channels=nc, num_classes=k)
        if p["anchor_base_scale"] is not None:  # anchors for small images (RetinaNet; checked above)
            m.bbox_head.anchor_generator.update(octave_base_scale=float(p["anchor_base_scale"]))
        if head in ("fcos", "gfl") or p["head_norm"] == "GN":  # GroupNorm heads
            m.bbox_head.norm_cfg = dict(type="GN", num_groups=_gn_groups(nc), requires_grad=True)
        if p["head_variant"] == "improved":  # mmdet's fcos ...-center-normbbox-centeronreg-giou config
            m.bbox_head.update(norm_on_bbox=True, centerness_on_reg=True, dcn_on_last_conv=False,
                               center_sampling=True, conv_bias=True,
                               loss_bbox=dict(type="GIoULoss", loss_weight=1.0))
            m.test_cfg.nms = dict(type="nms", iou_threshold=0.6)

    # ---- data
    w, h = (int(v) for v in p["img_scale"])
    lo, hi = (float(v) for v in p["multiscale"])
    with_mask = head in MASK_HEADS
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=with_mask),
        dict(type="RandomResize", scale=(w, h), ratio_range=(lo, hi), keep_ratio=True),
        dict(type="RandomFlip", prob=float(p["flip"])),
        dict(type="PackDetInputs"),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=(w, h), keep_ratio=True),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=with_mask),
        dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
    ]

    def ds(split, pipeline, **kw):
        return dict(type="CocoDataset", data_root=f"{dd}/", ann_file=f"annotations/{split}.json",
                    data_prefix=dict(img=f"{split}/"), metainfo=dict(classes=classes), pipeline=pipeline,
                    backend_args=None, **kw)

    nw = int(p["num_workers"])
    cfg.train_dataloader = dict(batch_size=int(p["batch_size"]), num_workers=nw, persistent_workers=False,
                                sampler=dict(type="DefaultSampler", shuffle=True),
                                batch_sampler=dict(type="AspectRatioBatchSampler"),
                                dataset=ds("train", train_pipeline, filter_cfg=dict(filter_empty_gt=True, min_size=1)))
    cfg.val_dataloader = dict(batch_size=int(p["val_batch_size"]), num_workers=nw, persistent_workers=False,
                              drop_last=False, sampler=dict(type="DefaultSampler", shuffle=False),
                              dataset=ds("val", test_pipeline, test_mode=True))
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    metric = ["bbox", "segm"] if with_mask else ["bbox"]
    cfg.val_evaluator = dict(type="CocoMetric", ann_file=str(dd / "annotations" / "val.json"), metric=metric,
                             format_only=False, backend_args=None)
    cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)

    # ---- schedule: the paper's SGD, 3x-shaped steps scaled to `epochs`
    E = int(p["epochs"])
    vi = int(p["val_interval"] or 0)
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=E, val_interval=vi if vi > 0 else E + 1)
    cfg.val_cfg = dict(type="ValLoop")
    cfg.test_cfg = dict(type="TestLoop")
    ow = cfg.get("optim_wrapper", {})
    cfg.optim_wrapper = dict(type="OptimWrapper",
                             optimizer=dict(type="SGD", lr=float(p["lr"]), momentum=float(p["momentum"]),
                                            weight_decay=float(p["weight_decay"])))
    if ow.get("paramwise_cfg"):
        cfg.optim_wrapper["paramwise_cfg"] = copy.deepcopy(ow["paramwise_cfg"])
    if p["backbone_lr_mult"] is not None:
        pw = cfg.optim_wrapper.setdefault("paramwise_cfg", {})
        keys = dict(pw.get("custom_keys", {}))
        keys["backbone"] = dict(keys.get("backbone", {}), lr_mult=float(p["backbone_lr_mult"]))
        pw["custom_keys"] = keys
    if p["grad_clip"]:
        cfg.optim_wrapper["clip_grad"] = dict(max_norm=float(p["grad_clip"]), norm_type=2)
    cfg.param_scheduler = [
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=int(p["warmup_iters"])),
        dict(type="MultiStepLR", begin=0, end=E, by_epoch=True, milestones=milestones(E), gamma=0.1),
    ]
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=16)

    # ---- runtime
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1, by_epoch=True,
                                        max_keep_ckpts=int(p["max_keep_ckpts"]), save_last=True)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=int(p["log_interval"]))
    cfg.default_hooks.visualization = dict(type="DetVisualizationHook", draw=False)
    cfg.visualizer = dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")],
                          name="visualizer")
    cfg.env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                       dist_cfg=dict(backend="gloo"))
    cfg.launcher = "none"
    cfg.randomness = dict(seed=int(seed), deterministic=False)
    cfg.work_dir = str(work_dir)
    cfg.log_level = str(p["log_level"])
    cfg.load_from = None
    cfg.resume = False
    p_json = json.loads(json.dumps(p))  # tuples -> lists, as it will read back
    cfg.maedet = dict(head=head, dataset=dataset or dd.name, data_dir=str(dd), seed=int(seed), profile=p_json,
                      pretrained=None if pretrained is None else str(pretrained),
                      backbone=(s.name or s.digest()) if spec is None else spec_label(spec), classes=list(classes))
    if spec is not None:
        cfg.maedet["backbone_spec"] = spec
    return cfg


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def _metrics(raw: dict) -> dict:
    out = {}
    for key, v in (raw or {}).items():
        short = key.split("/")[-1]
        if short in METRIC_KEYS:
            v = float(v)
            out[METRIC_KEYS[short]] = round(100.0 * v, 2) if v >= 0 else None  # -1: no object of that size
    return out


def _hooks(work_dir: Path):
    from mmengine.hooks import Hook

    class TrainTimer(Hook):
        """Wall time of every training epoch, across kills/resumes (kept in the message hub, so in checkpoints)."""

        start_iter = 0

        def before_train(self, runner):  # after a resume: where this process starts
            self.start_iter = runner.iter

        def before_train_epoch(self, runner):
            self.t0 = time.perf_counter()

        def after_train_epoch(self, runner):  # runs before CheckpointHook (VERY_LOW)
            hub = runner.message_hub
            hub.update_info("maedet/epoch_seconds",
                            list(hub.get_info("maedet/epoch_seconds", [])) + [time.perf_counter() - self.t0])

    class EpochLoss(Hook):
        """Mean of every logged training loss over each epoch (kept in the message hub, so across resumes)."""

        def before_train_epoch(self, runner):
            self.sums, self.n = {}, 0

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            for k, v in (outputs or {}).items():
                if k.startswith("loss"):
                    self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.n += 1

        def after_train_epoch(self, runner):
            hub = runner.message_hub
            row = {k: round(v / max(1, self.n), 5) for k, v in sorted(self.sums.items())}
            hub.update_info("maedet/epoch_losses", list(hub.get_info("maedet/epoch_losses", [])) + [row])

    class LastVal(Hook):
        """The metrics of the last in-loop evaluation (mmengine always evaluates after the last epoch)."""

        def __init__(self):
            self.epoch, self.metrics, self.seconds, self.t0 = None, None, None, None

        def before_val_epoch(self, runner):
            self.t0 = time.perf_counter()

        def after_val_epoch(self, runner, metrics=None):
            self.epoch, self.metrics, self.seconds = runner.epoch, metrics, time.perf_counter() - self.t0
            # the learning curve, one entry per evaluated epoch, in a file: the epoch's checkpoint is written
            # before its evaluation, so the message hub would lose the last one across a kill
            hist = val_history(work_dir)
            hist[str(runner.epoch)] = dict(_metrics(metrics), seconds=round(self.seconds, 1))
            _write_json(work_dir / "val_history.json", hist)

    return TrainTimer(), EpochLoss(), LastVal()


def val_history(work_dir: str | Path) -> dict:
    """The evaluations of a run so far: ``{epoch (str): {AP, AP50, ..., seconds}}`` (``val_interval > 0``)."""
    p = Path(work_dir) / "val_history.json"
    return json.loads(p.read_text()) if p.exists() else {}


def inference_speed(model, dataset, n_images: int = 20, warmup: int = 3) -> float | None:
    """Images per second of the full detector in eval mode at batch 1 on this machine: data preprocessing
    (normalise, pad), backbone, neck, head and post-processing (NMS), excluding image decoding. The median
    per-image time over ``n_images`` val images, after ``warmup`` untimed ones."""
    import torch
    from mmengine.dataset import pseudo_collate

    if n_images <= 0 or len(dataset) == 0:
        return None
    model.eval()
    items = [pseudo_collate([dataset[i % len(dataset)]]) for i in range(n_images + warmup)]
    times = []
    with torch.no_grad():
        for i, d in enumerate(items):
            t0 = time.perf_counter()
            model.test_step(d)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return round(1.0 / statistics.median(times), 2)


PREDICTION_IMAGES = 4      # val images whose detections every run keeps (drawn by maedet.visualize)
PREDICTION_SCORE_THR = 0.05
PREDICTION_MAX_BOXES = 100


def val_predictions(model, dataset, n_images: int = PREDICTION_IMAGES, score_thr: float = PREDICTION_SCORE_THR,
                    max_boxes: int = PREDICTION_MAX_BOXES) -> list[dict]:
    """The detections of the first ``n_images`` val images, small enough to keep in a ledger record: per
    image its file name and ``boxes`` ``[x1, y1, x2, y2, score, label]`` in the original image's pixels
    (mmdet rescales them back), at most ``max_boxes`` with score >= ``score_thr``, rounded to 0.1 px and
    0.001 score. Lets a report draw what a run detects without its checkpoint."""
    import torch
    from mmengine.dataset import pseudo_collate

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(min(int(n_images), len(dataset))):
            item = dataset[i]
            pred = model.test_step(pseudo_collate([item]))[0]
            inst = pred.pred_instances
            keep = inst.scores >= score_thr
            boxes, scores, labels = inst.bboxes[keep], inst.scores[keep], inst.labels[keep]
            order = torch.argsort(scores, descending=True)[:max_boxes]
            rows = [[round(float(v), 1) for v in boxes[j]] + [round(float(scores[j]), 3), int(labels[j])]
                    for j in order.tolist()]
            out.append({"file_name": Path(pred.metainfo.get("img_path", "")).name, "boxes": rows})
    return out


def latency(backbone, head: str, data_root: str | Path, profile: dict | None = None, n: int = 20,
            warmup: int = 3, threads: int = 1) -> dict:
    """CPU latency of the whole detector at batch 1, FP32, ``threads`` threads (Table 6's phone column
    measured here instead): ``head``'s detector built at ``profile`` (e.g. full width, the paper's input
    size), random weights, one zero image through preprocessing, backbone, neck, head and post-processing
    (NMS); the median of ``n`` timed passes after ``warmup``. Returns ms per image and images per second."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample

    if not 1 <= int(n) <= 10000 or int(warmup) < 0:
        raise ValueError(f"latency needs 1 <= n <= 10000 and warmup >= 0, got n={n}, warmup={warmup}")
    _ensure_registered()
    cfg = make_config(backbone, head, data_root, profile=profile, work_dir="work_dirs/latency")
    h, w = (int(v) for v in reversed(cfg.maedet["profile"]["img_scale"]))
    prev = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        model = MODELS.build(cfg.model).eval()
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        data = {"inputs": [torch.zeros(3, h, w, dtype=torch.uint8)], "data_samples": [sample]}
        times = []
        with torch.no_grad():
            for i in range(int(n) + int(warmup)):
                t0 = time.perf_counter()
                model.test_step(data)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(prev)
    ms = 1000.0 * statistics.median(times)
    return {"ms": round(ms, 1), "fps": round(1000.0 / ms, 1), "threads": int(threads), "n": int(n),
            "resolution": f"{w}x{h}"}


def detector_macs(model, hw) -> int | None:
    """Multiply-accumulates of the full detector's forward at ``hw`` = (h, w) (padded to 32) counted by
    mmengine's FlopAnalyzer: backbone, neck and heads (for Mask R-CNN with the RPN's test-time proposals,
    so it varies with the weights); no post-processing. None if the model cannot be traced."""
    import torch

    try:
        from mmdet.structures import DetDataSample
        from mmengine.analysis import FlopAnalyzer

        h, w = (-(-int(v) // 32) * 32 for v in hw)
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                             batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))

        class _Tensor(torch.nn.Module):
            def __init__(self, det):
                super().__init__()
                self.det = det

            def forward(self, x):
                return self.det(x, [sample], mode="tensor")

        model.eval()
        with torch.no_grad():
            fa = FlopAnalyzer(_Tensor(model), (torch.zeros(1, 3, h, w),))
            fa.unsupported_ops_warnings(False)
            fa.uncalled_modules_warnings(False)
            return int(fa.total())
    except Exception:  # noqa: BLE001 - an optional number
        return None


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    tmp.replace(path)


def train(cfg, resume: bool = True, speed: bool = True) -> dict:
    """Train ``cfg`` (from :func:`make_config`) with mmengine's Runner, resuming from the last epoch
    checkpoint in ``work_dir`` when there is one (a killed training continues), evaluate on val with
    CocoMetric, and write ``work_dir/results.json``: AP, AP50, AP75, AP_S, AP_M, AP_L (mask_AP* for Mask
    R-CNN) in percent (None: no val object of that size), training wall time (cumulative over resumes),
    iterations, backbone MACs/params at ``img_scale`` (:func:`maedet.flops.count`; for a SpineNet / DetNAS
    spec the family's counter, :func:`foreign_backbone_cost`, named in ``backbone_macs_counter``), detector
    params and MACs, and inference speed (:func:`inference_speed`). A run whose ``results.json`` exists is not
    repeated."""
    _ensure_registered()
    import torch
    from mmengine.runner import Runner, find_latest_checkpoint

    from .flops import count
    from .mmdet_backbone import resolve

    work_dir = Path(cfg.work_dir)
    res_path = work_dir / "results.json"
    if res_path.exists():
        return json.loads(res_path.read_text())
    meta = copy.deepcopy(cfg.get("maedet", {}))
    p = dict(DEFAULT_PROFILE, **meta.get("profile", {}))
    torch.set_num_threads(int(p["threads"]))
    cfg = copy.deepcopy(cfg)
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt = find_latest_checkpoint(str(work_dir)) if resume else None
    cfg.resume = bool(ckpt)
    cfg.load_from = ckpt
    runner = Runner.from_cfg(cfg)
    timer, epoch_loss, last_val = _hooks(work_dir)
    runner.register_hook(timer, priority="NORMAL")
    runner.register_hook(epoch_loss, priority="NORMAL")
    runner.register_hook(last_val, priority="LOW")
    t0 = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    if last_val.epoch == runner.epoch and last_val.metrics is not None:
        raw = last_val.metrics
    else:  # resumed after the last epoch (killed while evaluating): evaluate now
        raw = runner.val()
    val_s = last_val.seconds if raw is last_val.metrics else time.perf_counter() - t1
    epoch_s = runner.message_hub.get_info("maedet/epoch_seconds", [])
    metrics = _metrics(raw)
    empty = not metrics  # CocoMetric returns {} when the model detected nothing at all: AP 0
    if empty:
        keys = [k for k in METRIC_KEYS.values() if k.startswith("mask_")] if cfg.model.get("roi_head") else []
        metrics = {k: 0.0 for k in ["AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"] + keys}
    bb = cfg.model.backbone
    w, h = (int(v) for v in p["img_scale"])
    if bb.get("type") in FOREIGN_TYPES:  # a spec: the family's own counter (foreign_backbone_cost)
        fc = foreign_backbone_cost(bb, (h, w))
        bb_costs = dict(backbone_macs=fc["macs"], backbone_params=fc["params"], backbone_macs_counter=fc["counter"],
                        backbone_cfg=json.loads(json.dumps(dict(bb), default=str)))
    else:
        s = resolve(bb["structure"], bb.get("width_multiplier", 1.0))
        c = count(s, (h, w))
        bb_costs = dict(backbone_structure=s.to_dict(), backbone_macs=int(c.macs), backbone_params=int(c.params))
    model = runner.model
    out = dict(meta, **metrics)
    out.update(
        metrics=metrics, no_detections=empty,
        **bb_costs,
        detector_params=int(sum(q.numel() for q in model.parameters())),
        detector_macs=detector_macs(model, (h, w)),
        resolution=[h, w],
        iterations=int(runner.iter), epochs=int(runner.epoch),
        train_seconds=round(float(sum(epoch_s)), 1),
        epoch_seconds=[round(float(t), 2) for t in epoch_s],
        epoch_losses=list(runner.message_hub.get_info("maedet/epoch_losses", [])),
        val_history=val_history(work_dir) if int(p["val_interval"] or 0) > 0 else None,
        train_seconds_this_process=round(wall, 1),
        resumed_from=ckpt, start_iter=int(timer.start_iter),
        val_seconds=None if val_s is None else round(val_s, 1),  # the final COCO evaluation
        images_per_second=inference_speed(model, runner.val_dataloader.dataset, int(p["speed_images"]))
        if speed else None,
        threads=torch.get_num_threads(),
        val_predictions=val_predictions(model, runner.val_dataloader.dataset),
    )
    _write_json(res_path, out)
    return out


# --------------------------------------------------------------------------------------------------
# FLOPs matching (Table 3: backbones of different families at matched cost)
# --------------------------------------------------------------------------------------------------
def complexity(backbone, head: str = "gfl", data_root: str | Path = "data", *, profile: dict | None = None,
               dataset: str | None = "digits", detector: bool = True, num_classes: int | None = None) -> dict:
    """The costs of ``backbone`` (a structure or a spec) under ``head`` at ``profile`` without training:
    ``backbone_macs`` / ``backbone_params`` exactly as :func:`train` records them (structures:
    :func:`maedet.flops.count`, the paper's convention, which adds BN or ReLU elements; specs: the family's
    counter, conv MACs), ``backbone_conv_macs`` (convolutions only, for every family: the like-for-like
    number to match), and with ``detector`` the full detector's ``detector_macs`` (:func:`detector_macs`,
    mmengine's FlopAnalyzer on the built model at img_scale) and ``detector_params``. ``data_root`` /
    ``dataset`` give the classes (the head's size); ``num_classes`` overrides their number (80: COCO's, for
    costs beside a paper's)."""
    from .flops import count
    from .mmdet_backbone import resolve

    _ensure_registered()
    cfg = make_config(backbone, head, data_root, profile=profile, dataset=dataset, work_dir="work_dirs/complexity")
    if num_classes is not None:
        if not 1 <= int(num_classes) <= 10000:
            raise ValueError(f"num_classes must be 1..10000, got {num_classes}")
        cfg.model.bbox_head.num_classes = int(num_classes)
    p = cfg.maedet["profile"]
    w, h = (int(v) for v in p["img_scale"])
    bb = cfg.model.backbone
    out = dict(backbone=cfg.maedet["backbone"], head=head, resolution=[h, w], width_multiplier=p["width_multiplier"],
               neck_channels=p["neck_channels"])
    if bb.get("type") in FOREIGN_TYPES:
        c = foreign_backbone_cost(bb, (h, w))
        out.update(backbone_macs=c["macs"], backbone_params=c["params"], backbone_conv_macs=c["macs"],
                   backbone_macs_counter=c["counter"])
    else:
        s = resolve(bb["structure"], bb.get("width_multiplier", 1.0))
        c = count(s, (h, w))
        out.update(backbone_macs=int(c.macs), backbone_params=int(c.params),
                   backbone_conv_macs=int(count(s, (h, w), convention="conv").macs),
                   backbone_macs_counter="maedet.flops.count (paper convention)")
    if detector:
        from mmdet.registry import MODELS

        model = MODELS.build(cfg.model)
        out.update(detector_macs=detector_macs(model, (h, w)),
                   detector_params=int(sum(q.numel() for q in model.parameters())))
    return out


def match_width(spec, target_macs: float, *, profile: dict | None = None, key: str = "backbone_conv_macs",
                head: str = "gfl", data_root: str | Path = "data", dataset: str | None = "digits",
                lo: float = 0.25, hi: float = 4.0, steps: int = 14) -> dict:
    """The ``width_scale`` of a spec whose cost ``key`` (of :func:`complexity`: ``backbone_conv_macs``, or
    ``detector_macs`` for the full detector) at ``profile`` is nearest ``target_macs``: bisection on
    [lo, hi] (costs grow with the width, in steps, as channels are rounded), then the nearer of the two
    widths around the target. Returns ``width_scale``, ``spec`` (with it), ``macs``, ``target`` and
    ``relative`` (macs / target - 1)."""
    base = backbone_spec(spec)
    base.pop("width_scale", None)
    need_det = key.startswith("detector")
    cache = {}

    def cost(ws):
        ws = round(float(ws), 4)
        if ws not in cache:
            sp = dict(base, width_scale=ws) if ws != 1.0 else dict(base)
            cache[ws] = complexity(sp, head, data_root, profile=profile, dataset=dataset, detector=need_det)[key]
        return cache[ws]

    a, b = float(lo), float(hi)
    if cost(a) > target_macs or cost(b) < target_macs:
        raise ValueError(f"target {target_macs:.4g} is outside the costs at width_scale {a} .. {b} "
                         f"({cost(a):.4g} .. {cost(b):.4g})")
    for _ in range(int(steps)):
        m = (a + b) / 2
        if cost(m) < target_macs:
            a = m
        else:
            b = m
    ws = round(min((a, b), key=lambda x: abs(cost(x) / target_macs - 1)), 4)
    macs = cost(ws)
    for r in (round(ws, 2), round(ws, 3)):  # a rounder width with the same channels, where there is one
        if cost(r) == macs:
            ws = r
            break
    return dict(width_scale=ws, spec=backbone_spec(dict(base, width_scale=ws)), macs=macs, target=target_macs,
                relative=macs / target_macs - 1, key=key)


# --------------------------------------------------------------------------------------------------
# classification (the "ImageNet top-1" column at reduced scale, and the pretrained init of Table 7)
# --------------------------------------------------------------------------------------------------
def classification_data(data_dir: str | Path, max_train: int | None = None) -> tuple:
    """``(x_train, y_train, x_val, y_val)`` tensors of a classification set (``data_dir`` holds
    ``train.npz``/``val.npz``: uint8 N x 3 x S x S RGB images, int64 labels), the training part cut to its
    first ``max_train`` images when given."""
    import numpy as np
    import torch

    tr = np.load(Path(data_dir) / "train.npz")
    va = np.load(Path(data_dir) / "val.npz")
    xtr, ytr = torch.from_numpy(tr["images"]), torch.from_numpy(tr["labels"]).long()
    if max_train:
        xtr, ytr = xtr[:max_train], ytr[:max_train]
    return xtr, ytr, torch.from_numpy(va["images"]), torch.from_numpy(va["labels"]).long()


def classification_prep(input_size: int, augment: bool, generator):
    """``prep(x, train=False)``: normalise uint8 images as the detectors do, translate them randomly by up to
    4 px when ``train and augment`` (offsets from ``generator``), upsample to ``input_size``."""
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(PYTORCH_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PYTORCH_STD).view(1, 3, 1, 1)

    def prep(x, train=False):
        x = (x.float() - mean) / std
        if train and augment:  # random translation by up to 4 px (zero = mean padding)
            n, _, hh, ww = x.shape
            x = F.pad(x, (4, 4, 4, 4))
            dy, dx = torch.randint(0, 9, (2,), generator=generator).tolist()
            x = x[:, :, dy:dy + hh, dx:dx + ww]
        return F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)

    return prep


def train_classifier(net, head, xtr, ytr, prep, generator, *, epochs: int, batch_size: int, lr: float,
                     weight_decay: float) -> tuple:
    """The classification recipe of :func:`classify`: ``head(net(prep(x))[-1]`` global-average-pooled``)``,
    cross-entropy, SGD (momentum 0.9, Nesterov) with a per-iteration cosine LR, the batches drawn from
    ``generator``. Parameters without a gradient in an iteration (a supernet's unused choices) are left
    alone. Returns ``(mean loss per epoch, training seconds)``."""
    import torch
    import torch.nn.functional as F

    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    steps = max(1, epochs * ((len(xtr) + batch_size - 1) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0 = time.perf_counter()
    losses = []
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=generator)
        tot, nb = 0.0, 0
        for i in range(0, len(xtr), batch_size):
            idx = perm[i:i + batch_size]
            logits = head(net(prep(xtr[idx], train=True))[-1].mean((2, 3)))
            loss = F.cross_entropy(logits, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot, nb = tot + float(loss.detach()), nb + 1
        losses.append(round(tot / max(1, nb), 4))
    return losses, time.perf_counter() - t0


def classify(backbone, data_dir: str | Path, *, width_multiplier: float = 0.125, epochs: int = 10,
             batch_size: int = 128, lr: float = 0.1, weight_decay: float = 4e-5, input_size: int = 64,
             seed: int = 0, threads: int = 2, save_to: str | Path | None = None,
             max_train: int | None = None, augment: bool = True) -> dict:
    """Backbone + global average pooling + linear on the digits classification set (``data_dir`` holds
    ``train.npz``/``val.npz``: uint8 N x 3 x S x S RGB images, int64 labels), with the paper's ImageNet
    recipe at small scale (SGD momentum 0.9, cosine LR, weight decay 4e-5). The 32 px images are upsampled to
    ``input_size`` (default 64) so that C5, at stride 32, is a 2 x 2 map rather than a single pixel;
    ``augment`` adds random 4-px translations (no flips: digits are not mirror-invariant). Returns top-1 (%)
    on val; ``save_to`` writes the backbone for ``init_cfg=dict(type='Pretrained', checkpoint=save_to)`` of
    an ``MAEDetBackbone`` with the same structure and ``width_multiplier``."""
    _ensure_registered()
    import torch
    from torch import nn

    from .flops import count
    from .mmdet_backbone import MAEDetBackbone, save_pretrained

    torch.manual_seed(seed)
    torch.set_num_threads(int(threads))
    xtr, ytr, xva, yva = classification_data(data_dir, max_train)
    g = torch.Generator().manual_seed(seed)
    prep = classification_prep(input_size, augment, g)

    bb = MAEDetBackbone(backbone, out_indices=(4,), width_multiplier=width_multiplier)
    bb.body.init_weights()
    n_cls = int(max(int(ytr.max()), int(yva.max())) + 1)
    head = nn.Linear(bb.out_channels[-1], n_cls)
    losses, train_s = train_classifier(bb, head, xtr, ytr, prep, g, epochs=epochs, batch_size=batch_size, lr=lr,
                                       weight_decay=weight_decay)
    bb.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xva), 256):
            logits = head(bb(prep(xva[i:i + 256]))[-1].mean((2, 3)))
            correct += int((logits.argmax(1) == yva[i:i + 256]).sum())
    c = count(bb.structure, (input_size, input_size))
    res = {"top1": round(100.0 * correct / len(xva), 2), "epochs": epochs, "train_seconds": round(train_s, 1),
           "n_train": int(len(xtr)), "n_val": int(len(xva)), "input_size": input_size, "seed": seed,
           "width_multiplier": width_multiplier, "train_loss": losses, "backbone_macs": int(c.macs),
           "backbone_params": int(c.params)}
    if save_to is not None:
        save_pretrained(bb, save_to, meta={"width_multiplier": width_multiplier, "top1": res["top1"]})
        res["checkpoint"] = str(save_to)
    return res

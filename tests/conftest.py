import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "lib") not in sys.path:  # the package is installed editable by scripts/setup.sh; this helps bare runs
    sys.path.insert(0, str(ROOT / "lib"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def torch_conv_macs():
    """A function ``(net, x) -> MACs`` of the convolutions of ``net`` on ``x`` as torch's own FLOP counter
    (``FlopCounterMode``, which counts 2 FLOPs per multiply-add) measures them: the independent check of
    :func:`maedet.flops.count`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def measure(net, x) -> int:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(x)
        flops = sum(v for k, v in fc.get_flop_counts()["Global"].items() if "convolution" in str(k))
        return flops // 2

    return measure


SHAPES = ("circle", "square", "bar")


def _write_shapes_split(root: Path, split: str, n: int, seed: int) -> None:
    """A few 64-96 px images with 1-3 coloured shapes (circle, square, bar) each, boxes and masks in COCO format."""
    import json

    import numpy as np
    from PIL import Image
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        h, w = int(rng.integers(64, 97)), int(rng.integers(64, 97))
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(0, 3))
            bh, bw = int(rng.integers(12, 40)), int(rng.integers(12, 40))
            y0, x0 = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
            m = np.zeros((h, w), np.uint8)
            if c == 0:
                yy, xx = np.ogrid[:bh, :bw]
                m[y0:y0 + bh, x0:x0 + bw] = (((yy - bh / 2 + .5) / (bh / 2)) ** 2
                                             + ((xx - bw / 2 + .5) / (bw / 2)) ** 2) <= 1
            elif c == 1:
                m[y0:y0 + bh, x0:x0 + bw] = 1
            else:
                m[y0:y0 + bh, x0 + bw // 3:x0 + bw // 3 + max(3, bw // 4)] = 1
            if m.sum() == 0:
                continue
            img[m.astype(bool)] = (200, 60, 60) if c == 0 else (60, 200, 60) if c == 1 else (60, 60, 220)
            rle = mask_utils.encode(np.asfortranarray(m))
            box = [float(v) for v in mask_utils.toBbox(rle)]
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=c + 1, bbox=box,
                             area=int(m.sum()),
                             segmentation=rle, iscrowd=0))
        name = f"{i:04d}.png"
        Image.fromarray(img).save(root / split / name)
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
    cats = [dict(id=k + 1, name=c, supercategory="shape") for k, c in enumerate(SHAPES)]
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"{split}.json").write_text(
        json.dumps(dict(images=images, annotations=anns, categories=cats)))


@pytest.fixture(scope="session")
def coco(tmp_path_factory):
    """The shapes detection set (train 4, val 3 images; classes SHAPES) the detector tests train on."""
    root = tmp_path_factory.mktemp("coco")
    _write_shapes_split(root, "train", 4, 0)
    _write_shapes_split(root, "val", 3, 1)
    return root

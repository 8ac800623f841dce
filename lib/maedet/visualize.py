"""Drawn detections: val images with their ground truth and what trained detectors found on them.

Every training run keeps the detections of its first val images in its ledger record
(:func:`maedet.detectors.val_predictions`), so a report can show what an AP figure means on the images
without a checkpoint. The boxes are drawn with mmdet's ``DetLocalVisualizer`` (ground truth in one panel,
each model's detections above ``score_thr`` in the next ones) and the panels laid out with matplotlib.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GT_COLOR = (255, 200, 0)
PRED_COLORS = [(0, 200, 255), (255, 64, 160), (120, 255, 80), (255, 128, 0)]


def ground_truth(ann_file: str | Path) -> tuple[dict[str, list[list[float]]], tuple[str, ...]]:
    """``{file_name: [[x1, y1, x2, y2, label], ...]}`` of a COCO annotation file (labels 0-based in category
    order) and its class names."""
    d = json.loads(Path(ann_file).read_text())
    cats = sorted(d["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(cats)}
    name_of = {im["id"]: im["file_name"] for im in d["images"]}
    gt: dict[str, list[list[float]]] = {im["file_name"]: [] for im in d["images"]}
    for a in d["annotations"]:
        x, y, w, h = a["bbox"]
        gt[name_of[a["image_id"]]].append([x, y, x + w, y + h, label_of[a["category_id"]]])
    return gt, tuple(c["name"] for c in cats)


def _draw(visualizer, image: np.ndarray, boxes, color, scores=None, score_thr: float = 0.0) -> np.ndarray:
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 6 if scores else 5)
    inst = InstanceData(bboxes=torch.from_numpy(boxes[:, :4].copy()),
                        labels=torch.from_numpy(boxes[:, -1].astype(np.int64)))
    sample = DetDataSample()
    visualizer.bbox_color = color
    visualizer.text_color = color
    if scores:
        inst.scores = torch.from_numpy(boxes[:, 4].copy())
        sample.pred_instances = inst
        visualizer.add_datasample("pred", image, sample, draw_gt=False, draw_pred=True, show=False,
                                  pred_score_thr=score_thr)
    else:
        sample.gt_instances = inst
        visualizer.add_datasample("gt", image, sample, draw_gt=True, draw_pred=False, show=False)
    return visualizer.get_image()


def detection_panels(image_dir: str | Path, ann_file: str | Path, predictions: dict[str, list[dict]],
                     score_thr: float = 0.3, n_images: int | None = None, panel_inches: float = 3.2):
    """A matplotlib figure: one row per val image that every model in ``predictions`` kept detections for
    (``{model label: record["val_predictions"]}``), the ground truth in the first column and each model's
    detections with score >= ``score_thr`` in the next ones, with the box counts in the titles."""
    import matplotlib.pyplot as plt
    from mmdet.visualization import DetLocalVisualizer
    from PIL import Image

    if not predictions:
        raise ValueError("detection_panels needs the kept detections of at least one model")
    if not 0 <= score_thr <= 1:
        raise ValueError(f"score_thr must be in [0, 1], got {score_thr}")
    gt, classes = ground_truth(ann_file)
    per_model = {m: {p["file_name"]: p["boxes"] for p in preds} for m, preds in predictions.items()}
    names = [n for n in per_model[next(iter(per_model))] if all(n in v for v in per_model.values())]
    missing = [n for n in names if n not in gt]
    if missing:
        raise ValueError(f"predictions name images that {ann_file} does not hold: {missing}")
    names = names[:n_images] if n_images else names
    if not names:
        raise ValueError("the models kept detections of no common val image")
    vis = DetLocalVisualizer(name=f"maedet-panels-{id(predictions)}", line_width=1.5, alpha=0.9)
    vis.dataset_meta = {"classes": classes, "palette": [GT_COLOR] * len(classes)}
    cols = 1 + len(per_model)
    fig, axes = plt.subplots(len(names), cols, figsize=(panel_inches * cols, panel_inches * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        image = np.asarray(Image.open(Path(image_dir) / name).convert("RGB"))
        panels = [("ground truth", _draw(vis, image, gt[name], GT_COLOR), len(gt[name]))]
        for k, (model, boxes) in enumerate(per_model.items()):
            kept = [b for b in boxes[name] if b[4] >= score_thr]
            panels.append((model, _draw(vis, image, kept, PRED_COLORS[k % len(PRED_COLORS)], scores=True), len(kept)))
        for c, (title, img, n) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            what = "boxes" if c == 0 else f"detections, score >= {score_thr:g}"
            ax.set_title(f"{title}: {n} {what}" if r == 0 else f"{n} {'boxes' if c == 0 else 'detections'}",
                         fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig

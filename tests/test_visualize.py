"""maedet.visualize: val images with ground truth and the kept detections of runs, drawn by mmdet's visualiser."""
import json

import numpy as np
import pytest
from PIL import Image

from maedet.visualize import detection_panels, ground_truth


@pytest.fixture
def coco(tmp_path):
    (tmp_path / "val").mkdir()
    images, anns = [], []
    for i in range(3):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(tmp_path / "val" / f"{i:03d}.png")
        images.append({"id": i + 1, "file_name": f"{i:03d}.png", "height": 48, "width": 64})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 7, "bbox": [4, 5, 20, 10], "area": 200,
                     "iscrowd": 0})
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 7, "name": "tree"}]}))
    return tmp_path, ann


def test_ground_truth_is_xyxy_with_0_based_labels(coco):
    _, ann = coco
    gt, classes = ground_truth(ann)
    assert classes == ("tree",)
    assert gt["000.png"] == [[4, 5, 24, 15, 0]]


def test_panels_one_row_per_common_image_and_score_threshold(coco):
    root, ann = coco
    a = [{"file_name": f"{i:03d}.png", "boxes": [[4, 5, 24, 15, 0.9, 0], [30, 20, 40, 30, 0.2, 0]]} for i in range(3)]
    b = a[:2]  # the second model kept detections of two images only
    fig = detection_panels(root / "val", ann, {"A": a, "B": b}, score_thr=0.5)
    axes = np.array(fig.axes).reshape(2, 3)
    assert axes[0, 0].get_title() == "ground truth: 1 boxes"
    assert axes[0, 1].get_title() == "A: 1 detections, score >= 0.5"  # the 0.2 box is below the threshold
    assert axes[1, 2].get_title() == "1 detections"
    assert axes[1, 0].get_ylabel() == "001.png"
    img = axes[0, 1].get_images()[0].get_array()
    assert img.shape[:2] == (48, 64) and img.max() > 0  # drawn boxes on a black image


def test_panels_reject_bad_input(coco):
    root, ann = coco
    with pytest.raises(ValueError, match="at least one model"):
        detection_panels(root / "val", ann, {})
    with pytest.raises(ValueError, match="score_thr"):
        detection_panels(root / "val", ann, {"A": []}, score_thr=2)
    with pytest.raises(ValueError, match="does not hold"):
        detection_panels(root / "val", ann, {"A": [{"file_name": "nope.png", "boxes": []}]})
    with pytest.raises(ValueError, match="no common val image"):
        detection_panels(root / "val", ann, {"A": []})

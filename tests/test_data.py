"""Tests of maedet.data: deterministic COCO datasets generated offline from registry packages."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

try:
    import maedet.data as D
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
    import maedet.data as D

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

TINY = dict(n_train=10, n_val=6, canvas=(128, 128), objects_per_image=(2, 5))


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def load(path: Path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory) -> Path:
    return D.make_digits_detection(tmp_path_factory.mktemp("d") / "digits", seed=0, **TINY)


# ------------------------------------------------------------------------------------------ digits


def test_module_does_not_import_torch():
    code = "import sys, maedet.data; sys.exit(1 if 'torch' in sys.modules else 0)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_mnist_source_format():
    images, labels, sha = D.load_digits("mnist")
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [500] * 10
    assert sha == D.MNIST_5K_SHA256
    assert images.max() == 255 and all(im.any() for im in images[:50])


def test_digits_layout_and_coco_validity(tiny_digits):
    root = tiny_digits
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "meta.json", "train", "val"]
    assert not list(root.parent.glob(".digits.*"))  # no temporary leftovers
    for split, n in (("train", TINY["n_train"]), ("val", TINY["n_val"])):
        summary = D.validate_coco(root / "annotations" / f"{split}.json", root / split)
        assert summary["images"] == n and summary["categories"] == 10
        coco = COCO(str(root / "annotations" / f"{split}.json"))
        assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == [str(d) for d in range(10)]
        assert min(coco.getImgIds()) == 1 and min(coco.getAnnIds()) == 1
        assert len(list((root / split).glob("*.png"))) == n
        for img in coco.loadImgs(coco.getImgIds()):
            assert (img["width"], img["height"]) == (128, 128)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            assert 1 <= len(anns) <= TINY["objects_per_image"][1]


def test_mmdet_dataset_settings_point_at_files(tiny_digits):
    cfg = D.mmdet_dataset(tiny_digits.parent, "digits", "val")
    root = Path(cfg["data_root"])
    assert (root / cfg["ann_file"]).is_file() and (root / cfg["data_prefix"]["img"]).is_dir()
    cats = load(root / cfg["ann_file"])["categories"]
    assert tuple(c["name"] for c in sorted(cats, key=lambda c: c["id"])) == cfg["metainfo"]["classes"]
    with pytest.raises(ValueError, match="split"):
        D.mmdet_dataset(tiny_digits.parent, "digits", "test")


def test_masks_match_area_and_bbox(tiny_digits):
    coco = load(tiny_digits / "annotations" / "train.json")
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        rle = dict(a["segmentation"], counts=a["segmentation"]["counts"].encode())
        m = mask_utils.decode(rle)
        assert m.shape == (128, 128)
        assert int(m.sum()) == a["area"] > 0
        ys, xs = np.nonzero(m)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert a["iscrowd"] == 0 and 1 <= a["category_id"] <= 10
        by_image.setdefault(a["image_id"], []).append(m)
    for masks in by_image.values():  # an occluded pixel belongs to one digit only
        assert np.stack(masks).sum(0).max() == 1


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tiny_digits):
    again = D.make_digits_detection(tmp_path / "again", seed=0, **TINY)
    assert tree_hash(again) == tree_hash(tiny_digits)
    other = D.make_digits_detection(tmp_path / "other", seed=1, **TINY)
    assert tree_hash(other) != tree_hash(tiny_digits)
    # image i depends only on (seed, split, i): a longer run starts with the same files
    longer = D.make_digits_detection(tmp_path / "longer", seed=0, **{**TINY, "n_train": 12})
    for i in range(1, TINY["n_train"] + 1):
        name = f"train/{i:06d}.png"
        assert (longer / name).read_bytes() == (tiny_digits / name).read_bytes()


def test_workers_do_not_change_output(tmp_path):
    kw = dict(n_train=60, n_val=4, canvas=(96, 96), objects_per_image=(1, 3), seed=3)
    one = D.make_digits_detection(tmp_path / "w1", workers=1, **kw)
    two = D.make_digits_detection(tmp_path / "w2", workers=2, **kw)
    assert tree_hash(one) == tree_hash(two)


def test_train_val_digits_disjoint(tiny_digits, tmp_path):
    used = {s: {a["digit_index"] for a in load(tiny_digits / "annotations" / f"{s}.json")["annotations"]}
            for s in ("train", "val")}
    assert used["train"] and used["val"] and not used["train"] & used["val"]
    _, labels, _ = D.load_digits()
    train_pool, val_pool = D.split_digits(labels, split_seed=0, val_fraction=0.2)
    assert not set(train_pool) & set(val_pool) and len(train_pool) + len(val_pool) == 5000
    assert np.bincount(labels[val_pool]).tolist() == [100] * 10  # stratified
    assert used["train"] <= set(train_pool) and used["val"] <= set(val_pool)
    # labels in the annotations are the digits' true labels
    for a in load(tiny_digits / "annotations" / "val.json")["annotations"]:
        assert a["category_id"] == labels[a["digit_index"]] + 1
    # the classification set uses the same split
    cls = D.make_digits_classification(tmp_path / "cls", n_train=300, n_val=200, size=32)
    tr, va = np.load(cls / "train.npz"), np.load(cls / "val.npz")
    assert set(tr["digit_index"]) <= set(train_pool) and set(va["digit_index"]) <= set(val_pool)
    assert len(set(va["digit_index"])) == 200  # no val digit repeated before the pool is used up


def test_meta_counts_match_annotations(tiny_digits):
    meta = load(tiny_digits / "meta.json")
    gen = meta["area_thresholds"]["generator"]
    assert meta["area_thresholds"]["coco_absolute"]["small_max"] == 32 ** 2
    assert meta["area_thresholds"]["coco_absolute"]["medium_max"] == 96 ** 2
    assert gen["scale"] == pytest.approx(128 / 192)  # small canvas: generator thresholds scaled
    assert gen["small_max"] == pytest.approx((32 * 128 / 192) ** 2)
    for split in ("train", "val"):
        anns = load(tiny_digits / "annotations" / f"{split}.json")["annotations"]
        counts = meta["counts"][split]
        coco_abs = {"small": 0, "medium": 0, "large": 0}
        scaled = dict(coco_abs)
        for a in anns:
            coco_abs["small" if a["area"] < 1024 else "medium" if a["area"] < 9216 else "large"] += 1
            scaled["small" if a["area"] < gen["small_max"] else
                   "medium" if a["area"] < gen["medium_max"] else "large"] += 1
        assert counts["coco_absolute"] == coco_abs
        assert counts["generator_bins"] == scaled
        assert counts["objects"] == len(anns) == sum(coco_abs.values())
        assert sum(counts["requested"].values()) == counts["objects"] + counts["dropped"]


def test_default_canvas_fills_all_coco_area_ranges(tmp_path):
    """At the default canvas, perfect detections give AP_S, AP_M and AP_L = 1 (none is empty: -1)."""
    root = D.make_digits_detection(tmp_path / "d", n_train=0, n_val=16, seed=0)
    meta = load(root / "meta.json")
    assert meta["params"]["canvas"] == [192, 192] and meta["area_thresholds"]["generator"]["scale"] == 1.0
    assert all(v > 0 for v in meta["counts"]["val"]["coco_absolute"].values())
    gt = COCO(str(root / "annotations" / "val.json"))
    for iou_type in ("bbox", "segm"):
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                 "segmentation": a["segmentation"], "score": 1.0} for a in gt.dataset["annotations"]]
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        ap, ap_s, ap_m, ap_l = ev.stats[0], ev.stats[3], ev.stats[4], ev.stats[5]
        assert ap == pytest.approx(1.0) and ap_s == pytest.approx(1.0)
        assert ap_m == pytest.approx(1.0) and ap_l == pytest.approx(1.0)


def test_classification_set(tmp_path):
    a = D.make_digits_classification(tmp_path / "a", n_train=50, n_val=20, size=24, seed=0)
    b = D.make_digits_classification(tmp_path / "b", n_train=50, n_val=20, size=24, seed=0)
    c = D.make_digits_classification(tmp_path / "c", n_train=50, n_val=20, size=24, seed=1)
    assert tree_hash(a) == tree_hash(b) != tree_hash(c)
    tr = np.load(a / "train.npz")
    assert tr["images"].shape == (50, 3, 24, 24) and tr["images"].dtype == np.uint8
    assert tr["labels"].dtype == np.int64 and set(tr["labels"]) <= set(range(10))
    _, labels, _ = D.load_digits()
    assert (labels[tr["digit_index"]] == tr["labels"]).all()
    assert tr["images"].std() > 10  # not blank
    with zipfile.ZipFile(a / "train.npz") as zf:
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())


# ------------------------------------------------------------------------------- bad input, atomic


@pytest.mark.parametrize("kw, name", [
    (dict(n_train=-1), "n_train"),
    (dict(n_val=2.5), "n_val"),
    (dict(canvas=(32, 32)), "canvas"),
    (dict(objects_per_image=(5, 2)), "objects_per_image"),
    (dict(objects_per_image=(3, 60)), "canvas"),
    (dict(size_mix={"small": 0.5, "medium": 0.2}), "size_mix"),
    (dict(size_mix={"small": 0.5, "huge": 0.5}), "size_mix"),
    (dict(max_iou=1.5), "max_iou"),
    (dict(source="/nonexistent/digits.csv.gz"), "source"),
    (dict(seed=-3), "seed"),
])
def test_bad_digit_params_raise(tmp_path, kw, name):
    with pytest.raises(ValueError, match=name):
        D.make_digits_detection(tmp_path / "x", **{**TINY, **kw})
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("fn, kw, name", [
    (D.make_digits_classification, dict(size=8), "size"),
    (D.make_digits_classification, dict(n_train=-5), "n_train"),
    (D.make_treecrowns_detection, dict(source="/nonexistent.whl"), "source"),
    (D.make_treecrowns_detection, dict(source="/nonexistent.whl", tile=10), "tile"),
    (D.make_treecrowns_detection, dict(source="/nonexistent.whl", val_fraction=0.9), "val_fraction"),
    (D.make_treecrowns_detection, dict(source="/nonexistent.whl", truncated="keep"), "truncated"),
])
def test_bad_other_params_raise(tmp_path, fn, kw, name):
    with pytest.raises(ValueError, match=name):
        fn(tmp_path / "x", **kw)
    assert not (tmp_path / "x").exists()


def test_build_all_rejects_bad_params_before_writing(tmp_path):
    with pytest.raises(ValueError, match="digits: n_train"):
        D.build_all(tmp_path / "data", {"digits": {"n_train": -1}, "treecrowns": False})
    with pytest.raises(ValueError, match="unknown parameter"):
        D.build_all(tmp_path / "data", {"digitz": {}})
    with pytest.raises(ValueError, match="unknown digits_cls parameter"):
        D.build_all(tmp_path / "data", {"digits_cls": {"colour": 1}, "treecrowns": False})
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_cli_bad_input_one_line_exit_2(tmp_path, capsys):
    rc = D.main([str(tmp_path / "data"), "--only", "digits", "--set", "digits.n_train=-5", "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "n_train" in err and err.startswith("error:")
    rc = D.main([str(tmp_path / "data"), "--only", "nope"])
    assert rc == 2 and "--only" in capsys.readouterr().err


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    real = D._write_png
    calls = {"n": 0}

    def failing(path, array):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        real(path, array)

    monkeypatch.setattr(D, "_write_png", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        D.make_digits_detection(tmp_path / "digits", workers=1, **TINY)
    assert not (tmp_path / "digits").exists()
    assert list(tmp_path.iterdir()) == []  # temporary directory removed too
    # a failed rebuild keeps the previous complete dataset
    monkeypatch.setattr(D, "_write_png", real)
    good = D.make_digits_detection(tmp_path / "digits", workers=1, **TINY)
    before = tree_hash(good)
    calls["n"] = 0
    monkeypatch.setattr(D, "_write_png", failing)
    with pytest.raises(RuntimeError):
        D.make_digits_detection(tmp_path / "digits", workers=1, seed=5, **TINY)
    assert tree_hash(tmp_path / "digits") == before
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


def test_validate_coco_catches_errors(tiny_digits, tmp_path):
    ann = load(tiny_digits / "annotations" / "val.json")
    img_dir = tiny_digits / "val"

    def check(mutate, pattern, image_dir=img_dir):
        bad = json.loads(json.dumps(ann))
        mutate(bad)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(D.CocoValidationError, match=pattern):
            D.validate_coco(path, image_dir)

    check(lambda c: c["annotations"][1].update(id=c["annotations"][0]["id"]), "duplicate annotation id")
    check(lambda c: c["images"][1].update(id=c["images"][0]["id"]), "duplicate image id")
    check(lambda c: c["annotations"][0].update(image_id=999), "missing image")
    check(lambda c: c["annotations"][0].update(category_id=77), "missing category")
    check(lambda c: c["annotations"][0]["bbox"].__setitem__(0, 126), "outside image")
    check(lambda c: c["annotations"][0].update(area=0), "area")
    check(lambda c: c["annotations"][0].update(area=c["annotations"][0]["area"] + 1), "mask area")
    check(lambda c: c["annotations"][0]["bbox"].__setitem__(2, c["annotations"][0]["bbox"][2] - 1),
          "mask box")
    check(lambda c: c["images"][0].update(width=100), "on disk")
    check(lambda c: c["images"][0].update(file_name="missing.png"), "does not exist")
    check(lambda c: c.pop("categories"), "categories")


def test_build_all_and_up_to_date(tmp_path, monkeypatch):
    params = {"seed": 2, "digits": dict(TINY), "digits_cls": {"n_train": 40, "n_val": 20},
              "treecrowns": False}
    logs: list[str] = []
    built = D.build_all(tmp_path / "data", params, log=logs.append)
    assert sorted(built) == ["digits", "digits_cls"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["digits", "digits_cls"]
    assert load(tmp_path / "data" / "digits" / "meta.json")["params"]["seed"] == 2
    h = tree_hash(tmp_path / "data")

    def boom(*a, **k):
        raise AssertionError("should not rebuild an up-to-date dataset")

    monkeypatch.setattr(D, "make_digits_detection", boom)
    monkeypatch.setattr(D, "make_digits_classification", boom)
    D.build_all(tmp_path / "data", params)
    assert tree_hash(tmp_path / "data") == h
    with pytest.raises(AssertionError):
        D.build_all(tmp_path / "data", params, force=True)


def test_cli_builds(tmp_path):
    rc = D.main([str(tmp_path / "data"), "--only", "digits_cls", "--set", "digits_cls.n_train=30",
                 "--set", "digits_cls.n_val=10", "--seed", "4", "-q"])
    assert rc == 0
    meta = load(tmp_path / "data" / "digits_cls" / "meta.json")
    assert meta["params"]["seed"] == 4 and meta["counts"]["train"]["images"] == 30


# ------------------------------------------------------------------------------------ tree crowns


@pytest.fixture(scope="module")
def deepforest_wheel() -> Path:
    env = os.environ.get("MAEDET_DEEPFOREST_WHEEL")
    if env:
        return Path(env)
    try:
        return D.fetch_deepforest_wheel()
    except RuntimeError as e:
        pytest.skip(f"deepforest {D.DEEPFOREST_VERSION} wheel not available (no registry access?): {e}")


@pytest.fixture(scope="module")
def trees(deepforest_wheel, tmp_path_factory) -> Path:
    return D.make_treecrowns_detection(tmp_path_factory.mktemp("t") / "treecrowns", deepforest_wheel,
                                       tile=320, seed=0)


def test_fetch_reuses_existing_wheel(deepforest_wheel, tmp_path):
    dest = tmp_path / "cache"
    dest.mkdir()
    (dest / D.DEEPFOREST_WHEEL).write_bytes(deepforest_wheel.read_bytes())
    assert D.fetch_deepforest_wheel(dest) == dest / D.DEEPFOREST_WHEEL  # no pip call needed


def test_tree_source_contents(deepforest_wheel):
    sources = D.load_treecrowns_source(deepforest_wheel, include_partial=True)
    counts = {s["name"]: len(s["boxes"]) for s in sources}
    assert counts == {"2019_YELL_2_528000_4978000_image_crop2": 574,
                      "2019_YELL_2_541000_4977000_image_crop": 279, "OSBS_029": 61, "SOAP_061": 37}
    assert sum(counts.values()) == 951
    for s in sources:
        h, w = s["image"].shape[:2]
        b = s["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()


def test_tree_tiles_valid_and_inside(trees):
    meta = load(trees / "meta.json")
    for split in ("train", "val"):
        D.validate_coco(trees / "annotations" / f"{split}.json", trees / split)
        coco = load(trees / "annotations" / f"{split}.json")
        COCO(str(trees / "annotations" / f"{split}.json"))
        assert [c["name"] for c in coco["categories"]] == ["tree"]
        assert coco["images"] and all(im["width"] == im["height"] == 320 for im in coco["images"])
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 320 and w >= 2 and h >= 2
            assert a["area"] == pytest.approx(w * h)
            assert "segmentation" not in a
        counts = meta["counts"][split]
        assert counts["objects"] == sum(a["iscrowd"] == 0 for a in coco["annotations"])
        assert counts["ignored"] == sum(a["iscrowd"] == 1 for a in coco["annotations"])
        assert counts["coco_absolute"] == D.size_counts(coco["annotations"])
    assert meta["counts"]["val"]["objects"] > 100 and meta["counts"]["train"]["objects"] > 500


def test_tree_boxes_come_from_source_boxes(trees, deepforest_wheel):
    sources = {s["name"]: s for s in D.load_treecrowns_source(deepforest_wheel)}
    coco = load(trees / "annotations" / "train.json")
    images = {im["id"]: im for im in coco["images"]}
    for a in coco["annotations"][:300]:
        im = images[a["image_id"]]
        x0, y0 = im["tile_xyxy"][:2]
        x, y, w, h = a["bbox"]
        box = np.array([x + x0, y + y0, x + x0 + w, y + y0 + h])
        src = sources[im["source_image"]]["boxes"]
        # the box is the clip of some source box to the tile
        x1, y1 = im["tile_xyxy"][2:]
        clipped = np.stack([np.maximum(src[:, 0], x0), np.maximum(src[:, 1], y0),
                            np.minimum(src[:, 2], x1), np.minimum(src[:, 3], y1)], 1)
        assert np.abs(clipped - box).max(1).min() < 1e-6


def test_tree_val_is_spatially_held_out(trees):
    meta = load(trees / "meta.json")
    tiles = {s: load(trees / "annotations" / f"{s}.json")["images"] for s in ("train", "val")}
    assert tiles["val"], "no val tiles"

    def inside(r, region):
        return region[0] <= r[0] and region[1] <= r[1] and r[2] <= region[2] and r[3] <= region[3]

    def overlap(r, q):
        return min(r[2], q[2]) > max(r[0], q[0]) and min(r[3], q[3]) > max(r[1], q[1])

    for v in tiles["val"]:
        region = meta["regions"][v["source_image"]]
        assert any(inside(v["tile_xyxy"], reg) for reg in region["val"])
        for t in tiles["train"]:
            if t["source_image"] == v["source_image"]:
                assert not overlap(v["tile_xyxy"], t["tile_xyxy"])
    for t in tiles["train"]:
        assert any(inside(t["tile_xyxy"], reg) for reg in meta["regions"][t["source_image"]]["train"])


def test_tree_deterministic_and_directory_source(trees, deepforest_wheel, tmp_path):
    with zipfile.ZipFile(deepforest_wheel) as zf:
        zf.extractall(tmp_path / "extracted", [n for n in zf.namelist() if n.startswith("deepforest/data/")])
    again = D.make_treecrowns_detection(tmp_path / "again", tmp_path / "extracted", tile=320, seed=0)
    a, b = load(again / "meta.json"), load(trees / "meta.json")
    assert a["regions"] == b["regions"] and a["counts"] == b["counts"]
    for sub in ("annotations", "train", "val"):
        assert tree_hash(again / sub) == tree_hash(trees / sub)

"""mmdetection integration (maedet.mmdet_backbone, maedet.detectors, lib/maedet/configs): real builds and
real (tiny) trainings of every detector on a COCO fixture written here (no dependency on maedet.data)."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mmdet")
pytest.importorskip("mmcv")

from maedet import detectors as det  # noqa: E402
from maedet import zoo  # noqa: E402
from maedet.flops import count  # noqa: E402
from maedet.mmdet_backbone import (MAEDetBackbone, neck_in_channels, resolve, save_pretrained,  # noqa: E402
                                   scale_width)
from maedet.structure import Structure, validate  # noqa: E402

CONFIGS = Path(det.__file__).parent / "configs"
from conftest import SHAPES as CLASSES  # noqa: E402  (the classes of the shared `coco` fixture)
# a tiny profile: 2 iterations per epoch on the fixture, seconds per detector
TINY = dict(img_scale=(96, 96), multiscale=(0.9, 1.0), batch_size=2, val_batch_size=2, epochs=1, lr=0.01,
            warmup_iters=2, width_multiplier=0.0625, neck_channels=16, speed_images=2, log_interval=1)


@pytest.fixture(scope="module")
def cls_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("val", 16)):
        y = rng.integers(0, 3, n).astype(np.int64)
        x = rng.integers(0, 50, (n, 3, 32, 32)).astype(np.uint8)
        for i, c in enumerate(y):  # class = which channel is bright
            x[i, c, 8:24, 8:24] = 220
        np.savez(root / f"{split}.npz", images=x, labels=y)
    return root


def _set_quiet():
    from mmengine.logging import MMLogger

    MMLogger.get_instance("mmengine", log_level="WARNING")


# --------------------------------------------------------------------------------------------------
# backbone
# --------------------------------------------------------------------------------------------------
def test_registry_round_trip_channels_and_strides():
    from mmdet.registry import MODELS

    m = MODELS.build(dict(type="MAEDetBackbone", structure="maedet-s", out_indices=(0, 1, 2, 3, 4)))
    assert isinstance(m, MAEDetBackbone)
    s = zoo.get("maedet-s")
    assert m.out_channels == s.stage_channels == [32, 48, 272, 1024, 2048]
    assert m.strides == [2, 4, 8, 16, 32]
    m.eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, c, 64 // st, 96 // st) for c, st in zip(m.out_channels, m.strides)]
    d = MODELS.build(dict(type="MAEDetBackbone", structure="resnet50"))  # default: C2-C5 like mmdet's ResNet
    assert d.out_indices == (1, 2, 3, 4) and d.out_channels == [256, 512, 1024, 2048]


def test_structure_forms_and_neck_in_channels(tmp_path):
    s = zoo.get("maedet-m")
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"score": 1.0, "structure": s.to_dict()}))  # a search's best.json
    for spec in ("maedet-m", s, s.to_dict(), {"structure": s.to_dict()}, str(p), p):
        assert resolve(spec).key() == s.key()
    assert neck_in_channels("maedet-m", (2, 3, 4)) == [512, 1632, 2048]
    assert neck_in_channels("resnet50", (4,)) == [2048]
    m = MAEDetBackbone("maedet-m", out_indices=(2, 3, 4), width_multiplier=0.25)
    assert m.out_channels == neck_in_channels("maedet-m", (2, 3, 4), 0.25)
    with pytest.raises(ValueError):
        neck_in_channels("maedet-m", (5,))


@pytest.mark.parametrize("name", ["maedet-s", "maedet-m", "resnet50"])
def test_scale_width(name):
    s = zoo.get(name)
    assert scale_width(s, 1.0) is s
    for f in (0.5, 0.25, 0.125):
        t = scale_width(s, f)
        validate(t)
        assert isinstance(t, Structure)
        prev = t.in_channels
        for a, b in zip(s.blocks, t.blocks):
            assert b.in_channels == prev and b.out_channels % 8 == 0 and b.out_channels >= 8
            assert (b.kernel, b.stride, b.depth, b.type) == (a.kernel, a.stride, a.depth, a.type)
            if a.type != "maxpool":
                assert abs(b.out_channels - a.out_channels * f) <= 4 or b.out_channels == 8
            prev = b.out_channels
        ratio = count(t, (224, 224)).macs / count(s, (224, 224)).macs / f ** 2
        assert 0.85 < ratio < 1.45, (f, ratio)  # ~f^2; the min-8 rounding adds a little at 1/8
    with pytest.raises(ValueError):
        scale_width(s, 0)


def test_norm_cfg_frozen_and_norm_eval():
    m = MAEDetBackbone("maedet-s", width_multiplier=0.25, norm_cfg=dict(type="GN", num_groups=4),
                       frozen_stages=1)
    assert any(isinstance(x, torch.nn.GroupNorm) for x in m.modules())
    assert all(not p.requires_grad for p in m.body.stages[1].parameters())
    assert all(p.requires_grad for p in m.body.stages[2].parameters())
    b = MAEDetBackbone("maedet-s", width_multiplier=0.25, norm_eval=True).train()
    assert all(not x.training for x in b.modules() if isinstance(x, torch.nn.BatchNorm2d))
    assert b.training


# --------------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------------
def test_stock_config_with_custom_imports(tmp_path):
    """A stock bundled config + custom_imports, nothing copied into mmdet."""
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    f = tmp_path / "cfg.py"
    f.write_text(
        "_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['maedet.mmdet_backbone'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='MAEDetBackbone', structure='maedet-s',\n"
        "                           out_indices=(2, 3, 4), width_multiplier=0.25),\n"
        "             neck=dict(in_channels=[72, 256, 512], start_level=0, out_channels=32),\n"
        "             bbox_head=dict(in_channels=32, feat_channels=32))\n")
    cfg = Config.fromfile(str(f))
    assert cfg.model.backbone.type == "MAEDetBackbone" and "depth" not in cfg.model.backbone
    import_modules_from_strings(**cfg.custom_imports)
    register_all_modules()
    model = MODELS.build(cfg.model)
    assert model.backbone.out_channels == [72, 256, 512] == neck_in_channels("maedet-s", (2, 3, 4), 0.25)
    model.eval()
    with torch.no_grad():
        cls, reg = model(torch.randn(1, 3, 128, 128), mode="tensor")
    assert [c.shape[-1] for c in cls] == [16, 8, 4, 2, 1]  # P3-P7


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.py")), ids=lambda p: p.name)
def test_example_configs(path):
    from mmengine.config import Config

    cfg = Config.fromfile(str(path))
    bb = cfg.model.backbone
    assert bb.type == "MAEDetBackbone" and cfg.custom_imports.imports == ["maedet.mmdet_backbone"]
    neck_in = cfg.model.neck.in_channels
    expect = neck_in_channels(bb.structure, bb.out_indices, bb.get("width_multiplier", 1.0))
    assert (neck_in if isinstance(neck_in, list) else [neck_in]) == expect
    if cfg.model.neck.type == "FPN":
        assert cfg.model.neck.get("start_level", 0) == 0
    ms = [s for s in cfg.param_scheduler if s["type"] == "MultiStepLR"][0]["milestones"]
    if "coco" in path.name:
        assert cfg.train_cfg.max_epochs == 36 and ms == [28, 33] and cfg.optim_wrapper.optimizer.lr == 0.02
        assert bb.norm_cfg.type == "SyncBN" and cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
        rr = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "RandomResize"][0]
        assert tuple(rr["ratio_range"]) == (0.8, 1.0)


def test_digits_example_config_runs(coco, tmp_path):
    """The practitioner's config runs with mmengine's Runner as it is (data paths pointed at the fixture)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    det._ensure_registered()
    cfg = Config.fromfile(str(CONFIGS / "fcos_maedet-m_fpn_digits.py"))
    for dl, split in ((cfg.train_dataloader, "train"), (cfg.val_dataloader, "val")):
        dl.dataset.update(data_root=f"{coco}/", metainfo=dict(classes=CLASSES))
        dl.batch_size = 2
    cfg.model.bbox_head.num_classes = len(CLASSES)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = str(coco / "annotations" / "val.json")
    cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = 1
    cfg.work_dir = str(tmp_path)
    cfg.log_level = "WARNING"
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    assert isinstance(runner.val(), dict)  # {} when nothing is detected after 2 iterations


def test_make_config_fields(coco, tmp_path):
    cfg = det.make_config("maedet-m", "fcos", coco, profile=dict(TINY, epochs=36), seed=3, work_dir=tmp_path)
    assert cfg.model.backbone.out_indices == (2, 3, 4)
    assert cfg.model.neck.in_channels == neck_in_channels("maedet-m", (2, 3, 4), TINY["width_multiplier"])
    assert cfg.model.neck.start_level == 0 and cfg.model.neck.out_channels == 16
    assert cfg.model.bbox_head.num_classes == 3 and cfg.model.bbox_head.norm_cfg.num_groups == 4
    assert cfg.param_scheduler[1]["milestones"] == [28, 33] and cfg.randomness.seed == 3
    assert cfg.train_dataloader.dataset.metainfo["classes"] == CLASSES
    assert det.milestones(12) == [9, 11] and det.milestones(73) == [57, 67]
    m = det.make_config("resnet50", "mask_rcnn", coco, profile=TINY, work_dir=tmp_path)
    assert m.val_evaluator.metric == ["bbox", "segm"] and m.model.backbone.out_indices == (1, 2, 3, 4)
    y = det.make_config("resnet50", "yolof", coco, profile=TINY, work_dir=tmp_path)
    assert y.model.backbone.out_indices == (4,) and y.model.neck.in_channels == 128
    with pytest.raises(ValueError, match="unknown profile"):
        det.make_config("maedet-m", "fcos", coco, profile=dict(bogus=1), work_dir=tmp_path)
    with pytest.raises(ValueError, match="head"):
        det.make_config("maedet-m", "ssd", coco, work_dir=tmp_path)


def test_retinanet_anchor_base_scale(coco, tmp_path):
    r = det.make_config("resnet50", "retinanet", coco, profile=TINY, work_dir=tmp_path)
    assert r.model.bbox_head.anchor_generator.octave_base_scale == 4  # mmdet's: 32-px anchors at stride 8
    r = det.make_config("resnet50", "retinanet", coco, profile=dict(TINY, anchor_base_scale=2), work_dir=tmp_path)
    assert r.model.bbox_head.anchor_generator.octave_base_scale == 2
    assert r.model.bbox_head.anchor_generator.scales_per_octave == 3
    # per head through the profile's heads table, as params.yaml sets it
    prof = dict(TINY, heads={"retinanet": {"anchor_base_scale": 2}})
    assert det.make_config("resnet50", "retinanet", coco, profile=prof,
                           work_dir=tmp_path).model.bbox_head.anchor_generator.octave_base_scale == 2
    det.make_config("resnet50", "fcos", coco, profile=prof, work_dir=tmp_path)  # other heads unaffected
    with pytest.raises(ValueError, match="RetinaNet setting"):
        det.make_config("resnet50", "fcos", coco, profile=dict(TINY, anchor_base_scale=2), work_dir=tmp_path)
    with pytest.raises(ValueError, match="between 0.5 and 16"):
        det.make_config("resnet50", "retinanet", coco, profile=dict(TINY, anchor_base_scale=1e9), work_dir=tmp_path)


def test_retinanet_group_norm_head(coco, tmp_path):
    from mmdet.registry import MODELS

    det._ensure_registered()
    plain = det.make_config("resnet50", "retinanet", coco, profile=TINY, work_dir=tmp_path)
    assert plain.model.bbox_head.get("norm_cfg") is None  # the bundled RetinaNet head has no norm layers
    gn = det.make_config("resnet50", "retinanet", coco, profile=dict(TINY, head_norm="GN"), work_dir=tmp_path)
    assert gn.model.bbox_head.norm_cfg["type"] == "GN"
    head = MODELS.build(gn.model).bbox_head
    norms = [m for m in head.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 2 * gn.model.bbox_head.stacked_convs  # one per tower conv, classification and box
    with pytest.raises(ValueError, match="RetinaNet setting"):
        det.make_config("resnet50", "gfl", coco, profile=dict(TINY, head_norm="GN"), work_dir=tmp_path)
    with pytest.raises(ValueError, match="head_norm must be"):
        det.make_config("resnet50", "retinanet", coco, profile=dict(TINY, head_norm="BN"), work_dir=tmp_path)


def test_ssdlite_reads_c4_c5_and_lays_anchors_out_for_the_input_size(coco, tmp_path):
    cfg = det.make_config("mobilenetv2-1.0", "ssdlite", coco, profile=dict(TINY, width_multiplier=1.0,
                          neck_channels=256, img_scale=(320, 320)), work_dir=tmp_path)
    # at full width and 320 px: the bundled SSDLite-MobileNetV2 (C4 96 and C5 1280 channels, its anchors)
    assert cfg.model.backbone.out_indices == (3, 4)
    assert tuple(cfg.model.neck.out_channels) == (96, 1280, 512, 256, 256, 128)
    ag = cfg.model.bbox_head.anchor_generator
    assert list(ag.strides) == [16, 32, 64, 107, 160, 320]
    assert list(ag.min_sizes) == [48, 100, 150, 202, 253, 304]
    small = det.make_config("mobilenetv2-1.0", "ssdlite", coco, profile=dict(TINY, img_scale=(160, 160)),
                            work_dir=tmp_path)
    ag = small.model.bbox_head.anchor_generator
    assert list(ag.strides) == [16, 32, 53, 80, 160, 160] and list(ag.min_sizes) == [24, 50, 75, 101, 126, 152]


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["fcos", "retinanet", "gfl", "yolof", "mask_rcnn", "scnet", "ssdlite"])
def test_detector_trains_and_evaluates(head, coco, tmp_path):
    bb = {"retinanet": "resnet50", "ssdlite": "mobilenetv2-0.5"}.get(head, "maedet-m")
    cfg = det.make_config(bb, head, coco, profile=TINY, seed=0, work_dir=tmp_path / head)
    tc = cfg.model.test_cfg.get("rcnn", cfg.model.test_cfg)
    tc.score_thr = 0.0  # keep every detection of the barely trained model, so CocoMetric computes numbers
    r = det.train(cfg)
    assert r["no_detections"] is False
    assert r["iterations"] == 2 and r["epochs"] == 1
    for k in ("AP", "AP50", "AP75"):
        assert isinstance(r[k], float) and 0.0 <= r[k] <= 100.0
    if head in ("mask_rcnn", "scnet"):
        assert isinstance(r["mask_AP"], float)
    assert r["images_per_second"] > 0 and r["train_seconds"] > 0
    s = scale_width(zoo.get(bb), TINY["width_multiplier"])
    assert r["backbone_macs"] == count(s, (96, 96)).macs
    assert r["detector_macs"] is None or r["detector_macs"] > 0
    assert r["detector_params"] > r["backbone_params"]
    # the kept detections of the first val images (what a report draws without the checkpoint)
    preds = r["val_predictions"]
    assert [p["file_name"] for p in preds] == ["0000.png", "0001.png", "0002.png"]
    for p in preds:
        assert len(p["boxes"]) <= det.PREDICTION_MAX_BOXES
        for x1, y1, x2, y2, score, label in p["boxes"]:
            assert x1 <= x2 and y1 <= y2 and det.PREDICTION_SCORE_THR <= score <= 1 and 0 <= label < len(CLASSES)
        scores = [b[4] for b in p["boxes"]]
        assert scores == sorted(scores, reverse=True)
    saved = json.loads((tmp_path / head / "results.json").read_text())
    assert saved["AP"] == r["AP"] and saved["head"] == head
    assert det.train(cfg) == saved  # a finished run is not repeated


def test_killed_training_resumes(coco, tmp_path):
    from mmengine.hooks import Hook
    from mmdet.registry import HOOKS

    class _Killed(Exception):
        pass

    @HOOKS.register_module(force=True)
    class CrashAfterFirstEpoch(Hook):
        def after_train_epoch(self, runner):  # runs after CheckpointHook (priority LOWEST)
            raise _Killed

    wd = tmp_path / "run"
    cfg = det.make_config("maedet-s", "fcos", coco, profile=dict(TINY, epochs=2), seed=0, work_dir=wd)
    crashing = copy.deepcopy(cfg)
    crashing.custom_hooks = [dict(type="CrashAfterFirstEpoch", priority="LOWEST")]
    with pytest.raises(_Killed):
        det.train(crashing)
    assert (wd / "epoch_1.pth").exists() and not (wd / "results.json").exists()
    r = det.train(cfg)
    assert r["resumed_from"].endswith("epoch_1.pth")
    assert r["start_iter"] == 2 and r["iterations"] == 4 and r["epochs"] == 2
    assert len(r["epoch_seconds"]) == 2  # the killed process's epoch is counted too


# --------------------------------------------------------------------------------------------------
# classification and pretrained init
# --------------------------------------------------------------------------------------------------
def test_classify_and_pretrained_init(cls_data, coco, tmp_path):
    from mmdet.registry import MODELS

    ck = tmp_path / "bb.pth"
    r = det.classify("maedet-s", cls_data, width_multiplier=0.125, epochs=2, batch_size=16, lr=0.05,
                     input_size=64, save_to=ck)
    assert 0.0 <= r["top1"] <= 100.0 and r["n_train"] == 48 and ck.exists()
    saved = torch.load(ck, map_location="cpu", weights_only=True)["state_dict"]
    _set_quiet()

    fresh = MAEDetBackbone("maedet-s", width_multiplier=0.125)
    fresh.init_weights()
    pre = MODELS.build(dict(type="MAEDetBackbone", structure="maedet-s", width_multiplier=0.125,
                            init_cfg=dict(type="Pretrained", checkpoint=str(ck))))
    pre.init_weights()
    sd = pre.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in saved.items())
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in saved.items() if v.is_floating_point())

    # through a detector config (what Table 7's pretrained runs use)
    cfg = det.make_config("maedet-s", "fcos", coco, profile=dict(TINY, width_multiplier=0.125),
                          work_dir=tmp_path / "d", pretrained=ck)
    det._ensure_registered()
    model = MODELS.build(cfg.model)
    model.init_weights()
    bsd = model.backbone.state_dict()
    assert all(torch.equal(bsd[k], v) for k, v in saved.items())

    # a checkpoint of another width fails loudly instead of mmengine's silent partial load
    bad = MAEDetBackbone("maedet-s", width_multiplier=0.25,
                         init_cfg=dict(type="Pretrained", checkpoint=str(ck)))
    with pytest.raises(ValueError, match="does not fit"):
        bad.init_weights()


def test_save_pretrained_round_trip(tmp_path):
    a = MAEDetBackbone("resnet50", width_multiplier=0.125)
    p = save_pretrained(a, tmp_path / "r.pth")
    b = MAEDetBackbone("resnet50", width_multiplier=0.125, init_cfg=dict(type="Pretrained", checkpoint=str(p)))
    _set_quiet()
    b.init_weights()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

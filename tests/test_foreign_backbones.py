"""SpineNet and DetNAS backbones in this project's detectors (Table 3): backbone specs, make_config, a real tiny
training of GFL with each, the FLOPs they record, specs in Runs and the ledger, and bad specs."""
import json
from dataclasses import asdict

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mmdet")

from maedet import detectors as det  # noqa: E402
from maedet import detnas as dn  # noqa: E402
from maedet import experiments as ex  # noqa: E402
from maedet import ledger  # noqa: E402
from maedet import spinenet as sn  # noqa: E402
from maedet.mmdet_backbone import resolve  # noqa: E402
from maedet.structure import StructureError  # noqa: E402


# the tiny profile of test_detectors: 2 iterations per epoch on the fixture
TINY = dict(img_scale=(96, 96), multiscale=(0.9, 1.0), batch_size=2, val_batch_size=2, epochs=1, lr=0.01,
            warmup_iters=2, width_multiplier=0.0625, neck_channels=16, speed_images=2, log_interval=1)
# ledger.digest(ex.detect_run("r", "resnet50", "fcos", 0, {"epochs": 2})) computed before specs were added:
# a structure run's digest must not depend on them
RESNET50_FCOS_DIGEST = "61334fed31a3a049"

SPINE = {"type": "SpineNet", "arch": "49"}
DETNAS = {"type": "DetNASBackbone", "arch": "300M", "path": list(dn.DETNAS_COCO_FPN_300M)}


def _set_quiet():
    from mmengine.logging import MMLogger

    MMLogger.get_instance("mmengine", log_level="WARNING")


# --------------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------------
def test_specs_canonical_and_names():
    assert det.backbone_spec("spinenet-96") == {"type": "SpineNet", "arch": "96"}
    assert det.backbone_spec({"type": "SpineNet", "arch": "SpineNet-49s"}) == {"type": "SpineNet", "arch": "49S"}
    d38 = det.backbone_spec("detnas-3.8g")
    assert d38 == {"type": "DetNASBackbone", "arch": "3.8G", "path": list(dn.DETNAS_COCO_FPN_3_8G)}
    assert det.backbone_spec({"type": "DetNASBackbone", "arch": "detnas-3.8g", "path": "DetNAS-COCO-FPN-3.8G"}) == d38
    assert det.backbone_spec(DETNAS) == det.backbone_spec("DetNAS-300M")
    assert det.backbone_spec(dict(SPINE, width_scale=1.0)) == SPINE  # the default is not stored
    assert det.backbone_spec(dict(SPINE, width_scale=0.5))["width_scale"] == 0.5
    assert det.spec_label(SPINE) == "spinenet-49" and det.spec_label("detnas-3.8g") == "detnas-3.8g"
    assert det.spec_label(dict(SPINE, width_scale=0.8)) == "spinenet-49-ws0.8"
    # zoo names and structures are untouched
    for s in ("resnet50", "maedet-m"):
        assert det.foreign_spec(s) is None and not det.is_foreign(s)
        assert ex.structure_dict(s)["name"] == s


def test_scaled_widths_keep_each_familys_shape():
    n = sn.SpineNet("96", width_multiplier=0.125, endpoints_num_filters=32)
    assert n.stem_filters == 8 and [n._filters(lv) for lv in range(2, 8)] == [8, 16, 32, 32, 32, 32]
    assert n.out_channels == 32 and n.strides == (8, 16, 32, 64, 128)
    assert sn.SpineNet("49").stem_filters == 64  # width 1: the published model
    for arch in ("300M", "1.3G", "3.8G"):
        for w in (0.03, 0.0625, 0.125, 0.3):
            sp = dn.scale_space(arch, w)
            assert all(c % 4 == 0 for c in sp.widths) and all(b > a for a, b in zip(sp.widths, sp.widths[1:]))
            assert sp.stage_blocks == dn.search_space(arch).stage_blocks
    assert dn.scale_space("3.8G", 0.125).widths == (8, 20, 56, 108, 216)
    assert dn.scale_space("300M", 1.0) is dn.search_space("300M")


def test_make_config_spinenet_and_detnas(coco, tmp_path):
    nc, w = TINY["neck_channels"], TINY["width_multiplier"]
    cfg = det.make_config(SPINE, "gfl", coco, profile=TINY, work_dir=tmp_path)
    bb = cfg.model.backbone
    assert bb.type == "SpineNet" and bb.arch == "49" and bb.width_multiplier == w and bb.endpoints_num_filters == nc
    assert cfg.model.neck is None
    assert cfg.model.bbox_head.in_channels == nc and cfg.model.bbox_head.feat_channels == nc
    assert list(cfg.model.bbox_head.anchor_generator.strides) == [8, 16, 32, 64, 128]
    assert "maedet.spinenet" in cfg.custom_imports.imports
    assert cfg.maedet["backbone"] == "spinenet-49" and cfg.maedet["backbone_spec"] == SPINE
    for head in ("fcos", "retinanet"):
        c = det.make_config("spinenet-49", head, coco, profile=TINY, work_dir=tmp_path)
        assert c.model.neck is None and c.model.bbox_head.in_channels == nc

    cfg = det.make_config(DETNAS, "gfl", coco, profile=TINY, work_dir=tmp_path)
    bb = cfg.model.backbone
    assert bb.type == "DetNASBackbone" and tuple(bb.out_indices) == (1, 2, 3) and bb.width_multiplier == w
    assert list(cfg.model.neck.in_channels) == list(dn.scale_space("300M", w).out_channels[1:])
    assert cfg.model.neck.start_level == 0 and cfg.model.neck.out_channels == nc
    # the structure path is as before
    s = det.make_config("resnet50", "gfl", coco, profile=TINY, work_dir=tmp_path)
    assert s.model.backbone.type == "MAEDetBackbone" and s.custom_imports.imports == ["maedet.mmdet_backbone"]
    assert "backbone_spec" not in s.maedet


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [SPINE, DETNAS], ids=["spinenet-49", "detnas-300m"])
def test_gfl_trains_and_records_backbone_costs(spec, coco, tmp_path):
    _set_quiet()
    cfg = det.make_config(spec, "gfl", coco, profile=TINY, seed=0, work_dir=tmp_path / "run")
    cfg.model.test_cfg.score_thr = 0.0  # keep every detection of the barely trained model
    r = det.train(cfg, speed=False)
    assert r["iterations"] == 2 and r["epochs"] == 1
    for k in ("AP", "AP50", "AP75"):
        assert isinstance(r[k], float) and 0.0 <= r[k] <= 100.0
    assert r["backbone_macs"] > 0 and r["backbone_params"] > 0
    assert r["detector_params"] > r["backbone_params"]
    assert r["detector_macs"] is None or r["detector_macs"] > r["backbone_macs"]
    assert "backbone_structure" not in r and r["backbone_spec"] == det.backbone_spec(spec)
    w = TINY["width_multiplier"]
    if spec["type"] == "SpineNet":
        c = sn.backbone_complexity((96, 96), "49", width_multiplier=w, endpoints_num_filters=TINY["neck_channels"])
        assert (r["backbone_macs"], r["backbone_params"]) == (c["macs"], c["params"])
    else:
        sp = dn.scale_space("300M", w)
        assert r["backbone_macs"] == dn.path_flops(spec["path"], sp, (96, 96))
        assert r["backbone_params"] == dn.path_params(spec["path"], sp)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["AP"] == r["AP"] and saved["backbone_macs"] == r["backbone_macs"]
    assert det.train(cfg) == saved  # recorded: not repeated


def test_detnas_recorded_macs_are_torch_conv_macs(torch_conv_macs):
    w = 0.125
    cfg, in_ch, _ = det.foreign_backbone_cfg(DETNAS, w, 32)
    net = dn.DetNASBackbone(**{k: v for k, v in cfg.items() if k != "type"}).eval()
    assert det.foreign_backbone_cost(cfg, (64, 96))["macs"] == torch_conv_macs(net, torch.zeros(1, 3, 64, 96))
    assert in_ch == net.out_channels


# --------------------------------------------------------------------------------------------------
# runs and the ledger
# --------------------------------------------------------------------------------------------------
def test_specs_in_runs_and_ledger_digests():
    prof = {"epochs": 2}
    a = ex.detect_run("s", "spinenet-96", "gfl", 0, prof)
    b = ex.detect_run("s", {"type": "SpineNet", "arch": "96"}, "gfl", 0, prof)
    assert a.backbone == b.backbone == {"type": "SpineNet", "arch": "96"}
    assert ledger.digest(a) == ledger.digest(b) == ledger.digest(a)
    # the worker's round trip (run_all passes the run as JSON)
    back = ex.Run(**json.loads(json.dumps(asdict(a))))
    assert ledger.digest(back) == ledger.digest(a) and back.id == a.id
    d = ex.detect_run("d", "detnas-3.8g", "gfl", 0, prof)
    assert d.backbone["path"] == list(dn.DETNAS_COCO_FPN_3_8G)
    assert ledger.digest(d) == ledger.digest(ex.detect_run("d", dict(d.backbone), "gfl", 0, prof))
    assert ledger.digest(d) != ledger.digest(a)
    assert ledger.digest(ex.detect_run("s", dict(a.backbone, width_scale=0.8), "gfl", 0, prof)) != ledger.digest(a)
    assert ex.backbone_digest(a.backbone) == ex.backbone_digest(b.backbone) != ex.backbone_digest(d.backbone)


def test_structure_run_digest_unchanged():
    assert ledger.digest(ex.detect_run("r", "resnet50", "fcos", 0, {"epochs": 2})) == RESNET50_FCOS_DIGEST


# --------------------------------------------------------------------------------------------------
# bad specs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [
    ({"type": "EfficientNet", "arch": "b0"}, "unknown backbone spec type 'EfficientNet'"),
    ({"type": "SpineNet", "arch": "50"}, "unknown SpineNet arch '50'"),
    ({"type": "SpineNet"}, "needs an 'arch'"),
    ({"type": "SpineNet", "arch": "49", "depth": 3}, "unknown SpineNet spec key"),
    ({"type": "SpineNet", "arch": "49", "width_scale": 0}, "width_scale must be a positive number"),
    ({"type": "DetNASBackbone", "arch": "2G", "path": [0] * 20}, "unknown DetNAS arch '2G'"),
    ({"type": "DetNASBackbone", "arch": "300M", "path": [0] * 19}, "path has 19 choices"),
    ({"type": "DetNASBackbone", "arch": "3.8G", "path": list(dn.DETNAS_COCO_FPN_300M)}, "path has 20 choices"),
    ({"type": "DetNASBackbone", "arch": "300M", "path": [4] * 20}, "out of range"),
    ({"type": "DetNASBackbone", "arch": "300M"}, "needs a 'path'"),
    ("spinenet-50", "unknown backbone 'spinenet-50'"),
])
def test_bad_spec_raises_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        det.backbone_spec(bad)
    with pytest.raises(ValueError, match=match):
        ex.detect_run("x", bad, "gfl", 0, {})


def test_unsupported_head_pretrained_and_structure_only_paths(coco, tmp_path):
    for head in ("yolof", "mask_rcnn", "ssdlite"):
        with pytest.raises(ValueError, match="gfl, fcos, retinanet"):
            det.make_config("spinenet-49", head, coco, profile=TINY, work_dir=tmp_path)
    with pytest.raises(ValueError, match="pretrained init is for structure backbones"):
        det.make_config(DETNAS, "gfl", coco, profile=TINY, work_dir=tmp_path, pretrained=tmp_path / "x.pth")
    for spec in (SPINE, "spinenet-96", DETNAS):
        with pytest.raises(StructureError, match="is a backbone spec"):
            resolve(spec)
    with pytest.raises(ValueError, match="structure backbones"):
        ex.classify_run("s", SPINE, 0, {})

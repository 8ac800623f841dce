"""The released code's structure files (tests/data/released/, copied from the authors' repository) and
``maedet convert`` / ``maedet config``."""
import ast
import json
from pathlib import Path

import pytest

from maedet import released, zoo
from maedet.cli import main
from maedet.structure import depth_to_paper_layers

DATA = Path(__file__).parent / "data" / "released"
SIZES = ("s", "m", "l")


@pytest.mark.parametrize("v", SIZES)
@pytest.mark.parametrize("suffix", ["", "_v1"])
def test_released_files_are_the_zoo_structures(v, suffix):
    s = released.load(DATA / f"maedet_{v}{suffix}.txt")
    assert s.key() == zoo.get(f"maedet-{v}").key()


@pytest.mark.parametrize("v", SIZES)
def test_L_counts_bottlenecks_paper_layers_are_half(v):
    blocks = released.parse((DATA / f"maedet_{v}.txt").read_text())
    s = zoo.get(f"maedet-{v}")
    for raw, b in zip(blocks[1:], s.blocks[1:]):
        assert b.depth == raw["L"] * released.UNITS_PER_L
        assert depth_to_paper_layers(b.type, b.depth) * 2 == raw["L"]  # paper "# layers = L" is 2L there
    assert [b["L"] for b in blocks[1:]] == {"m": [2, 10, 10, 8]}.get(v, [b["L"] for b in blocks[1:]])


@pytest.mark.parametrize("v", SIZES)
def test_round_trip(v, tmp_path):
    v1 = (DATA / f"maedet_{v}_v1.txt").read_text()
    s = released.load(DATA / f"maedet_{v}_v1.txt")
    assert released.dumps(s, "released-v1") == v1  # byte for byte
    orig = ast.literal_eval((DATA / f"maedet_{v}.txt").read_text())
    text = released.dumps(s, "released")
    assert ast.literal_eval(text) == orig == json.loads(text)
    # through the CLI: released -> ours -> released
    ours, back = tmp_path / "ours.json", tmp_path / "back.txt"
    assert main(["convert", str(DATA / f"maedet_{v}.txt"), "--out", str(ours)]) == 0
    assert json.loads(ours.read_text())["blocks"] == zoo.get(f"maedet-{v}").to_dict()["blocks"]
    assert main(["convert", str(ours), "--to", "released", "--out", str(back)]) == 0
    assert ast.literal_eval(back.read_text()) == orig


def test_search_output_forms(tmp_path):
    blocks = released.to_blocks(zoo.get("maedet-m"))
    nas_info = tmp_path / "nas_info.txt"
    nas_info.write_text(repr({"structure": blocks, "acc": 1.0}))
    export = tmp_path / "best_structure.json"
    export.write_text(json.dumps({"space_arch": "CnnNet", "best_structures": [blocks, blocks[:3]]}, indent=2))
    assert released.load(nas_info).key() == zoo.get("maedet-m").key()
    assert released.load_any(export).key() == zoo.get("maedet-m").key()
    assert len(released.load(export, index=1).blocks) == 3


def test_structure_commands_accept_released_files(capsys):
    assert main(["flops", str(DATA / "maedet_m.txt"), "--resolution", "1280x800", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["flops", "maedet-m", "--resolution", "1280x800", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["macs"] == b["macs"] and a["params"] == b["params"]


@pytest.mark.parametrize("text,msg", [
    ("[{'class': 'SuperResK1DWK1', 'in': 3, 'out': 8, 's': 2, 'k': 3, 'L': 1, 'btn': 8}]", "unsupported block class"),
    ("[{'class': 'ConvKXBNRELU', 'in': 3, 'out': 8, 's': 2}]", "missing field 'k'"),
    ("[{'class': 'ConvKXBNRELU', 'in': 3, 'out': 8, 's': 2, 'k': 3, 'g': 2}]", "field 'g'"),
    ("[{'class': 'ConvKXBNRELU', 'in': 3, 'out': 8, 's': 2, 'k': 3}, "
     "{'class': 'SuperResK1KXK1', 'in': 16, 'out': 8, 's': 2, 'k': 3, 'L': 1, 'btn': 8}]", "in_channels"),
    ("[{'class': 'ConvKXBNRELU', 'in': __import__('os').getpid()}]", "not a JSON or Python-literal"),
    ("{'best_structures': []}", "non-empty"),
])
def test_malformed_files_one_line_exit_2(tmp_path, capsys, text, msg):
    f, out = tmp_path / "bad.txt", tmp_path / "out.json"
    f.write_text(text)
    assert main(["convert", str(f), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_to_released_rejects_what_it_cannot_express(capsys):
    assert main(["convert", "resnet50", "--to", "released"]) == 2
    assert "no released equivalent" in capsys.readouterr().err


def test_config_trains_one_iteration(tmp_path):
    pytest.importorskip("mmdet")
    np = pytest.importorskip("numpy")
    from mmengine.config import Config
    from mmengine.runner import Runner
    from PIL import Image

    from maedet import detectors as det
    from maedet.mmdet_backbone import neck_in_channels

    cfg_file = tmp_path / "gfl_maedet_s.py"
    assert main(["config", str(DATA / "maedet_s.txt"), "--head", "gfl", "--out", str(cfg_file)]) == 0
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.backbone.type == "MAEDetBackbone"
    assert cfg.model.neck.in_channels == neck_in_channels("maedet-s", (2, 3, 4)) == [272, 1024, 2048]

    # a two-image COCO set (the test's data, not the writer's defaults)
    root = tmp_path / "coco"
    (root / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(2):
        img = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
        img[10:40, 12:44] = 200
        Image.fromarray(img).save(root / "train" / f"{i}.png")
        images.append(dict(id=i + 1, file_name=f"{i}.png", height=64, width=64))
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=1, bbox=[12.0, 10.0, 32.0, 30.0], area=960,
                         iscrowd=0))
    (root / "annotations" / "train.json").write_text(json.dumps(
        dict(images=images, annotations=anns, categories=[dict(id=1, name="box")])))
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0, persistent_workers=False, sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dict(type="CocoDataset", data_root=f"{root}/", ann_file="annotations/train.json",
                     data_prefix=dict(img="train/"), metainfo=dict(classes=("box",)),
                     pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
                               dict(type="Resize", scale=(64, 64), keep_ratio=True), dict(type="PackDetInputs")]))
    cfg.model.bbox_head.num_classes = 1
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=1, val_interval=2)
    for k in ("val_dataloader", "val_evaluator", "val_cfg", "test_dataloader", "test_evaluator", "test_cfg"):
        cfg[k] = None
    cfg.work_dir = str(tmp_path / "work")
    cfg.log_level = "WARNING"
    det._ensure_registered()
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1


@pytest.mark.parametrize("head", ["retinanet", "fcos", "gfl", "yolof", "mask-rcnn"])
def test_config_every_head_fills_the_neck(head, tmp_path):
    pytest.importorskip("mmdet")
    from mmengine.config import Config

    from maedet.mmdet_backbone import neck_in_channels
    from maedet.structure import Structure

    out = tmp_path / "c.py"
    assert main(["config", str(DATA / "maedet_l_v1.txt"), "--head", head, "--out", str(out)]) == 0
    cfg = Config.fromfile(str(out))
    idx = tuple(cfg.model.backbone.out_indices)
    ch = neck_in_channels("maedet-l", idx)
    assert cfg.model.neck.in_channels == (ch[0] if head == "yolof" else ch)
    assert Structure.from_dict(cfg.model.backbone.structure.to_dict()).key() == zoo.get("maedet-l").key()


def test_search_init_accepts_a_released_file(tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--init", str(DATA / "maedet_s.txt"), "--population", "4", "--iterations", "3",
                 "--budget-layers", "200", "--no-progress", "--out", str(out)]) == 0
    assert (out / "best.json").exists()

"""DetNAS's three search steps (maedet.detnas_search) on a tiny search space: path-wise supernet pre-training
that saves a checkpoint the detector's supernet loads, path sampling inside the detector, and the whole
pipeline end to end, resumed from its fitness cache."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mmdet")

from maedet import detnas as dn  # noqa: E402
from maedet import detnas_search as ds  # noqa: E402

SPACE = dict(stage_blocks=[1, 1, 2, 1], widths=[8, 16, 32, 64, 128])
TINY = dict(img_scale=(96, 96), multiscale=(0.9, 1.0), batch_size=2, val_batch_size=2, epochs=1, lr=0.01,
            warmup_iters=2, width_multiplier=0.5, neck_channels=16, speed_images=2, log_interval=1)
CLS = dict(epochs=1, batch_size=16, lr=0.05, input_size=32, eval_paths=2, bn_images=32)
EA = dict(population=4, generations=2, topk=2, mutation_num=1, crossover_num=1)


@pytest.fixture(scope="module")
def cls_dir(tmp_path_factory):
    """A 2-class classification set (dark vs bright 16 px images), as maedet data writes digits_cls."""
    root = tmp_path_factory.mktemp("cls")
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("val", 16)):
        labels = np.arange(n) % 2
        images = (rng.integers(0, 80, (n, 3, 16, 16)) + 150 * labels[:, None, None, None]).astype(np.uint8)
        np.savez(root / f"{split}.npz", images=images, labels=labels.astype(np.int64))
    return root


def test_pretrain_supernet_saves_what_the_detector_supernet_loads(cls_dir, coco, tmp_path):
    ck = tmp_path / "supernet.pth"
    res = ds.pretrain_supernet(SPACE, cls_dir, width_multiplier=0.5, save_to=ck, **CLS)
    assert len(res["train_loss"]) == 1 and np.isfinite(res["train_loss"][0])
    assert len(res["path_top1"]) == 2 and all(0 <= t["top1"] <= 100 for t in res["path_top1"])
    assert all(len(t["path"]) == 5 for t in res["path_top1"])
    sd = torch.load(ck, map_location="cpu")["state_dict"]
    cfg = ds.supernet_config(SPACE, "gfl", coco, profile=TINY, work_dir=tmp_path / "ft", width_scale=1.0,
                             pretrained=ck)
    bb = cfg.model.backbone
    assert bb.type == "DetNASSupernet" and bb.sample is True and bb.init_cfg["checkpoint"] == str(ck)
    assert cfg.train_cfg.val_begin > cfg.train_cfg.max_epochs
    from mmdet.registry import MODELS

    model = MODELS.build(cfg.model)
    model.init_weights()
    own = model.backbone.state_dict()
    assert set(own) == set(sd)
    for k in ("stem.conv.weight", "blocks.2.3.branch_proj.0.weight", "blocks.4.1.branch_main.0.weight"):
        assert torch.equal(own[k], sd[k]), k


def test_pretrain_rejects_bad_settings(cls_dir):
    with pytest.raises(ValueError, match="epochs"):
        ds.pretrain_supernet(SPACE, cls_dir, **dict(CLS, epochs=0))
    with pytest.raises(ValueError, match="eval_paths"):
        ds.pretrain_supernet(SPACE, cls_dir, **dict(CLS, eval_paths=1.5))


def test_detector_supernet_draws_a_path_per_training_forward(coco, tmp_path):
    cfg = ds.supernet_config(SPACE, "gfl", coco, profile=TINY, seed=3, work_dir=tmp_path)
    from mmdet.registry import MODELS

    model = MODELS.build(cfg.model)
    model.train()
    x = torch.zeros(1, 3, 64, 64)
    paths = set()
    for _ in range(6):
        model.extract_feat(x)
        paths.add(model.backbone.last_path)
    ref = dn.DetNASSupernet(arch=SPACE, seed=3)
    assert len(paths) > 1 and set(paths) <= {ref.sample_path() for _ in range(6)}


def test_three_steps_end_to_end_and_resumed_from_the_fitness_cache(cls_dir, coco, tmp_path):
    space = dn.scale_space(SPACE, 0.5)
    budget = dn.path_flops([3] * 5, space, (96, 96))  # every path fits
    kw = dict(arch=SPACE, head="gfl", profile=TINY, classify=CLS, flops_budget=budget, ea=EA, seed=0,
              bn_batches=1, classification_dir=cls_dir)
    res = ds.run(tmp_path, coco, **kw)
    assert set(res) == {"pretrain", "finetune", "search"}
    ft, se = res["finetune"], res["search"]
    assert ft["epochs"] == 1 and ft["iterations"] == 2 and ft["train_seconds"] > 0
    assert se["evaluated"] == 8 and se["new_this_process"] == 8 and se["best_macs"] <= budget
    assert len(se["best_path"]) == 5 and 0 <= se["best_ap"] <= 100
    assert [g["generation"] for g in se["generations"]] == [0, 1]
    cache = (tmp_path / "search" / "fitness.jsonl").read_text().splitlines()
    assert len(cache) == 8
    assert max(json.loads(line)["ap"] for line in cache) == se["best_ap"]
    # a kill during the search: the rerun replays the cached fitnesses, evaluates nothing new, finds the same;
    # a record measured on another checkpoint is not replayed
    with (tmp_path / "search" / "fitness.jsonl").open("a") as f:
        f.write(json.dumps(dict(path=[0] * 5, ap=999.0, seconds=1.0, checkpoint="other.pth", bn_batches=1)) + "\n")
    (tmp_path / "search" / "result.json").unlink()
    again = ds.run(tmp_path, coco, **kw)["search"]
    assert again["new_this_process"] == 0 and again["best_path"] == se["best_path"]
    assert again["eval_seconds_total"] == se["eval_seconds_total"] and again["best_ap"] < 999
    # a budget below every path is refused before anything is evaluated
    (tmp_path / "search" / "result.json").unlink()
    with pytest.raises(ValueError, match="admits no path|flops_budget"):
        ds.run(tmp_path, coco, **dict(kw, flops_budget=10))


def test_found_backbone_reads_the_benchmark_json(tmp_path):
    from maedet.detnas import search_space

    n = search_space("3.8G").num_blocks
    f = tmp_path / "detnas_search.json"
    path = [i % 4 for i in range(n)]
    f.write_text(json.dumps({"found_spec": {"type": "DetNASBackbone", "arch": "3.8G", "path": path,
                                            "width_scale": 0.93}, "total_seconds": 1.0}))
    spec = ds.resolve_backbone({"found": str(f)})
    assert spec == {"type": "DetNASBackbone", "arch": "3.8G", "path": path, "width_scale": 0.93}
    assert ds.resolve_backbone("resnet50") == "resnet50"
    with pytest.raises(FileNotFoundError, match="bench_detnas"):
        ds.found_backbone(tmp_path / "absent.json")
    with pytest.raises(ValueError, match="only the key"):
        ds.resolve_backbone({"found": str(f), "width_scale": 1})
    f.write_text(json.dumps({"found_spec": {"type": "DetNASBackbone", "arch": "3.8G", "path": path[:-1]}}))
    with pytest.raises(ValueError, match="choices"):
        ds.found_backbone(f)
    f.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        ds.found_backbone(f)

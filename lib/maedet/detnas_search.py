"""DetNAS's three search steps at this project's reduced scale, timed: what a training-based detection NAS
costs on the machine where MAE-DET's zero-shot search takes seconds (Table 2, "measured here").

DetNAS (Chen et al., NeurIPS 2019, Sec. 3-4) finds a detection backbone in three steps, each a training or
evaluation job on a one-shot supernet (:class:`maedet.detnas.DetNASSupernet`):

1. :func:`pretrain_supernet` -- supernet pre-training on the classification set (ImageNet in DetNAS, the
   digits classification set here, the stand-in of every "ImageNet" column of this project), path-wise:
   each iteration draws one path uniformly and trains only its choice blocks. The classifier is global
   average pooling + a linear layer on C5 (as :func:`maedet.detectors.classify`; DetNAS's ImageNet supernet
   adds a 1x1 conv to 1024 channels first). Its quality is reported as the val top-1 of a few random paths,
   each after its BN statistics are recomputed.
2. :func:`finetune_supernet` -- supernet fine-tuning on the detection set inside the detector (GFL here, the
   Table 3 head), path-wise again, initialised from step 1, with the training protocol's schedule
   (mmengine's Runner; resumes after a kill).
3. :func:`search_paths` -- DetNAS's evolutionary search (:func:`maedet.detnas.evolution_search`) over the
   fine-tuned supernet: the fitness of a path is its val AP after :func:`maedet.detnas.recalibrate_bn` on
   training batches, the FLOPs constraint MAE-DET-M's backbone MACs at the same reduced scale. Every
   evaluated path is appended to a JSONL cache, so a killed search replays the cached fitnesses (the EA is
   deterministic given its seed) and continues.

:func:`run` chains the three steps in one work directory and returns their wall times beside the found
path (``benchmarks/bench_detnas.py`` writes that into ``benchmarks/detnas_search.json``). The reduction is
large (a small classification set, 160-px detection images, x1/8 widths, a 100-path search instead of
DetNAS's 1,000), and every reduction shortens DetNAS's cost, so MAE-DET's search at the paper's own settings
divided by this DetNAS cost overstates MAE-DET's share: the measured fraction is an upper bound of the one at
equal scale.

:func:`found_backbone` reads the found path back from that JSON as a backbone spec (Table 3's "DetNAS searched
here" row, retrained from scratch like every other backbone).
"""
from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import time
from pathlib import Path

__all__ = ["EA_REDUCED", "pretrain_supernet", "supernet_config", "finetune_supernet", "search_paths", "run",
           "found_backbone", "resolve_backbone"]

#: The EA at the reduced scale: DetNAS's algorithm and mutation / crossover proportions (20 + 20 of 50) on a
#: population of 20 for 5 generations (100 evaluated paths; DetNAS evaluates 50 x 20 = 1,000).
EA_REDUCED = dict(population=20, generations=5, topk=5, mutation_num=8, crossover_num=8, mutation_prob=0.1)


def _supernet(arch, width_multiplier: float, seed: int, out_indices):
    from .detnas import DetNASSupernet

    return DetNASSupernet(arch=arch, sample=True, seed=seed, out_indices=out_indices,
                          width_multiplier=float(width_multiplier))


def pretrain_supernet(arch, data_dir: str | Path, *, width_multiplier: float = 0.125, epochs: int = 6,
                      batch_size: int = 128, lr: float = 0.1, weight_decay: float = 4e-5, input_size: int = 64,
                      seed: int = 0, threads: int = 1, max_train: int | None = None, eval_paths: int = 3,
                      bn_images: int = 500, save_to: str | Path | None = None) -> dict:
    """Step 1: path-wise supernet pre-training on a classification set (``data_dir`` as
    :func:`maedet.detectors.classify` reads it), with that function's recipe (SGD momentum 0.9, Nesterov,
    cosine LR, 4-px translations, images upsampled to ``input_size``). Returns the per-epoch train loss, the
    training seconds, and the val top-1 (%) of ``eval_paths`` random paths (drawn from ``seed + 1``), each
    after its BN statistics are recomputed on the first ``bn_images`` training images. ``save_to`` writes
    the supernet (``{'state_dict', 'meta'}``, keys of :class:`maedet.detnas.DetNASSupernet`) for an mmengine
    ``Pretrained`` init."""
    import numpy as np
    import torch
    from torch import nn

    from .detectors import _ensure_registered, classification_data, classification_prep, train_classifier
    from .detnas import NUM_CHOICES, recalibrate_bn

    _ensure_registered()
    for name, v in dict(epochs=epochs, batch_size=batch_size, input_size=input_size, eval_paths=eval_paths,
                        bn_images=bn_images).items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    torch.manual_seed(seed)
    torch.set_num_threads(int(threads))
    xtr, ytr, xva, yva = classification_data(data_dir, max_train)
    g = torch.Generator().manual_seed(seed)
    prep = classification_prep(input_size, True, g)
    net = _supernet(arch, width_multiplier, seed, out_indices=(3,))
    n_cls = int(max(int(ytr.max()), int(yva.max())) + 1)
    head = nn.Linear(net.space.out_channels[-1], n_cls)
    # a new path per iteration (the supernet samples in train mode); unused choices get no gradient
    losses, train_s = train_classifier(net, head, xtr, ytr, prep, g, epochs=epochs, batch_size=batch_size, lr=lr,
                                       weight_decay=weight_decay)

    t1 = time.perf_counter()
    rng = np.random.default_rng(seed + 1)
    n = net.space.num_blocks
    bn_n = min(len(xtr), bn_images)
    bn_x = [prep(xtr[i:min(i + batch_size, bn_n)]) for i in range(0, bn_n, batch_size)]
    top1 = []
    for _ in range(eval_paths):
        path = tuple(int(c) for c in rng.integers(0, NUM_CHOICES, n))
        recalibrate_bn(net, path, bn_x)
        net.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(xva), 256):
                logits = head(net(prep(xva[i:i + 256]), path=path)[-1].mean((2, 3)))
                correct += int((logits.argmax(1) == yva[i:i + 256]).sum())
        top1.append(dict(path=list(path), top1=round(100.0 * correct / len(xva), 2)))
    net.set_path(None)
    res = dict(step="supernet pre-training (classification)", arch=net.space.name, epochs=epochs,
               width_multiplier=width_multiplier, input_size=input_size, n_train=int(len(xtr)), n_val=int(len(xva)),
               seed=seed, train_loss=losses, train_seconds=round(train_s, 1),
               eval_seconds=round(time.perf_counter() - t1, 1), path_top1=top1,
               mean_top1=round(sum(t["top1"] for t in top1) / len(top1), 2))
    if save_to is not None:
        save_to = Path(save_to)
        save_to.parent.mkdir(parents=True, exist_ok=True)
        tmp = save_to.with_name(save_to.name + ".tmp")
        torch.save({"state_dict": net.state_dict(), "meta": {k: res[k] for k in ("arch", "width_multiplier",
                                                                              "mean_top1")}}, tmp)
        tmp.replace(save_to)
        res["checkpoint"] = str(save_to)
    return res


def supernet_config(arch, head: str, data_root: str | Path, *, profile: dict | None = None, seed: int = 0,
                    work_dir: str | Path = "work_dirs/detnas/finetune", width_scale: float = 1.0,
                    pretrained: str | Path | None = None, dataset: str = "digits"):
    """The detector config of step 2: :func:`maedet.detectors.make_config` for a DetNAS spec of ``arch`` (at
    the profile's width x ``width_scale``), its backbone turned into a path-sampling
    :class:`maedet.detnas.DetNASSupernet` (seeded with ``seed``; eval runs its all-zero path unless another
    is set) initialised from ``pretrained`` (step 1's checkpoint), with no evaluation during training (the
    supernet has no single path to evaluate)."""
    from .detectors import make_config
    from .detnas import search_space

    space = search_space(arch)
    spec = dict(type="DetNASBackbone", arch=arch, path=[0] * space.num_blocks)
    if float(width_scale) != 1.0:
        spec["width_scale"] = float(width_scale)
    cfg = make_config(spec, head, data_root, profile=profile, seed=seed, work_dir=work_dir, dataset=dataset)
    bb = cfg.model.backbone
    bb.type = "DetNASSupernet"
    bb.sample = True
    bb.seed = int(seed)
    if pretrained is not None:
        bb.init_cfg = dict(type="Pretrained", checkpoint=str(pretrained))
    cfg.train_cfg.val_interval = int(cfg.train_cfg.max_epochs) + 1
    cfg.train_cfg.val_begin = int(cfg.train_cfg.max_epochs) + 1  # mmengine would still evaluate the last epoch
    cfg.maedet["backbone"] = f"detnas-supernet-{space.name.lower()}"
    cfg.maedet["supernet"] = dict(arch=arch if isinstance(arch, str) else space.name, width_scale=float(width_scale),
                                  pretrained=None if pretrained is None else str(pretrained))
    return cfg


def finetune_supernet(cfg) -> dict:
    """Step 2: train the supernet detector of :func:`supernet_config` with mmengine's Runner (resuming from
    the last epoch checkpoint of its work_dir). Returns the training seconds (summed over epochs, across
    resumes), per-epoch mean losses, iterations, epochs and the final checkpoint."""
    import torch
    from mmengine.runner import Runner, find_latest_checkpoint

    from .detectors import _ensure_registered, _hooks

    _ensure_registered()
    torch.set_num_threads(int(cfg.maedet["profile"]["threads"]))
    cfg = copy.deepcopy(cfg)
    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt = find_latest_checkpoint(str(work_dir))
    cfg.resume, cfg.load_from = bool(ckpt), ckpt
    runner = Runner.from_cfg(cfg)
    timer, epoch_loss, _ = _hooks(work_dir)
    runner.register_hook(timer, priority="NORMAL")
    runner.register_hook(epoch_loss, priority="NORMAL")
    t0 = time.perf_counter()
    runner.train()
    hub = runner.message_hub
    final = work_dir / f"epoch_{runner.epoch}.pth"
    return dict(step="supernet fine-tuning (detection)", head=cfg.maedet["head"], epochs=int(runner.epoch),
                iterations=int(runner.iter), train_seconds=round(float(sum(hub.get_info("maedet/epoch_seconds", []))), 1),
                train_seconds_this_process=round(time.perf_counter() - t0, 1),
                epoch_losses=list(hub.get_info("maedet/epoch_losses", [])), resumed_from=ckpt, checkpoint=str(final))


def search_paths(cfg, checkpoint: str | Path, *, flops_budget: float, ea: dict | None = None, seed: int = 0,
                 bn_batches: int = 16, cache: str | Path | None = None, progress: bool = True) -> dict:
    """Step 3: DetNAS's EA over the fine-tuned supernet (``cfg`` of :func:`supernet_config`, weights from
    ``checkpoint``). Fitness: val AP (%) of a path after its BN statistics (backbone, neck and head) are
    recomputed on ``bn_batches`` training batches; constraint: the path's backbone MACs
    (:func:`maedet.detnas.path_flops` on the scaled space at the profile's image size) <= ``flops_budget``.
    ``cache`` (JSONL) keeps every evaluated path's fitness with the checkpoint and BN batches it was
    measured with: a rerun on the same ones replays them and evaluates only new paths (records of another
    checkpoint are ignored). Returns the EA's result (best path, its AP and MACs, per-generation best) and the seconds spent
    evaluating (this process and in total over reruns)."""
    import torch
    from mmengine.runner import Runner

    from .detectors import _ensure_registered
    from .detnas import evolution_search, recalibrate_bn, scale_space

    _ensure_registered()
    settings = dict(EA_REDUCED, **(ea or {}))
    torch.set_num_threads(int(cfg.maedet["profile"]["threads"]))
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(Path(cfg.work_dir).parent / "search")
    cfg.load_from, cfg.resume = str(checkpoint), False
    p = cfg.maedet["profile"]
    w, h = (int(v) for v in p["img_scale"])
    bb = cfg.model.backbone
    space = scale_space(bb["arch"], float(bb.get("width_multiplier", 1.0)))
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    model = runner.model
    cache = Path(cache) if cache is not None else Path(cfg.work_dir) / "fitness.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    known = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("checkpoint") == str(checkpoint) and rec.get("bn_batches") == int(bn_batches):
                    known[tuple(rec["path"])] = rec
    spent = dict(new=0, seconds=0.0)

    def fitness(path):
        key = tuple(int(c) for c in path)
        if key in known:
            return known[key]["ap"]
        t0 = time.perf_counter()
        recalibrate_bn(model, key, itertools.islice(iter(runner.train_dataloader), int(bn_batches)))
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its summary table
            metrics = runner.val_loop.run()
        ap = round(100.0 * float(metrics.get("coco/bbox_mAP", 0.0)), 2)
        sec = time.perf_counter() - t0
        rec = dict(path=list(key), ap=ap, seconds=round(sec, 2), checkpoint=str(checkpoint),
                   bn_batches=int(bn_batches))
        with cache.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        known[key] = rec
        spent["new"] += 1
        spent["seconds"] += sec
        if progress:
            print(f"[detnas search] path {len(known)}: AP {ap:.2f} ({sec:.1f} s)", flush=True)
        return ap

    res = evolution_search(fitness, space, flops_budget=float(flops_budget), resolution=(h, w), seed=seed,
                           **settings)
    evaluated = [tuple(c.path) for c in res.evaluated]
    return dict(step="evolutionary search (val AP after BN recalibration)", ea=settings, seed=seed,
                bn_batches=int(bn_batches), flops_budget=int(flops_budget), resolution=[h, w],
                best_path=list(res.best_path), best_ap=res.best_fitness, best_macs=int(res.best_flops),
                evaluated=len(evaluated), new_this_process=spent["new"],
                seconds_this_process=round(spent["seconds"], 1),
                eval_seconds_total=round(sum(known[p]["seconds"] for p in evaluated), 1),
                generations=[dict(generation=h_["generation"], best_ap=h_["best_fitness"],
                                  best_so_far_ap=h_["best_so_far_fitness"]) for h_ in res.history],
                top_k=[dict(path=list(c.path), ap=c.fitness, macs=int(c.flops)) for c in res.top_k])


def run(work_dir: str | Path, data_root: str | Path = "data", *, arch="3.8G", width_scale: float = 1.0,
        head: str = "gfl", profile: dict | None = None, classify: dict | None = None,
        flops_budget: float, ea: dict | None = None, seed: int = 0, bn_batches: int = 16,
        classification_dir: str | Path | None = None) -> dict:
    """The three steps in ``work_dir`` (``pretrain/``, ``finetune/``, ``search/``), each skipped when its
    ``result.json`` is there (a killed run continues with the step it was in). ``profile`` is the detection
    profile (steps 2 and 3), ``classify`` the classification one (step 1: keys of
    :func:`pretrain_supernet`; its data ``classification_dir``, default ``data_root/digits_cls``). Returns the
    three steps' results."""
    from .detectors import _write_json, resolve_profile
    from .detnas import block_flops_table, scale_space

    work_dir = Path(work_dir)
    p = resolve_profile(profile, head)
    # a budget no path meets is refused before hours of training, not after
    w, h = (int(v) for v in p["img_scale"])
    stem, table = block_flops_table(scale_space(arch, p["width_multiplier"] * float(width_scale)), (h, w))
    smallest = stem + sum(min(row) for row in table)
    if not float(flops_budget) >= smallest:
        raise ValueError(f"flops_budget={flops_budget!r} MACs admits no path of the search space at {h}x{w} (the "
                         f"smallest path has {smallest} MACs)")
    cls = dict(classify or {})
    out = {}
    r1 = work_dir / "pretrain" / "result.json"
    if not r1.exists():
        cls.setdefault("width_multiplier", p["width_multiplier"] * float(width_scale))
        res = pretrain_supernet(arch, classification_dir or Path(data_root) / "digits_cls", seed=seed,
                                save_to=work_dir / "pretrain" / "supernet.pth", **cls)
        _write_json(r1, res)
    out["pretrain"] = json.loads(r1.read_text())
    cfg = supernet_config(arch, head, data_root, profile=profile, seed=seed, work_dir=work_dir / "finetune",
                          width_scale=width_scale, pretrained=out["pretrain"]["checkpoint"])
    r2 = work_dir / "finetune" / "result.json"
    if not r2.exists():
        _write_json(r2, finetune_supernet(cfg))
    out["finetune"] = json.loads(r2.read_text())
    r3 = work_dir / "search" / "result.json"
    if not r3.exists():
        _write_json(r3, search_paths(cfg, out["finetune"]["checkpoint"], flops_budget=flops_budget, ea=ea,
                                     seed=seed, bn_batches=bn_batches, cache=work_dir / "search" / "fitness.jsonl"))
    out["search"] = json.loads(r3.read_text())
    return out


def found_backbone(path: str | Path = "benchmarks/detnas_search.json") -> dict:
    """The backbone spec of the path a DetNAS search found (``found_spec`` of ``bench_detnas.py``'s JSON),
    its path checked against its search space."""
    from .detnas import validate_path

    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: run `python benchmarks/bench_detnas.py` first") from None
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    spec = rec.get("found_spec") if isinstance(rec, dict) else None
    if not isinstance(spec, dict) or spec.get("type") != "DetNASBackbone" or "path" not in spec:
        raise ValueError(f"{path} has no found_spec of a DetNASBackbone with a path")
    spec = dict(spec)
    spec["path"] = list(validate_path(spec["path"], spec.get("arch", "3.8G")))
    return spec


def resolve_backbone(spec):
    """``spec`` itself, except ``{"found": FILE}``, which becomes :func:`found_backbone` of FILE (a params.yaml
    backbone entry naming a search result rather than copying its path)."""
    if isinstance(spec, dict) and "found" in spec:
        if set(spec) != {"found"}:
            raise ValueError(f"a found-path backbone takes only the key 'found', got {sorted(spec)}")
        return found_backbone(spec["found"])
    return spec

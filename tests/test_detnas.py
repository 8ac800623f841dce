"""maedet.detnas: DetNAS's one-shot supernet (choice blocks, search spaces, path sampling, single-path
extraction), its analytic FLOPs/params, BN recalibration, the evolutionary search, and the mmdet build."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mmdet")
pytest.importorskip("mmcv")

from maedet import detnas as dn  # noqa: E402

# a tiny search space (same block structure, few channels) for the tests that need many supernets
TINY = dict(stage_blocks=(1, 1, 2, 1), widths=(8, 16, 32, 64, 128), name="tiny")


def _warm_bn(net, path, shape=(4, 3, 64, 64), seed=0):
    """Non-trivial BN statistics for ``path`` (the DetNAS initialisation leaves running stats 0/1)."""
    g = torch.Generator().manual_seed(seed)
    dn.recalibrate_bn(net, path, [torch.randn(*shape, generator=g) for _ in range(2)])


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These networks are small: one intra-op thread is faster than two on a shared 2-core machine (up to 20x
    under contention), and leaves the other core to whatever else runs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def supernet_300m():
    torch.manual_seed(0)
    return dn.DetNASSupernet(arch="300M", seed=0)


# --------------------------------------------------------------------------------------------------
# supernet vs single path
# --------------------------------------------------------------------------------------------------
def test_sampled_path_equals_extracted_backbone(supernet_300m):
    net = supernet_300m
    net.train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        net(x)  # train mode, sample=True: a path is drawn
    p = net.last_path
    assert len(p) == 20 and set(p) <= {0, 1, 2, 3}
    _warm_bn(net, p)
    net.eval()  # recalibrate_bn restored the mode (train); eval: the fixed path set by recalibrate_bn
    assert net.path == p
    single = net.extract_backbone(p)
    assert not single.training and single.path == p
    assert sum(t.numel() for t in single.parameters()) < sum(t.numel() for t in net.parameters()) / 2
    with torch.no_grad():
        a = net(x, path=p)
        b = single(x)
        c = net(x)  # the path fixed by set_path
    assert len(a) == len(b) == 4
    for u, v, w in zip(a, b, c):
        assert torch.isfinite(u).all() and u.abs().max() > 0
        assert torch.allclose(u, v, rtol=1e-5, atol=1e-6) and torch.equal(u, w)
    # the same via a state dict, into a backbone built from the registry
    from mmdet.registry import MODELS

    other = MODELS.build(dict(type="DetNASBackbone", arch="300M", path=list(p)))
    other.load_state_dict(dn.path_state_dict(net.state_dict(), p), strict=True)
    other.eval()
    with torch.no_grad():
        assert all(torch.allclose(u, v, rtol=1e-5, atol=1e-6) for u, v in zip(a, other(x)))
    # another path through the same supernet gives another network
    q = tuple((c + 1) % 4 for c in p)
    _warm_bn(net, q)
    net.eval()
    with torch.no_grad():
        assert not torch.allclose(net(x, path=q)[-1], a[-1])
    # channel shuffle method 2 (even/odd split) also round-trips
    s2 = dn.DetNASSupernet(arch=TINY, channel_shuffle=2, seed=1)
    pt = s2.sample_path()
    _warm_bn(s2, pt, shape=(2, 3, 32, 32))
    s2.eval()
    y = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert all(torch.allclose(u, v, rtol=1e-5, atol=1e-6)
                   for u, v in zip(s2(y, path=pt), s2.extract_backbone(pt)(y)))


def test_sampling_is_seeded_uniform_and_only_in_train_mode():
    def sequence(seed, k=6):
        net = dn.DetNASSupernet(arch=TINY, seed=seed).train()
        out = []
        with torch.no_grad():
            for _ in range(k):
                net(torch.randn(2, 3, 32, 32))
                out.append(net.last_path)
        return out

    a, b, c = sequence(3), sequence(3), sequence(4)
    assert a == b and a != c and len(set(a)) > 1
    net = dn.DetNASSupernet(arch="300M", seed=7)
    draws = np.array([net.sample_path() for _ in range(600)])
    assert draws.shape == (600, 20)
    for i in range(20):  # every choice at every block
        assert set(draws[:, i]) == {0, 1, 2, 3}
    freq = np.bincount(draws.ravel(), minlength=4) / draws.size
    assert np.all(np.abs(freq - 0.25) < 0.03), freq
    net.reset_sampler()
    first = net.sample_path()
    net.reset_sampler()
    assert net.sample_path() == first
    # eval mode (or sample=False) never samples: a fixed path is needed
    tiny = dn.DetNASSupernet(arch=TINY).eval()
    with pytest.raises(ValueError, match="no path"):
        tiny(torch.randn(1, 3, 32, 32))
    tiny.set_path([3, 2, 1, 0, 3])
    with torch.no_grad():
        tiny(torch.randn(1, 3, 32, 32))
    assert tiny.last_path == (3, 2, 1, 0, 3)
    fixed = dn.DetNASSupernet(arch=TINY, path=[0, 1, 2, 3, 0]).train()
    assert fixed.sample is False
    with torch.no_grad():
        fixed(torch.randn(2, 3, 32, 32))
    assert fixed.last_path == (0, 1, 2, 3, 0)


@pytest.mark.parametrize("arch", ["300M", "1.3G", "3.8G"])
def test_outputs_channels_strides(arch):
    space = dn.search_space(arch)
    p = dn.PUBLISHED_PATHS[{"300M": "DetNAS-COCO-FPN-300M", "1.3G": "DetNAS-COCO-FPN-1.3G",
                            "3.8G": "DetNAS-COCO-FPN-3.8G"}[arch]][1]
    dev = "cpu" if arch == "300M" else "meta"  # the large ones: shapes only
    with torch.device(dev):
        net = dn.DetNASBackbone(arch=arch, path=p).eval()
        sub = dn.DetNASBackbone(arch=arch, path=p, out_indices=(1, 2, 3)).eval()
    assert net.out_channels == list(space.widths[1:]) and net.strides == [4, 8, 16, 32]
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 64, 96, device=dev))
    assert [tuple(o.shape) for o in outs] == [(1, c, 64 // s, 96 // s) for c, s in zip(net.out_channels, net.strides)]
    with torch.no_grad():
        outs = sub(torch.randn(1, 3, 70, 70, device=dev))  # not a multiple of 32: each stride-2 layer rounds up
    assert sub.out_channels == list(space.widths[2:])
    assert [o.shape[-1] for o in outs] == [9, 5, 3]


def test_search_spaces_are_detnas_table_1():
    small, large = dn.search_space("small"), dn.search_space("large")
    assert small is dn.search_space("DetNAS-300M") and large is dn.search_space("1.3g")
    assert small.stage_blocks == (4, 4, 8, 4) and small.num_blocks == 20
    assert small.widths == (16, 64, 160, 320, 640)
    assert large.stage_blocks == (8, 8, 16, 8) and large.num_blocks == 40
    assert large.widths == (48, 96, 240, 480, 960)
    assert dn.search_space("3.8G").widths == (72, 172, 432, 864, 1728)
    assert [len(p) for _, p in dn.PUBLISHED_PATHS.values()] == [20, 20, 40, 40]


# --------------------------------------------------------------------------------------------------
# FLOPs and params
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,path,device", [
    ("300M", dn.DETNAS_COCO_FPN_300M, "cpu"),
    ("300M", (3,) * 20, "cpu"),
    ("1.3G", dn.DETNAS_COCO_FPN_1_3G, "meta"),  # meta tensors: shapes (hence FLOPs) without the compute
    ("3.8G", tuple(np.random.default_rng(0).integers(0, 4, 40)), "meta"),
])
def test_flops_match_torch_flop_counter(arch, path, device, torch_conv_macs):
    """Analytic MACs == FlopCounterMode's convolution FLOPs / 2 (torch counts 2 FLOPs per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device(device):
        net = dn.DetNASBackbone(arch=arch, path=path).eval()
    for hw in [(64, 64), (48, 80)]:
        x = torch.randn(1, 3, *hw, device=device)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(x)
        assert fc.get_total_flops() == 2 * dn.path_flops(path, arch, hw)  # only convolutions in the backbone
        assert torch_conv_macs(net, x) == dn.path_flops(path, arch, hw)
    assert dn.path_params(path, arch) == sum(t.numel() for t in net.parameters())


def test_params_of_supernet_and_classifier_head():
    net = dn.DetNASSupernet(arch="300M")
    stem = sum(t.numel() for t in net.stem.parameters())
    choices = [[sum(t.numel() for t in op.parameters()) for op in ops] for ops in net.blocks]
    for p in [dn.DETNAS_COCO_RETINANET_300M, (0,) * 20, (2,) * 20]:
        assert dn.path_params(p, "300M") == stem + sum(choices[i][c] for i, c in enumerate(p))
    # the ImageNet head: 640 -> 1024 1x1 conv (bias) + BN, FC 1024 -> 1000 (bias); at 7x7
    p = dn.DETNAS_COCO_FPN_300M
    assert dn.path_params(p, "300M", classifier=True) - dn.path_params(p, "300M") == 640 * 1024 + 3 * 1024 + 1025000
    assert dn.path_flops(p, "300M", 224, classifier=True) - dn.path_flops(p, "300M", 224) == 640 * 1024 * 49 + 1024000
    stem_macs, table = dn.block_flops_table("300M", 224)
    assert stem_macs == 16 * 27 * 112 * 112
    assert dn.path_flops(p, "300M") == stem_macs + sum(table[i][c] for i, c in enumerate(p))


# --------------------------------------------------------------------------------------------------
# BN recalibration
# --------------------------------------------------------------------------------------------------
def test_recalibrate_bn_recomputes_the_path_statistics_only():
    torch.manual_seed(0)
    net = dn.DetNASSupernet(arch=TINY, seed=0, norm_eval=True).eval()
    p = (1, 3, 0, 2, 3)
    unused = net.blocks[0][0].branch_main[1]
    before = unused.running_mean.clone()
    unused.running_mean.fill_(0.5)
    batches = [torch.randn(3, 3, 32, 32) for _ in range(2)]
    assert dn.recalibrate_bn(net, p, batches) == 2
    assert not net.training and net.sample is True and net.path == p  # modes restored, path kept
    assert torch.all(unused.running_mean == 0.5) and before.shape == unused.running_mean.shape
    assert net.stem.bn.momentum == 0.1
    with torch.no_grad():  # equal-weight average of the per-batch means of the stem conv output
        means = [net.stem.conv(b).mean(dim=(0, 2, 3)) for b in batches]
    assert torch.allclose(net.stem.bn.running_mean, (means[0] + means[1]) / 2, atol=1e-6)
    assert int(net.stem.bn.num_batches_tracked) == 2
    used = net.blocks[0][1].branch_main[1]
    assert int(used.num_batches_tracked) == 2
    with pytest.raises(ValueError, match="no batches"):
        dn.recalibrate_bn(net, p, [])
    with pytest.raises(ValueError, match="out of range"):
        dn.recalibrate_bn(net, (1, 3, 0, 2, 4), batches)


# --------------------------------------------------------------------------------------------------
# evolutionary search
# --------------------------------------------------------------------------------------------------
def _toy(path):
    return float(sum(c == 2 for c in path))  # number of 7x7 choices


SMALL_EA = dict(population=16, generations=8, topk=4, mutation_num=6, crossover_num=6, mutation_prob=0.1)


def test_evolution_search_reproducible_within_budget_and_climbs():
    lo = dn.path_flops((0,) * 20, "300M")
    hi = dn.path_flops((2,) * 20, "300M")
    budget = (lo + hi) / 2  # binds: all-7x7 is out
    seen = []

    def fitness(p):
        assert dn.path_flops(p, "300M") <= budget, "a candidate over budget was evaluated"
        seen.append(p)
        return _toy(p)

    r = dn.evolution_search(fitness, "300M", flops_budget=budget, seed=1, **SMALL_EA)
    assert len(seen) == len(set(seen)) == 16 * 8  # each candidate evaluated once
    assert len(r.history) == 8 and all(len(h["candidates"]) == 16 for h in r.history)
    assert all(c.flops <= budget for h in r.history for c in h["candidates"])
    assert r.best_flops <= budget and dn.path_flops(r.best_path, "300M") == r.best_flops
    assert r.best_fitness == _toy(r.best_path) == max(c.fitness for c in r.evaluated)
    first = r.history[0]
    assert first["n_random"] == 16 and r.history[1]["n_mutation"] + r.history[1]["n_crossover"] > 0
    assert r.best_fitness > first["best_fitness"]  # climbs above the random initial population's best
    bests = [h["best_so_far_fitness"] for h in r.history]
    assert bests == sorted(bests)
    again = dn.evolution_search(_toy, "300M", flops_budget=budget, seed=1, **SMALL_EA)
    assert [[c.path for c in h["candidates"]] for h in again.history] == \
        [[c.path for c in h["candidates"]] for h in r.history]
    other = dn.evolution_search(_toy, "300M", flops_budget=budget, seed=2, **SMALL_EA)
    assert [c.path for c in other.history[0]["candidates"]] != [c.path for c in first["candidates"]]


def test_evolution_search_detnas_defaults():
    """DetNAS's numbers (50 x 20 = 1000 evaluations, top-10, 20 mutations + 20 crossovers, p=0.1) under its
    300M constraint (300e6 MACs of the backbone at 224x224)."""
    assert dn.DETNAS_EA == dict(population=50, generations=20, topk=10, mutation_num=20, crossover_num=20,
                                mutation_prob=0.1)
    r = dn.evolution_search(_toy, "300M", flops_budget=300e6, seed=0)
    assert len(r.evaluated) == 1000 and len(r.top_k) == 10
    assert max(c.flops for c in r.evaluated) <= 300e6
    assert r.best_fitness > r.history[0]["best_fitness"]


def test_evolution_search_budget_errors():
    lo = dn.path_flops((0,) * 20, "300M")
    stem, table = dn.block_flops_table("300M")
    smallest = stem + sum(min(row) for row in table)
    assert smallest <= lo
    with pytest.raises(ValueError, match="admits no path"):
        dn.evolution_search(_toy, "300M", flops_budget=smallest - 1)
    # exactly one path fits: a population of 2 cannot be drawn; the error is bounded and says why
    with pytest.raises(RuntimeError, match="budget admits too few paths"):
        dn.evolution_search(_toy, "300M", flops_budget=smallest, population=2, generations=1, topk=1,
                            mutation_num=0, crossover_num=0, max_tries=200)
    with pytest.raises(ValueError, match="mutation_num"):
        dn.evolution_search(_toy, "300M", population=10, mutation_num=6, crossover_num=6)
    with pytest.raises(ValueError, match="fitness returned nan"):
        dn.evolution_search(lambda p: math.nan, "300M", population=2, generations=1, topk=1, mutation_num=0,
                            crossover_num=0)


# --------------------------------------------------------------------------------------------------
# mmdet
# --------------------------------------------------------------------------------------------------
def test_retinanet_with_supernet_builds_and_trains_one_step(tmp_path):
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    from mmengine.utils import import_modules_from_strings
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules

    f = tmp_path / "cfg.py"
    f.write_text(
        "_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['maedet.detnas'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='DetNASSupernet', arch='300M', seed=0),\n"
        "             neck=dict(in_channels=[64, 160, 320, 640], out_channels=32),\n"
        "             bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2))\n")
    cfg = Config.fromfile(str(f))
    import_modules_from_strings(**cfg.custom_imports)
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert isinstance(model.backbone, dn.DetNASSupernet) and model.backbone.sample
    model.train()
    samples = []
    for i in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64),
                                        batch_input_shape=(64, 64), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[4.0, 6.0, 40.0, 44.0], [20.0, 10.0, 60.0, 30.0]]),
                                      labels=torch.tensor([i, 2]))
        samples.append(s)
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    total, log = model.parse_losses(losses)
    assert {"loss_cls", "loss_bbox"} <= set(log) and all(math.isfinite(float(v)) for v in log.values())
    assert torch.isfinite(total) and float(log["loss_cls"]) > 0
    total.backward()
    p = model.backbone.last_path
    for i, ops in enumerate(model.backbone.blocks):  # only the sampled path gets gradients
        for c, op in enumerate(ops):
            grads = [t.grad for t in op.parameters()]
            assert all(g is not None for g in grads) if c == p[i] else all(g is None for g in grads)
    # recalibrate the BN of a path through the detector, then run it as the single-path detector
    dn.recalibrate_bn(model, dn.DETNAS_COCO_FPN_300M, [torch.randn(2, 3, 64, 64)])
    model.eval()
    with torch.no_grad():
        cls, _ = model(torch.randn(1, 3, 64, 64), mode="tensor")
    assert model.backbone.last_path == dn.DETNAS_COCO_FPN_300M and len(cls) == 5


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_bad_input_raises_value_error():
    from mmdet.registry import MODELS

    with pytest.raises(ValueError, match="19 choices .* 20 blocks"):
        dn.path_flops((0,) * 19, "300M")
    with pytest.raises(ValueError, match="choice 4 at block 2 is out of range"):
        dn.validate_path((0, 0, 4) + (0,) * 17, "small")
    with pytest.raises(ValueError, match="choice -1 at block 0"):
        dn.DetNASSupernet(arch=TINY, path=(-1, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="must be an integer"):
        dn.path_params((0.0,) + (0,) * 19, "300M")
    with pytest.raises(ValueError, match="unknown DetNAS arch 'DetNAS-9G'"):
        dn.search_space("DetNAS-9G")
    with pytest.raises(ValueError, match="unknown DetNAS arch"):
        MODELS.build(dict(type="DetNASSupernet", arch="medium"))
    with pytest.raises(ValueError, match="40 blocks"):
        dn.DetNASBackbone(arch="1.3G", path=dn.DETNAS_COCO_FPN_300M)
    with pytest.raises(ValueError, match="needs a path"):
        dn.DetNASBackbone(arch="300M")
    with pytest.raises(ValueError, match="out_indices"):
        dn.DetNASBackbone(arch=TINY, path=(0,) * 5, out_indices=(4,))
    with pytest.raises(ValueError, match="widths"):
        dn.search_space(dict(stage_blocks=(1, 1, 1, 1), widths=(8, 16, 30, 64, 128)))
    net = dn.DetNASSupernet(arch=TINY)
    with pytest.raises(ValueError, match="5 blocks"):
        net.set_path([0, 1])
    with pytest.raises(ValueError, match="out of range"):
        net(torch.randn(1, 3, 32, 32), path=(0, 0, 0, 0, 9))

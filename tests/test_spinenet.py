"""SpineNet (maedet.spinenet): the scale-permuted backbone's outputs, its RetinaNet FLOPs/params against the
published figures, an mmdet RetinaNet built with it and no neck, and bad input."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mmdet")

from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from maedet import spinenet as sn  # noqa: E402


def _rel(measured, published):
    return measured / published - 1


@pytest.mark.parametrize("arch", ["49S", "49"])
def test_output_levels_strides_and_channels(arch):
    net = sn.SpineNet(arch=arch).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 128, 128))
    channels = sn.SCALING_MAP[arch].endpoints_num_filters
    assert net.levels == (3, 4, 5, 6, 7) and net.strides == (8, 16, 32, 64, 128)
    assert net.out_channels == channels
    assert [tuple(o.shape) for o in outs] == [(1, channels, 128 // s, 128 // s) for s in net.strides]
    assert all(torch.isfinite(o).all() for o in outs)


def test_odd_input_size_rounds_up_per_level():
    net = sn.SpineNet(arch="49S").eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 100, 72))
    assert [tuple(o.shape[-2:]) for o in outs] == [(13, 9), (7, 5), (4, 3), (2, 2), (1, 1)]


def test_block_specification_and_merge_rule():
    """15 scale-permuted blocks, outputs at levels 3..7; the only same-level block left unused by the
    time an output block is built is block 9 (feature 11, level 5), summed into the level-5 output."""
    net = sn.SpineNet(arch="49")
    assert len(sn.SPINENET_BLOCK_SPECS) == len(net.blocks) == 15
    assert sorted(net.output_index) == [3, 4, 5, 6, 7]
    assert [m for m in net.merges if m] == [(11,)]
    assert net.merges[12] == (11,) and net.block_specs[12].level == 5
    # block repeats: SpineNet-96 has 2 blocks per block group, SpineNet-143 3
    assert len(sn.SpineNet(arch="96").blocks[0]) == 2
    assert len(sn.SpineNet(arch="143").blocks[0]) == 3


@pytest.mark.parametrize("arch", ["49", "96", "143", "190"])
def test_retinanet_flops_and_params_match_published(arch):
    """Backbone + RetinaHead at the published resolution, conv MACs (FlopCounterMode, meta device)."""
    r = sn.retinanet_complexity(arch)
    assert r["input_size"] == sn.SCALING_MAP[arch].resolution
    assert abs(_rel(r["flops"], r["paper_flops"])) < 0.02, r
    assert abs(_rel(r["params"], r["paper_params"])) < 0.02, r


@pytest.mark.xfail(strict=True, reason="SpineNet-49S as configured in the reference code (endpoints 128) "
                                       "measures -8.9% FLOPs, -5.4% params against the published figures")
def test_retinanet_49s_reference_config_matches_published():
    """SpineNet-49S with the reference's scaling (filter scale 0.65, endpoints 128, head 128) measures
    30.78B FLOPs / 11.26M params against the published 33.8B / 11.9M: -8.9% / -5.4%. Every other model
    matches within 0.2%, so the counting is not the cause; see the test below for the setting that
    reproduces the published figures."""
    r = sn.retinanet_complexity("49S")
    assert abs(_rel(r["flops"], r["paper_flops"])) < 0.02, r
    assert abs(_rel(r["params"], r["paper_params"])) < 0.02, r


def test_retinanet_49s_published_figures_match_256_endpoints():
    """The published SpineNet-49S figures (33.8B / 11.9M) are reproduced, both within 0.3%, by the same
    model with 256-channel endpoints (SpineNet's default) feeding the 128-wide head: 33.75B / 11.93M."""
    ref = sn.retinanet_complexity("49S")
    r = sn.retinanet_complexity("49S", endpoints_num_filters=256)
    assert abs(_rel(r["flops"], r["paper_flops"])) < 0.02, r
    assert abs(_rel(r["params"], r["paper_params"])) < 0.02, r
    assert abs(_rel(ref["flops"], ref["paper_flops"]) + 0.089) < 0.005  # the measured gap, pinned
    assert abs(_rel(ref["params"], ref["paper_params"]) + 0.054) < 0.005


def test_head_flops_closed_form():
    """The counter's head MACs equal the closed form: per level, H*W*9 * (cin*f + 3*f*f) per branch, plus
    the two 3x3 predictors (91 classes x 9 anchors, 4 x 9 box deltas)."""
    r = sn.retinanet_complexity("49")
    cin = f = 256
    per_pos = 2 * 9 * (cin * f + 3 * f * f) + 9 * f * (91 * 9) + 9 * f * (4 * 9)
    positions = sum((640 // 2 ** lvl) ** 2 for lvl in range(3, 8))
    assert r["head_flops"] == per_pos * positions


def test_mmdet_retinanet_without_neck_gives_finite_losses():
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    cfg = dict(
        type="RetinaNet",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=128),
        backbone=dict(type="SpineNet", arch="49"),
        neck=None,
        bbox_head=sn.retinanet_head_cfg("49", num_classes=3) | dict(
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4,
                                     min_pos_iou=0, ignore_iof_thr=-1),
                       sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                      max_per_img=10))
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg)
    model.init_weights()
    assert not model.with_neck
    samples = []
    for box, label in (([20.0, 30.0, 70.0, 90.0], 1), ([5.0, 8.0, 120.0, 60.0], 2)):
        # batch 2: level 7 of a 128 px image is 1x1, and training BN needs more than one value per channel
        sample = DetDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128),
                                             pad_shape=(128, 128), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([box]), labels=torch.tensor([label]))
        samples.append(sample)
    images = [torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8) for _ in samples]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)
    losses = model.loss(data["inputs"], data["data_samples"])
    assert {"loss_cls", "loss_bbox"} <= set(losses)
    total = sum(v.sum() for vs in losses.values() for v in (vs if isinstance(vs, list) else [vs]))
    assert torch.isfinite(total)
    total.backward()


def test_named_constructors_and_config_forms():
    assert set(sn.SPINENETS) >= {"spinenet-49s", "spinenet-49", "spinenet-96"}
    assert sn.build("spinenet-49s").arch == "49S"
    assert sn.build("SpineNet-49").endpoints_num_filters == 256
    net = MODELS.build(dict(type="SpineNet", arch="49s", norm_cfg=dict(type="BN", requires_grad=True),
                            norm_eval=True))
    net.train()
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    net.init_weights()


@pytest.mark.parametrize("bad", ["50", "spinenet-50", "resnet50"])
def test_unknown_arch_raises_value_error_naming_choices(bad):
    with pytest.raises(ValueError, match="49S, 49, 96, 143"):
        sn.SpineNet(arch=bad)
    with pytest.raises(ValueError, match="49S"):
        sn.build(bad)
    with pytest.raises(ValueError, match="49S"):
        MODELS.build(dict(type="SpineNet", arch=bad))


def test_bad_block_specification_raises():
    specs = list(sn.SPINENET_BLOCK_SPECS)
    with pytest.raises(ValueError, match="input offset 40"):
        sn.SpineNet(block_specs=[sn.BlockSpec(2, "bottleneck", (0, 40), False)] + specs[1:])
    with pytest.raises(ValueError, match="block_fn"):
        sn.SpineNet(block_specs=[sn.BlockSpec(2, "mbconv", (0, 1), False)] + specs[1:])
    with pytest.raises(ValueError, match="no output block"):
        sn.SpineNet(block_specs=specs[:-1])

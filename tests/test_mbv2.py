"""The MobileNetV2 search space (Appendix B, Table 6): inverted bottlenecks, their counting and scores."""
import math

import pytest
import torch

from maedet import zoo
from maedet.flops import count
from maedet.networks import Backbone, ScoringNet, num_parameters
from maedet.score import ScoreSettings, score
from maedet.structure import SE, Block, Conv, Structure, StructureError, se_width, validate

# Table 6 (backbone only, 320x320): MACs printed to 1M, params to 0.1M
TABLE6 = {"mobilenetv2-0.5": ("217", "0.7"), "mobilenetv2-1.0": ("651", "2.2")}


@pytest.mark.parametrize("name", sorted(TABLE6))
def test_table6_flops_and_params_to_the_printed_digit(name):
    """Tolerance: the paper rounds, so ours must round to the printed digits (MACs within 0.5M, params within
    0.05M). The convention that does it for both rows is mmcv's (conv + BN + ReLU6), with the expansion-free
    t = 1 row and the last 1x1 conv to 1280 (see ``zoo._mobilenet_v2``)."""
    macs, params = TABLE6[name]
    c = count(zoo.get(name), 320)
    assert c.convention == "mmcv"
    assert f"{c.macs / 1e6:.0f}" == macs, c.macs
    assert f"{c.params / 1e6:.1f}" == params, c.params
    # the MAE-DET code's convention (no ReLU) and conv MACs alone do not reproduce the row
    assert f"{count(zoo.get(name), 320, 'maedet-code').macs / 1e6:.0f}" != macs
    assert f"{count(zoo.get(name), 320, 'conv').macs / 1e6:.0f}" != macs


def test_mobilenetv2_is_torchvision_s_network(torch_conv_macs):
    """Params (conv + BN) equal torchvision's MobileNetV2 ``features`` (an independent build with the same
    widths as mmdet's backbone: stem, 17 inverted residuals, the 1x1 conv to 1280), and so do the conv MACs
    (torch's FLOP counter, on the narrower one; both builds)."""
    from torchvision.models import mobilenet_v2

    for name, width in (("mobilenetv2-0.5", 0.5), ("mobilenetv2-1.0", 1.0)):
        s = zoo.get(name)
        ref = mobilenet_v2(width_mult=width).features.eval()
        assert num_parameters(ref) == num_parameters(Backbone(s)) == count(s, 64).params, name
        assert s.layers == 52 and s.stage_strides == [2, 4, 8, 16, 32] and s.stage_channels[-1] == 1280
    x = torch.zeros(1, 3, 64, 96)
    for net in (ref, Backbone(s).eval()):
        assert torch_conv_macs(net, x) == count(s, (64, 96), "conv").macs


def test_expansion_ratio_1_has_no_expansion_conv():
    s = zoo.get("mobilenetv2-1.0")
    t1 = s.blocks[1]  # the row of t = 1: 32 -> 16, bottleneck 32
    (unit,) = t1.units()
    assert [(op.in_channels, op.out_channels, op.groups) for op in unit.main] == [(32, 32, 32), (32, 16, 1)]
    assert t1.layers == 2 and unit.shortcut is None
    u = s.blocks[2].units()[0]  # t = 6: 16 -> 96 (expansion), depthwise, 96 -> 24
    assert [(op.in_channels, op.out_channels, op.groups) for op in u.main] == [(16, 96, 1), (96, 96, 96), (96, 24, 1)]
    assert s.blocks[3].units()[0].shortcut == ()  # the repeated units of a row: identity link


def test_closed_form_of_inverted_bottlenecks_by_hand():
    s = validate(Structure((Block("conv", 3, 3, 8, 2), Block("mbv2", 3, 8, 8, 1, 8, 1),
                            Block("mbv2", 5, 8, 16, 2, 48, 2))))
    # stem 1/2 log(3*9); expansion-free unit: depthwise 1/2 log(9), projection 1/2 log(8);
    # inverted bottlenecks: 1/2 log(C_in) + 1/2 log(k^2) + 1/2 log(btn), C_in = 8 then 16
    h1 = math.log(8) + 0.5 * (math.log(27) + math.log(9) + math.log(8))
    h2 = h1 - math.log(8) + math.log(16) + 0.5 * (math.log(8 * 25 * 48) + math.log(16 * 25 * 48))
    assert score(s, "closed-form", alpha=(1, 1)).stage_scores == pytest.approx([h1, h2], rel=1e-12)
    # 1x1 kernels (depthwise included): no zero padding, so the exact expectation is the fan-in formula
    s1 = validate(Structure((Block("conv", 1, 3, 8, 2), Block("mbv2", 1, 8, 8, 1, 8, 1),
                             Block("mbv2", 1, 8, 16, 2, 48, 3))))
    assert score(s1, "expected", (1, 1)).score == pytest.approx(score(s1, "closed-form", (1, 1)).score, rel=1e-12)


@pytest.mark.parametrize("name", sorted(TABLE6))
def test_expected_approaches_closed_form_as_padding_vanishes(name):
    s = zoo.get(name)
    cf = score(s, "closed-form").score
    gaps = [(cf - score(s, "expected", settings=ScoreSettings(r)).score) / cf for r in (64, 320, 2048)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] > 0
    assert gaps[1] < 0.005 and gaps[-1] < 0.001, gaps  # 320 (Table 6): ~0.25%; 2048: ~0.035%


@pytest.mark.parametrize("name,repeats,tolerance", [("mobilenetv2-1.0", 24, 0.001), ("mobilenetv2-0.5", 16, 0.002)])
def test_forward_agrees_with_expected(name, repeats, tolerance):
    """The released-code estimator (Gaussian weights, per-conv std) against the exact expectation of its
    per-conv variances, at resolution 32 (``expected`` includes the zero padding, large there).

    One draw spreads by ~0.2% of the score (the narrow layers: a depthwise conv draws only k^2 weights per
    channel), so draws are averaged. MobileNetV2-1.0: within 0.1% (mean gap over 72 draws ~0.01%).
    MobileNetV2-0.5 has layers of 8-16 channels, where E[log std] sits below log sqrt(E[var]) (Jensen; the
    ``expected`` estimator is the expectation of the variance, not of its log): forward is below expected by
    0.063% +- 0.016% (184 draws), within 0.1% in the mean, but a fast test (16 draws, standard error ~0.07%)
    cannot resolve 0.1% reliably, so it checks 0.2%."""
    s = zoo.get(name)
    st = ScoreSettings(32, batch_size=8, repeats=repeats, seed=0)
    fw = score(s, "forward", settings=st)
    ex = score(s, "expected", settings=st)
    assert abs(ex.score - fw.score) / fw.score < tolerance, (fw.score, ex.score)


def _with_se(s: Structure) -> Structure:
    return validate(Structure(tuple(Block(b.type, b.kernel, b.in_channels, b.out_channels, b.stride, b.bottleneck,
                                          b.depth, se=b.type == "mbv2") for b in s.blocks)))


def test_se_option_counts_and_builds():
    base = zoo.get("mobilenetv2-0.5")
    s = _with_se(base)
    u = s.blocks[2].units()[0]  # 8 -> 48 expansion, depthwise, SE(48 -> 8 -> 48), projection
    assert isinstance(u.main[2], SE) and u.main[2] == SE(48, 8) and isinstance(u.main[1], Conv)
    assert se_width(48) == 8 and se_width(96) == 24 and se_width(960) == 240
    assert s.layers == base.layers and s.key() != base.key()
    # what SE adds, unit by unit: 2 c r weights + r + c biases; mmcv MACs: 2 c r + pool c h w + ReLU r
    res = 64
    extra_params = extra_macs = 0
    h = res // 2
    for b in s.blocks[1:-1]:
        for unit in b.units():
            se = next(op for op in unit.main if isinstance(op, SE))
            h = h // b.stride if unit is b.units()[0] else h
            c, r = se.channels, se.reduced
            extra_params += 2 * c * r + r + c
            extra_macs += 2 * c * r + c * h * h + r
    a, b_ = count(base, res), count(s, res)
    assert b_.params - a.params == extra_params and b_.macs - a.macs == extra_macs
    assert num_parameters(Backbone(s)) == b_.params
    out = Backbone(s).eval()(torch.zeros(1, 3, res, res))
    assert [o.shape[1] for o in out] == s.stage_channels
    # serialised only when set; rejected on other block types
    d = s.to_dict()
    assert d["blocks"][2]["se"] is True and "se" not in base.to_dict()["blocks"][2]
    assert Structure.from_dict(d) == s and Structure.from_dict(base.to_dict()).key() == base.key()
    d["blocks"][0]["se"] = True
    with pytest.raises(StructureError, match="'se'"):
        Structure.from_dict(d)


def test_se_is_removed_while_scoring():
    """ZenDet (Appendix E): SE is removed during the search; on the zero-mean scoring input its gate would be
    a constant ~0.5, which the per-conv normalisation removes anyway. Every estimator is unchanged."""
    base = zoo.get("mobilenetv2-0.5")
    s = _with_se(base)
    assert len(ScoringNet(s).convs) == len(ScoringNet(base).convs)
    st = ScoreSettings(32, batch_size=2, repeats=1, seed=0)
    for est in ("closed-form", "expected", "forward", "paper-text"):
        assert score(s, est, settings=st).score == score(base, est, settings=st).score, est

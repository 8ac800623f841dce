import pytest
import torch

from maedet import zoo
from maedet.flops import count, parse_resolution
from maedet.networks import Backbone, num_parameters

# Table 1 (1280x800) and Table 4 (224x224) of the paper
PUBLISHED_1280 = {"maedet-s": (48.7e9, 21.2e6), "maedet-m": (89.9e9, 25.8e6), "maedet-l": (152.9e9, 43.9e6),
                  "resnet50": (83.6e9, 23.5e6), "resnet101": (159.5e9, 42.4e6)}


@pytest.mark.parametrize("name", sorted(PUBLISHED_1280))
def test_published_flops_and_params_within_0_3_percent(name):
    macs, params = PUBLISHED_1280[name]
    c = count(zoo.get(name), "1280x800")
    assert abs(c.macs / macs - 1) < 0.003, c.macs
    assert abs(c.params / params - 1) < 0.003, c.params


@pytest.mark.parametrize("name,published", [("maedet-m", "4.4"), ("resnet50", "4.1")])
def test_published_224_flops_to_the_digit(name, published):
    assert f"{count(zoo.get(name), 224).macs / 1e9:.1f}" == published


def test_resolution_parsing():
    assert parse_resolution("1280x800") == (800, 1280)
    assert parse_resolution("384") == (384, 384)
    with pytest.raises(ValueError):
        parse_resolution("12x")
    with pytest.raises(ValueError):
        parse_resolution("0x5")


@pytest.mark.parametrize("name", ["maedet-s", "resnet50", "table4-single-coarse"])
def test_conv_macs_and_params_match_torch_counter(name, torch_conv_macs):
    """Our analytic count against torch's own FLOP counter run on the built training module."""
    s = zoo.get(name)
    net = Backbone(s).eval()
    assert num_parameters(net) == count(s, 64).params
    x = torch.zeros(1, 3, 96, 160)
    assert torch_conv_macs(net, x) == count(s, (96, 160), "conv").macs


def test_mmcv_convention_matches_mmengine_counter():
    """mmengine's complexity counter (the successor of mmcv's) agrees on the conv and BN parts and params."""
    analysis = pytest.importorskip("mmengine.analysis")
    s = zoo.get("maedet-s")
    net = Backbone(s).eval()
    res = (128, 96)
    ours = count(s, res, "mmcv")
    info = analysis.get_model_complexity_info(net, input_shape=(3, *res), show_table=False, show_arch=False)
    assert info["params"] == ours.params
    # mmengine (fvcore rules) counts conv MACs and 2 ops per BN element (affine), no ReLU or pooling
    assert info["flops"] == ours.conv_macs + ours.bn_flops

"""Zero-shot proxies (maedet.proxies): each against a hand computation or an independent formula."""
import copy
import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from maedet import proxies as px  # noqa: E402
from maedet import zoo  # noqa: E402
from maedet.score import ESTIMATORS, ScoreError, ScoreSettings, score  # noqa: E402
from maedet.structure import Conv, structure_from_rows  # noqa: E402

SMALL = structure_from_rows([("Conv", 3, 3, 16, 2, None, 1), ("ResBlock", 5, 16, 24, 2, 8, 1),
                             ("ResBlock", 3, 24, 64, 2, 16, 1), ("ResBlock", 5, 64, 128, 2, 16, 1),
                             ("ResBlock", 3, 128, 256, 2, 32, 1)], name="small")
TINY = ScoreSettings(32, batch_size=4, repeats=1, seed=0)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 5)

    def forward_pre_gap(self, x):
        return self.relu(self.bn(self.conv(x)))

    def forward(self, x):
        return self.fc(self.forward_pre_gap(x).mean(dim=(2, 3)))


def _tiny(seed=0):
    torch.manual_seed(seed)
    return TinyNet()


# ---------------------------------------------------------------------------------------------------
# registration and the structure interface
# ---------------------------------------------------------------------------------------------------
def test_proxies_are_registered_scalar_estimators():
    for name in px.PROXIES:
        assert name in ESTIMATORS
    r = score(SMALL, "synflow", alpha=None, settings=TINY)
    assert r.stage_scores is None and r.alpha is None and math.isfinite(r.score)


@pytest.mark.parametrize("name", px.PROXIES)
def test_structure_proxies_deterministic_for_a_seed(name):
    st = ScoreSettings(32, batch_size=2, repeats=1, seed=3)
    a = score(SMALL, name, None, st).score
    b = score(SMALL, name, None, st).score
    c = score(SMALL, name, None, ScoreSettings(32, batch_size=2, repeats=1, seed=4)).score
    assert math.isfinite(a) and a == b and c != a


def test_structure_proxies_finite_on_maedet_s():
    s = zoo.get("maedet-s")
    st = ScoreSettings(32, batch_size=2, repeats=1, seed=0)
    vals = {n: score(s, n, None, st).score for n in px.PROXIES}
    assert all(math.isfinite(v) for v in vals.values()), vals
    assert vals["gradnorm"] > 0 and vals["snip"] > 0


def test_structure_net_without_shortcuts_keeps_only_main_paths():
    plain = px.StructureNet(SMALL, shortcuts=False)
    full = px.StructureNet(SMALL, shortcuts=True)
    n_main = sum(1 for b in SMALL.blocks for u in b.units(SMALL.shortcut) for op in u.main if isinstance(op, Conv))
    n_all = n_main + sum(1 for b in SMALL.blocks for u in b.units(SMALL.shortcut) for op in (u.shortcut or ())
                         if isinstance(op, Conv))
    assert sum(isinstance(m, nn.Conv2d) for m in plain.modules()) == n_main
    assert sum(isinstance(m, nn.Conv2d) for m in full.modules()) == n_all > n_main
    x = torch.randn(2, 3, 32, 32)
    assert plain.forward_pre_gap(x).shape == full.forward_pre_gap(x).shape == (2, 256, 1, 1)
    assert full(x).shape == (2, px.STRUCTURE_CLASSES)
    # no zero-initialised residual BN: every residual branch carries signal
    assert all(float(m.weight.detach().abs().min()) == 1.0 for m in full.modules() if isinstance(m, nn.BatchNorm2d))


def test_structure_net_initialisation_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = px.structure_net(SMALL, 5)
    after = torch.rand(1)
    b = px.structure_net(SMALL, 5)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# ---------------------------------------------------------------------------------------------------
# SynFlow
# ---------------------------------------------------------------------------------------------------
def test_synflow_of_two_linear_layers_is_the_closed_form():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(7, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3, bias=False))
    net[1].running_mean.fill_(3.0)   # would change R if BN were not removed
    net[1].running_var.fill_(9.0)
    w1, w2 = net[0].weight.detach().double().abs(), net[3].weight.detach().double().abs()
    r = float((w2 @ w1 @ torch.ones(7, dtype=torch.float64)).sum())
    # R is positively homogeneous of degree 1 in each layer: sum theta * dR/dtheta = R per layer
    assert px.synflow_score(net, (4, 7), log=False) == pytest.approx(2 * r, rel=1e-12)
    assert px.synflow_score(net, (4, 7)) == pytest.approx(math.log(2 * r), rel=1e-12)
    assert net[0].weight.min() < 0  # the caller's module is untouched


def test_synflow_chain_equals_depth_times_output():
    # a bias-free conv chain with |W| and ones input: sum over layers of theta * dR/dtheta = L * R
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 3, 1, bias=False))
    with torch.no_grad():
        y = copy.deepcopy(net).double()
        for p in y.parameters():
            p.abs_()
        r = float(y(torch.ones(1, 2, 6, 6, dtype=torch.float64)).sum())
    assert px.synflow_score(net, (1, 2, 6, 6), log=False) == pytest.approx(2 * r, rel=1e-12)


# ---------------------------------------------------------------------------------------------------
# NASWOT
# ---------------------------------------------------------------------------------------------------
CODES = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
K_HAND = [[3, 1, 2], [1, 3, 0], [2, 0, 3]]     # number of agreeing units = N_A - Hamming distance


def test_hamming_kernel_and_logdet_by_hand():
    k = px.hamming_kernel(CODES)
    assert k.tolist() == K_HAND
    # det = 3 (9 - 0) - 1 (3 - 0) + 2 (0 - 6) = 12
    assert px.naswot_logdet(k) == pytest.approx(math.log(12), rel=1e-12)
    c = CODES.double()
    assert torch.equal(k, c @ c.T + (1 - c) @ (1 - c).T)


def test_naswot_score_sums_kernels_over_relu_layers():
    x = (CODES * 2 - 1).clone()
    one = px.naswot_score(nn.Sequential(nn.ReLU()), x)
    assert one == pytest.approx(math.log(12), rel=1e-12)
    two = px.naswot_score(nn.Sequential(nn.ReLU(), nn.ReLU()), x)   # same codes twice: K doubles
    assert two == pytest.approx(math.log(12 * 2 ** 3), rel=1e-12)
    with pytest.raises(ValueError, match="ReLU"):
        px.naswot_score(nn.Sequential(nn.Identity()), x)


def test_naswot_identical_images_give_singular_kernel():
    x = torch.randn(1, 3, 8, 8).repeat(4, 1, 1, 1)
    assert px.compute("naswot", _tiny(), x) == float("-inf")


# ---------------------------------------------------------------------------------------------------
# GradNorm and SNIP
# ---------------------------------------------------------------------------------------------------
def test_gradnorm_and_snip_match_manual_autograd():
    net = _tiny(2)
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    ref = copy.deepcopy(net).train()
    loss = F.cross_entropy(ref(x), y)
    ws = [ref.conv.weight, ref.fc.weight]
    gs = torch.autograd.grad(loss, ws)
    gn = sum(float(g.norm()) for g in gs)
    sn = sum(float((w.detach() * g).abs().sum()) for w, g in zip(ws, gs))
    r = px.gradient_scores(net, x, y)
    assert r["gradnorm"] == pytest.approx(gn, rel=1e-5)
    assert r["snip"] == pytest.approx(sn, rel=1e-5)
    assert px.compute("gradnorm", net, x, y) == pytest.approx(gn, rel=1e-5)
    assert px.compute("snip", net, x, y) == pytest.approx(sn, rel=1e-5)
    # one shared pass gives the separate values
    both = px.compute_many(["naswot", "gradnorm", "snip"], net, x, y, share=True)
    alone = px.compute_many(["naswot", "gradnorm", "snip"], net, x, y, share=False)
    assert both == pytest.approx(alone, rel=1e-6)
    assert net.conv.weight.grad is None  # the caller's module is untouched


# ---------------------------------------------------------------------------------------------------
# Zen-NAS
# ---------------------------------------------------------------------------------------------------
def _zen_linear_expectation(c_in, c_out, hw, gamma=px.ZEN_MIXUP_GAMMA):
    # f(x) - f(x + g eps) = -g W eps, each output ~ N(0, ||w_o||^2 ~ c_in): E|.| = g sqrt(c_in) sqrt(2/pi)
    return math.log(gamma * c_out * hw * math.sqrt(c_in) * math.sqrt(2 / math.pi))


def test_zen_on_a_linear_layer_is_the_gaussian_amplification():
    c_in, c_out, side = 64, 64, 16
    net = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False))
    z = px.zen_score(net, (8, c_in, side, side), repeats=2, seed=0)
    assert z == pytest.approx(_zen_linear_expectation(c_in, c_out, side * side), abs=0.05)
    # with BN after the conv the BN term restores what the normalisation removed (Zen's BN compensation)
    bn = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
    zb = px.zen_score(bn, (8, c_in, side, side), repeats=2, seed=0)
    assert zb == pytest.approx(z, abs=0.05)
    # the released code's running variance: 0.81 + 0.19 v after two passes instead of v (v ~ c_in)
    zr = px.zen_score(bn, (8, c_in, side, side), repeats=2, seed=0, bn_stat="running")
    assert zr - zb == pytest.approx(0.5 * math.log((0.81 + 0.19 * c_in) / c_in), abs=0.05)


def test_zen_is_deterministic_and_module_untouched():
    net = _tiny(0)
    state = copy.deepcopy(net.state_dict())
    a = px.compute("zen", net, input_shape=(4, 3, 8, 8), seed=7)
    b = px.compute("zen", net, input_shape=(4, 3, 8, 8), seed=7)
    assert a == b and math.isfinite(a)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


# ---------------------------------------------------------------------------------------------------
# Entropy on a module
# ---------------------------------------------------------------------------------------------------
def test_module_entropy_of_the_plain_structure_is_the_forward_estimator():
    st = ScoreSettings(32, batch_size=4, repeats=2, seed=5)
    ref = score(SMALL, "forward", alpha=(0, 0, 0, 0, 1), settings=st).score
    net = px.StructureNet(SMALL, shortcuts=False)   # BN and ReLU are removed by the estimator
    h = px.entropy_score(net, (4, 3, 32, 32), repeats=2, seed=5)
    assert h == pytest.approx(ref, rel=1e-6)


def test_entropy_hooks_exact_on_chains_approximate_on_sums():
    chain = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, padding=1, bias=False))
    shape = (4, 3, 16, 16)
    hook = px.entropy_score(chain, shape, dtype="float64")
    exact = px.entropy_exact_score(chain, shape)
    assert hook == pytest.approx(exact, rel=1e-9)

    class TwoBranches(nn.Module):     # y = W1 x + W2 x
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(64, 8, 1, bias=False)
            self.b = nn.Conv2d(64, 8, 1, bias=False)

        def forward(self, x):
            return self.a(x) + self.b(x)

    shape = (8, 64, 16, 16)
    hook = px.entropy_score(TwoBranches(), shape)
    exact = px.entropy_exact_score(TwoBranches(), shape)
    # hooks: log 8 + log std(W1 x) + log std(W2 x) + log std(sum of two unit branches)
    #        ~ log 8 + log 64 + 1/2 log 2          exact: log 8 + 1/2 log(2 * 64)
    assert hook == pytest.approx(math.log(8) + math.log(64) + 0.5 * math.log(2), abs=0.1)
    assert exact == pytest.approx(math.log(8) + 0.5 * math.log(128), abs=0.1)


def test_entropy_of_a_zero_network_is_minus_infinity():
    class Zero(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1, bias=False)

        def forward(self, x):
            return self.c(x).mul(0.0)

    assert px.compute("entropy", Zero(), input_shape=(2, 3, 4, 4)) == float("-inf")
    assert px.compute("entropy-exact", Zero(), input_shape=(2, 3, 4, 4)) == float("-inf")


# ---------------------------------------------------------------------------------------------------
# the module API
# ---------------------------------------------------------------------------------------------------
def test_compute_many_api_and_errors():
    net = _tiny(1)
    t = {}
    out = px.compute_many(px.MODULE_PROXIES, net, input_shape=(4, 3, 8, 8), seed=1, timings=t)
    assert list(out) == list(px.MODULE_PROXIES) and set(t) == set(px.MODULE_PROXIES)
    assert all(math.isfinite(v) for v in out.values())
    again = px.compute_many(px.MODULE_PROXIES, net, input_shape=(4, 3, 8, 8), seed=1)
    assert again == out
    with pytest.raises(ValueError, match="unknown proxy"):
        px.compute("nope", net, input_shape=(4, 3, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        px.compute("zen", net)
    with pytest.raises(ScoreError, match="unknown proxy"):
        px.structure_proxy("forward", SMALL)


def test_float64_module_api():
    net = _tiny(1)
    a = px.compute("gradnorm", net, input_shape=(4, 3, 8, 8), dtype="float64")
    b = px.compute("gradnorm", net, input_shape=(4, 3, 8, 8), dtype="float32")
    assert a == pytest.approx(b, rel=1e-4)

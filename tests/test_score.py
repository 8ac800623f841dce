import math

import pytest

from maedet import score as score_mod
from maedet import zoo
from maedet.score import ScoreError, ScoreSettings, score
from maedet.structure import Block, Structure, structure_from_rows, validate

SMALL = structure_from_rows([("Conv", 3, 3, 16, 2, None, 1), ("ResBlock", 5, 16, 24, 2, 8, 1),
                             ("ResBlock", 3, 24, 64, 2, 16, 2), ("ResBlock", 5, 64, 128, 2, 16, 3),
                             ("ResBlock", 3, 128, 256, 2, 32, 3)], name="small")


def test_closed_form_is_the_fan_in_formula_by_hand():
    s = structure_from_rows([("Conv", 3, 3, 8, 2, None, 1), ("ResBlock", 5, 8, 32, 2, 4, 1)])
    # stem: 1/2 log(3*3^2); bottleneck 1: 1/2 log(8 * 4^2 * 5^2); bottleneck 2: 1/2 log(32 * 4^2 * 5^2)
    h1 = math.log(8) + 0.5 * math.log(27)
    h2 = math.log(32) + 0.5 * (math.log(27) + math.log(8 * 16 * 25) + math.log(32 * 16 * 25))
    r = score(s, "closed-form", alpha=(2, 3))
    assert r.stage_scores == pytest.approx([h1, h2], rel=1e-12)
    assert r.score == pytest.approx(2 * h1 + 3 * h2, rel=1e-12)


def test_expected_equals_closed_form_without_padding():
    # 1x1 kernels only: zero padding never matters, so the expectation is the fan-in formula
    s = validate(Structure((Block("conv", 1, 3, 16, 2), Block("bottleneck", 1, 16, 32, 2, 8, 3))))
    a = score(s, "expected", (1, 1)).score
    b = score(s, "closed-form", (1, 1)).score
    assert a == pytest.approx(b, rel=1e-12)


def test_expected_tracks_forward_closed_form_does_not():
    for res in (32, 64):
        st = ScoreSettings(res, batch_size=8, repeats=6, seed=1)
        fw = score(SMALL, "forward", settings=st).score
        ex = score(SMALL, "expected", settings=st).score
        cf = score(SMALL, "closed-form", settings=st).score
        assert abs(fw - ex) / fw < 0.004, (res, fw, ex)
        assert abs(cf - fw) > 5 * abs(fw - ex), (res, fw, ex, cf)
    # the padding deficit shrinks as the resolution grows
    e = [score(SMALL, "expected", settings=ScoreSettings(r)).score for r in (64, 128, 384, 1024)]
    assert e == sorted(e) and e[-1] < score(SMALL, "closed-form").score


def test_forward_is_seeded_and_batch_independent():
    st = ScoreSettings(32, batch_size=4, repeats=2, seed=3)
    a, b = score(SMALL, "forward", settings=st), score(SMALL, "forward", settings=st)
    assert a.score == b.score and a.stage_scores == b.stage_scores
    c = score(SMALL, "forward", settings=ScoreSettings(32, batch_size=4, repeats=2, seed=4))
    assert c.score != a.score and abs(c.score / a.score - 1) < 0.01


def test_float64_changes_little():
    a = score(SMALL, "forward", settings=ScoreSettings(32, batch_size=4, repeats=1, dtype="float32")).score
    b = score(SMALL, "forward", settings=ScoreSettings(32, batch_size=4, repeats=1, dtype="float64")).score
    assert abs(a / b - 1) < 1e-5  # same draws; only the arithmetic differs


def test_500_layer_network_scores_without_overflow():
    s = validate(Structure((Block("conv", 3, 3, 8, 2), Block("bottleneck", 3, 8, 16, 2, 8, 40),
                            Block("bottleneck", 3, 16, 16, 2, 8, 40), Block("bottleneck", 3, 16, 16, 2, 8, 40),
                            Block("bottleneck", 3, 16, 16, 2, 8, 46))))
    assert s.layers == 499
    for est in ("forward", "paper-text", "expected", "closed-form"):
        r = score(s, est, settings=ScoreSettings(64, batch_size=2, repeats=1))
        assert math.isfinite(r.score) and all(math.isfinite(v) for v in r.stage_scores)


def test_paper_text_multiplies_by_feature_size():
    st = ScoreSettings(64, batch_size=4, repeats=1)
    r = score(SMALL, "paper-text", alpha=(1, 1, 1, 1, 1), settings=st)
    # H(C_s) / (H_s W_s) is an entropy per position of order log-std sums, not of order H_s W_s
    sizes = [32 * 32, 16 * 16, 8 * 8, 4 * 4, 2 * 2]
    per_pos = [h / n for h, n in zip(r.stage_scores, sizes)]
    assert all(-50 < v < 100 for v in per_pos)


def test_alpha_must_match_stages_and_estimator_must_exist():
    with pytest.raises(ScoreError, match="5 stages"):
        score(zoo.get("maedet-m"), "closed-form", alpha=(1, 1, 6))
    with pytest.raises(ScoreError, match="unknown estimator"):
        score(zoo.get("maedet-m"), "telepathy")
    with pytest.raises(ScoreError):
        ScoreSettings(batch_size=0)


def test_non_finite_is_an_error(monkeypatch):
    monkeypatch.setitem(score_mod.ESTIMATORS, "broken", lambda s, st: [float("nan")] * s.num_stages)
    with pytest.raises(ScoreError, match="non-finite"):
        score(SMALL, "broken")


def test_random_estimator_is_deterministic_per_structure():
    a = score(SMALL, "random", None).score
    assert a == score(SMALL, "random", None).score
    assert a != score(zoo.get("maedet-m"), "random", None).score
    assert 0 <= a < 1

"""The Figure 8-10 seed study: input checks, one row per search, resumption and the reach count."""
import pandas as pd
import pytest

from maedet.seed_study import SETTINGS, converged_at, reach_summary, run_study

TINY = dict(population=8, iterations=60, resolution=64, log_every=10)


@pytest.mark.parametrize("kw, msg", [
    ({"figures": [7]}, "unknown figure"),
    ({"seeds": []}, "seeds must be"),
    ({"seeds": [1, 1]}, "seeds must be"),
    ({"seeds": [-1]}, "seeds must be"),
    ({"seeds": range(2000)}, "seeds must be"),
    ({"workers": 0}, "workers must be"),
])
def test_bad_input_is_rejected_before_anything_runs(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        run_study(tmp_path / "s", **{"figures": [10], "seeds": [0], **TINY, **kw})
    assert not (tmp_path / "s").exists()


def test_unknown_space_is_rejected_before_anything_runs(tmp_path):
    with pytest.raises(Exception, match="space"):
        run_study(tmp_path / "s", figures=[10], spaces=["paper", "nope"], seeds=[0], **TINY)
    assert not (tmp_path / "s").exists()


def test_one_row_per_search_and_resume_gives_the_same_rows(tmp_path):
    runs = run_study(tmp_path, figures=[9, 10], spaces=["paper", "released"], seeds=[0, 1], **TINY)
    assert len(runs) == 8
    assert set(runs["figure"]) == {"figure9", "figure10"} and set(runs["space"]) == {"paper", "released"}
    assert (runs["flops_224"] <= 4.4e9).all() and (runs["layers"] <= 91).all()
    assert (runs[["C1", "C2", "C3", "C4", "C5"]].sum(axis=1) == runs["layers"]).all()
    assert runs["converged_at"].between(1, TINY["iterations"]).all()
    # each search has its own resumable directory; a second call only reads them back
    assert (tmp_path / "figure10-released" / "seed1").is_dir()
    again = run_study(tmp_path, figures=[9, 10], spaces=["paper", "released"], seeds=[0, 1], **TINY)
    pd.testing.assert_frame_equal(runs, again)
    # the released space runs a different search from the same seed
    a = runs.set_index(["figure", "space", "seed"])["score"]
    assert a[("figure10", "paper", 0)] != a[("figure10", "released", 0)]


def test_two_workers_give_the_same_rows_as_one(tmp_path):
    one = run_study(tmp_path / "one", figures=[8], spaces=["paper"], seeds=[0, 1], **TINY)
    two = run_study(tmp_path / "two", figures=[8], spaces=["paper"], seeds=[0, 1], workers=2, **TINY)
    pd.testing.assert_frame_equal(one, two)


def test_converged_at_is_the_first_logged_iteration_near_the_final_score(tmp_path):
    run_study(tmp_path, figures=[10], spaces=["paper"], seeds=[0], **TINY)
    d = tmp_path / "figure10-paper" / "seed0"
    from maedet.search import load_trajectory

    traj = load_trajectory(d)
    final = float(traj["best_score"].iloc[-1])
    it = converged_at(d, final)
    assert traj.loc[traj["iter"] == it, "best_score"].iloc[0] >= final * (1 - 0.001)
    earlier = traj[traj["iter"] < it]
    assert (earlier["best_score"] < final * (1 - 0.001)).all()


def test_reach_summary_counts_seeds_within_the_tolerance():
    frame = pd.DataFrame({"figure": ["figure10"] * 4, "space": ["paper"] * 4, "seed": range(4),
                          "score": [1000.0, 999.2, 998.9, 1003.0], "converged_at": [10, 20, 30, 40]})
    s = reach_summary(frame, {"figure10": 1000.0}).iloc[0]
    # 0.1% of 1000 is 1.0: 1000, 999.2 and 1003 reach; 998.9 does not
    assert s["reach"] == 3 and s["seeds"] == 4
    assert s["min"] == 998.9 and s["max"] == 1003.0 and s["median_converged_at"] == 25


def test_settings_name_published_structures_of_the_zoo():
    from maedet import zoo

    for f, s in SETTINGS.items():
        assert zoo.get(s["published"]).layers <= 91, f
    assert SETTINGS[8]["alpha"] == (0, 0, 0, 0, 1) and SETTINGS[10]["mutation"] == "coarse-to-fine"

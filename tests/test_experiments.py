"""Run specification, run cache ids, seed statistics and the verdicts the training tables print."""
import math

import pandas as pd
import pytest

from maedet import experiments as ex


def test_run_id_is_content_addressed():
    a = ex.detect_run("m", "maedet-m", "fcos", 0, {"epochs": 12})
    b = ex.detect_run("another label", "maedet-m", "fcos", 0, {"epochs": 12})
    assert a.id == b.id  # the label is only a name in tables
    assert a.id != ex.detect_run("m", "maedet-m", "fcos", 1, {"epochs": 12}).id
    assert a.id != ex.detect_run("m", "maedet-m", "gfl", 0, {"epochs": 12}).id
    assert a.id != ex.detect_run("m", "maedet-m", "fcos", 0, {"epochs": 13}).id
    assert a.id != ex.detect_run("m", "resnet50", "fcos", 0, {"epochs": 12}).id
    pre = ex.classify_run("m", "maedet-m", 0, {"epochs": 2})
    c = ex.detect_run("m", "maedet-m", "fcos", 0, {"epochs": 12}, pretrained=pre)
    assert c.pretrained == pre.id and c.id != a.id and pre.id.startswith("classify-cls-s0-")


def test_run_all_skips_finished_runs(tmp_path):
    r = ex.detect_run("m", "maedet-m", "fcos", 0, {"epochs": 1})
    d = r.dir(tmp_path)
    d.mkdir(parents=True)
    (d / "results.json").write_text('{"AP": 1.5}')
    led = tmp_path / "ledger"
    assert ex.run_all([r, r], root=tmp_path, progress=False, ledger_root=led) == [{"AP": 1.5}, {"AP": 1.5}]
    assert len(list(led.glob("*.json"))) == 1  # the cached run is now recorded in the ledger


def test_seed_stats_and_verdict_come_from_a_confidence_interval_not_the_seed_ranges():
    a, b = ex.seed_stats([3.0, 4.0, None]), ex.seed_stats([1.0, 2.0])
    assert a == {"mean": 3.5, "std": pytest.approx(math.sqrt(0.5)), "min": 3.0, "max": 4.0, "n": 2}
    # the seed ranges do not overlap, but with two seeds per arm Welch's 95% interval (2 +- 3.04) holds 0
    v = ex.verdict(a, b, "A", "B")
    assert v.startswith("A >= B on the mean, not resolved") and "-1.04 to 5.04" in v
    big, small = ex.seed_stats([10.0, 10.5, 11.0, 10.2]), ex.seed_stats([5.0, 5.4, 4.8, 5.1])
    assert ex.verdict(big, small, "A", "B").startswith("A > B (Welch t, 95% CI")
    assert ex.verdict(small, big, "B", "A").startswith("A > B (Welch t, 95% CI")
    assert ex.verdict(ex.seed_stats([]), a, "x", "y") == "no data"
    assert ex.seed_stats([2.0])["std"] == 0.0
    assert "one seed" in ex.verdict(ex.seed_stats([2.0]), ex.seed_stats([1.0]), "x", "y")


def test_compare_pairs_by_seed_and_matches_scipy():
    from scipy import stats as sps

    m, r = [10.0, 12.0, 11.0, 10.5], [8.0, 9.9, 9.1, 8.4]
    rows = [{"label": "m", "head": "fcos", "seed": k, "AP": v} for k, v in enumerate(m)]
    rows += [{"label": "r", "head": "fcos", "seed": k, "AP": v} for k, v in enumerate(r)]
    rows += [{"label": "m", "head": "gfl", "seed": 0, "AP": 5.0}]
    df = pd.DataFrame(rows)
    s = ex.summary(df, metrics=("AP",))
    assert list(zip(s.label, s["head"])) == [("m", "fcos"), ("r", "fcos"), ("m", "gfl")]
    assert s.seeds.tolist() == [4, 4, 1]
    c = ex.compare(df, "m", "r", "AP", head="fcos")
    ci = sps.ttest_rel(m, r).confidence_interval(0.95)
    assert c["rule"].startswith("paired") and c["lo"] == pytest.approx(ci.low) and c["hi"] == pytest.approx(ci.high)
    assert c["difference"] == pytest.approx(2.025) and c["verdict"].startswith("m > r (paired t") and c["head"] == "fcos"
    # different seeds in the two arms: Welch, as scipy's unequal-variance t test gives it
    df2 = df[~((df.label == "r") & (df.seed == 3))]
    c2 = ex.compare(df2, "m", "r", "AP", head="fcos")
    ci2 = sps.ttest_ind(m, r[:3], equal_var=False).confidence_interval(0.95)
    assert c2["rule"].startswith("Welch") and c2["lo"] == pytest.approx(ci2.low) and c2["hi"] == pytest.approx(ci2.high)
    assert ex.compare(df, "m", "r", "AP", head="gfl")["verdict"] == "no data"


def test_ensure_data_names_the_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits.*make data"):
        ex.ensure_data(tmp_path, ("digits",))
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "meta.json").write_text("{}")
    assert ex.ensure_data(tmp_path, ("digits",)) == tmp_path


def test_ensure_data_accepts_a_coco_directory(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.json").write_text("{}")
    assert ex.ensure_data(tmp_path, ("digits",)) == tmp_path
    with pytest.raises(FileNotFoundError, match="digits_cls"):
        ex.ensure_data(tmp_path, ("digits", "digits_cls"))


def test_collect_pools_runs_by_structure_across_stages(tmp_path):
    import json

    from maedet import zoo

    cache, art = tmp_path / "cache", tmp_path / "artifacts"
    rows = {"t1": [], "t2": []}
    for stage, name, head, seed, ap, epochs in [("t1", "resnet50", "fcos", 0, 3.0, 12), ("t1", "resnet50", "fcos", 1, 4.0, 12),
                                                ("t1", "maedet-m", "fcos", 0, 5.0, 12), ("t1", "maedet-m", "gfl", 0, 20.0, 12),
                                                ("t2", "maedet-m", "fcos", 0, 5.0, 12), ("t2", "maedet-m", "fcos", 1, 6.0, 12),
                                                ("t2", "maedet-s", "fcos", 0, 9.0, 4)]:
        r = ex.detect_run(f"{name} in {stage}", name, head, seed, {"epochs": epochs})
        (cache / r.id).mkdir(parents=True, exist_ok=True)
        (cache / r.id / "run.json").write_text(json.dumps({"backbone": r.backbone}))
        rows[stage].append({"label": r.label, "head": head, "seed": seed, "kind": "detect", "init": "scratch",
                            "run": r.id, "AP": ap, "epochs": epochs})
    for stage, rs in rows.items():
        (art / stage).mkdir(parents=True)
        pd.DataFrame(rs).to_csv(art / stage / "runs.csv", index=False)
    df = ex.collect(["t1", "t2"], "fcos", epochs=12, artifacts=art, root=cache).set_index("digest")
    m, r50 = zoo.get("maedet-m").digest(), zoo.get("resnet50").digest()
    assert set(df.index) == {m, r50}                      # maedet-s ran another schedule; GFL is another head
    assert df.loc[m, "seeds"] == 2 and df.loc[m, "AP"] == 5.5   # seed 0 counted once although two stages list it
    assert df.loc[m, "stages"] == "t1,t2" and df.loc[r50, "AP"] == 3.5
    with pytest.raises(FileNotFoundError, match="t3"):
        ex.collect(["t3"], "fcos", artifacts=art, root=cache)
    # a machine without the run cache (stages rendered from the ledger): structures come from the ledger records
    from maedet import ledger

    led = tmp_path / "ledger"
    for stage, rs in rows.items():
        for row in rs:
            r = ex.detect_run(row["label"], row["label"].split(" in ")[0], row["head"], row["seed"],
                              {"epochs": row["epochs"]})
            ledger.write(r, {"AP": row["AP"], "metrics": {"AP": row["AP"]}}, led)
    again = ex.collect(["t1", "t2"], "fcos", epochs=12, artifacts=art, root=tmp_path / "empty", ledger_root=led)
    pd.testing.assert_frame_equal(again.set_index("digest"), df)
    with pytest.raises(FileNotFoundError, match="nor in the ledger"):
        ex.collect(["t1"], "fcos", artifacts=art, root=tmp_path / "empty", ledger_root=tmp_path / "no-ledger")
    # after a change of the training code the run ids (cache folders) are new, the ledger digests are not; a run
    # not trained yet (no AP) is left out
    for stage, rs in rows.items():
        new = []
        for row in rs:
            r = ex.detect_run(row["label"], row["label"].split(" in ")[0], row["head"], row["seed"],
                              {"epochs": row["epochs"]})
            new.append(dict(row, run=row["run"][:-4] + "beef", digest=ledger.digest(r)))
        new.append(dict(new[0], run="detect-fcos-s9-000000000000", seed=9, AP=float("nan"), digest="0" * 16))
        pd.DataFrame(new).to_csv(art / stage / "runs.csv", index=False)
    moved = ex.collect(["t1", "t2"], "fcos", epochs=12, artifacts=art, root=tmp_path / "empty", ledger_root=led)
    pd.testing.assert_frame_equal(moved.set_index("digest"), df)


def test_runs_missing_from_the_ledger_are_not_seeds():
    import pandas as pd

    st = ex.seed_stats([30.0, float("nan"), 32.0, None])
    assert st["n"] == 2 and st["mean"] == 31.0
    df = pd.DataFrame({"label": ["a"] * 3, "head": ["fcos"] * 3, "seed": [0, 1, 2], "AP": [30.0, 32.0, float("nan")]})
    s = ex.summary(df, metrics=("AP",))
    assert s.loc[0, "seeds"] == 2 and s.loc[0, "AP"] == 31.0
    empty = ex.summary(df.assign(AP=float("nan")), metrics=("AP",))
    assert empty.loc[0, "seeds"] == 0


def test_dataset_adaptations_apply_to_their_dataset_only():
    from maedet import ledger

    base = {"img_scale": [160, 160], "epochs": 36, "lr": 0.02, "heads": {"fcos": {"lr": 0.01}}}
    adapted = dict(base, datasets={"treecrowns": {"img_scale": [320, 320], "epochs": 96, "lr": 0.005}})
    digits, digits2 = (ex.detect_run("r", "resnet50", "fcos", 0, p) for p in (base, adapted))
    assert digits.profile == digits2.profile == {"img_scale": [160, 160], "epochs": 36, "lr": 0.01}
    assert ledger.digest(digits) == ledger.digest(digits2)  # the table leaves the digits runs' digests alone
    trees = ex.detect_run("r", "resnet50", "fcos", 0, adapted, dataset="treecrowns")
    assert trees.profile == {"img_scale": [320, 320], "epochs": 96, "lr": 0.005}  # the dataset's entry wins
    with pytest.raises(ValueError, match="datasets"):
        ex.detect_run("r", "resnet50", "fcos", 0, dict(base, datasets=[1]), dataset="treecrowns")
    with pytest.raises(ValueError, match="heads"):
        ex.detect_run("r", "resnet50", "fcos", 0, dict(base, datasets={"treecrowns": {"heads": {}}}),
                      dataset="treecrowns")

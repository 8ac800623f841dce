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


def test_seed_stats_and_verdict():
    a, b = ex.seed_stats([3.0, 4.0, None]), ex.seed_stats([1.0, 2.0])
    assert a == {"mean": 3.5, "std": pytest.approx(math.sqrt(0.5)), "min": 3.0, "max": 4.0, "n": 2}
    assert ex.verdict(a, b, "A", "B") == "A > B beyond the seed spread"
    assert ex.verdict(b, a, "B", "A") == "A > B beyond the seed spread"
    c = ex.seed_stats([1.5, 3.5])
    assert "not resolved" in ex.verdict(a, c, "A", "C") and ex.verdict(a, c, "A", "C").startswith("A >=")
    assert ex.verdict(ex.seed_stats([]), a, "x", "y") == "no data"
    assert ex.seed_stats([2.0])["std"] == 0.0
    assert "one seed" in ex.verdict(ex.seed_stats([2.0]), ex.seed_stats([1.0]), "x", "y")


def test_summary_and_compare():
    df = pd.DataFrame([
        {"label": "m", "head": "fcos", "seed": 0, "AP": 10.0},
        {"label": "m", "head": "fcos", "seed": 1, "AP": 12.0},
        {"label": "r", "head": "fcos", "seed": 0, "AP": 8.0},
        {"label": "r", "head": "fcos", "seed": 1, "AP": 9.0},
        {"label": "m", "head": "gfl", "seed": 0, "AP": 5.0},
    ])
    s = ex.summary(df, metrics=("AP",))
    assert list(zip(s.label, s["head"])) == [("m", "fcos"), ("r", "fcos"), ("m", "gfl")]
    assert s.AP.tolist() == [11.0, 8.5, 5.0] and s.seeds.tolist() == [2, 2, 1]
    c = ex.compare(df, "m", "r", "AP", head="fcos")
    assert c["difference"] == 2.5 and c["verdict"] == "m > r beyond the seed spread" and c["head"] == "fcos"


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

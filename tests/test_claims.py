"""The claims register evaluator (lib/maedet/claims.py): every test kind on small fixture outputs, the
superseded-operating-point rule, and clear errors for a bad register."""
import csv
import json

import pytest
import yaml

from maedet import claims, stats


def _csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _claim(kind, stage="t1", direction=">", **test):
    return {"id": f"c-{kind}", "item": "Table 1", "claim": "a beats b", "direction": direction,
            "paper": "+1", "stage": stage, "test": {"kind": kind, **test}}


@pytest.fixture
def root(tmp_path):
    a = [44.7, 45.9, 45.1, 43.4]
    b = [44.6, 43.8, 45.1, 45.8]
    rows = [{"head": "gfl", "label": lab, "seed": s, "AP": v}
            for lab, vals in (("m", a), ("r50", b)) for s, v in enumerate(vals)]
    rows += [{"head": "fcos", "label": "m", "seed": 0, "AP": 30.0}]
    _csv(tmp_path / "reports/t1/runs.csv", rows)
    _csv(tmp_path / "reports/costs/costs.csv",
         [{"model": "maedet-m", "gflops": 89.0, "paper_gflops": 89.9}])
    (tmp_path / "reports/metrics").mkdir(parents=True, exist_ok=True)
    (tmp_path / "reports/metrics/f7.json").write_text(json.dumps({"rank_pct": 3.0}))
    (tmp_path / "reports/metrics/seeds.json").write_text(json.dumps(
        {"m": {"final_scores": [10.0, 10.2, 9.9], "published": 10.5}}))
    params = {"profile": "default", "training": {"default": {"detector": {"epochs": 36, "lr": 0.02}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    lock = {"stages": {"t1": {"params": {"params.yaml": params}}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    return tmp_path


def test_runs_pairs_by_seed_and_matches_stats(root):
    row = claims.evaluate(_claim("runs", file="reports/t1/runs.csv", where={"head": "gfl"}, a="m", b="r50",
                                 value="AP", pair="seed"), root)
    ref = stats.paired_interval([44.7, 45.9, 45.1, 43.4], [44.6, 43.8, 45.1, 45.8])
    assert row["ours"] == pytest.approx(ref["diff"]) and row["lo"] == pytest.approx(ref["lo"])
    assert row["n_a"] == row["n_b"] == 4
    assert row["verdict"] == "not resolved"  # the interval holds 0
    assert row["profile"] == "default" and row["epochs"] == 36


def test_runs_floor_leaves_a_non_learning_arm_unresolved(root):
    c = _claim("runs", file="reports/t1/runs.csv", where={"head": "gfl"}, a="m", b="r50", value="AP", pair="seed")
    assert claims.evaluate({**c, "test": {**c["test"], "floor": 10}}, root)["verdict"] == "not resolved"
    row = claims.evaluate({**c, "test": {**c["test"], "floor": 44.8}}, root)
    assert row["verdict"].startswith("not resolved: m does not learn at this operating point (mean AP 44.8 over 4 run(s)")
    assert row["ours"] is not None  # the difference is still shown


def test_runs_falls_back_to_welch_when_seeds_differ(root):
    rows = claims._rows(root / "reports/t1/runs.csv")
    rows = [r for r in rows if not (r["label"] == "r50" and r["seed"] == "3")]
    _csv(root / "reports/t1/runs.csv", rows)
    row = claims.evaluate(_claim("runs", file="reports/t1/runs.csv", where={"head": "gfl"}, a="m", b="r50",
                                 value="AP"), root)
    assert (row["n_a"], row["n_b"]) == (4, 3)
    assert "welch" in row["rule"].lower()


def test_runs_with_one_arm_missing_is_not_tested(root):
    row = claims.evaluate(_claim("runs", file="reports/t1/runs.csv", where={"head": "fcos"}, a="m", b="r50",
                                 value="AP"), root)
    assert row["verdict"].startswith("not tested here") and "r50" in row["verdict"]


def test_missing_file_is_not_tested(root):
    row = claims.evaluate(_claim("runs", file="reports/nope/runs.csv", a="m", b="r50", value="AP"), root)
    assert row["verdict"] == "not tested here: reports/nope/runs.csv is not there (stage not run)"


def test_clear_difference_holds_and_reverse_contradicts(root):
    rows = [{"label": lab, "seed": s, "AP": base + 0.1 * s}
            for lab, base in (("m", 40.0), ("r50", 38.0)) for s in range(4)]
    _csv(root / "reports/t1/runs.csv", rows)
    spec = dict(file="reports/t1/runs.csv", a="m", b="r50", value="AP")
    assert claims.evaluate(_claim("runs", **spec), root)["verdict"] == "holds"
    assert claims.evaluate(_claim("runs", direction="<", **spec), root)["verdict"] == "contradicted"
    assert claims.evaluate(_claim("runs", direction="=", **spec), root)["verdict"] == "contradicted"


def test_superseded_operating_point_is_not_resolved(root):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["training"]["default"]["detector"]["epochs"] = 72
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    rows = [{"label": lab, "seed": s, "AP": base + 0.1 * s}
            for lab, base in (("m", 40.0), ("r50", 38.0)) for s in range(4)]
    _csv(root / "reports/t1/runs.csv", rows)
    row = claims.evaluate(_claim("runs", file="reports/t1/runs.csv", a="m", b="r50", value="AP"), root)
    assert row["verdict"] == ("not resolved: rendered at a superseded operating point "
                              "(36 epochs; changed since: epochs)")
    assert row["ours"] == pytest.approx(2.0)  # the numbers are still shown


def test_match_bound_seeds_none_pending(root):
    m = claims.evaluate(_claim("match", stage="costs", file="reports/costs/costs.csv", row={"model": "maedet-m"},
                               ours="gflops", paper="paper_gflops", tol_pct=2), root)
    assert m["verdict"] == "holds" and m["ours"] == pytest.approx(89.0)
    m = claims.evaluate(_claim("match", stage="costs", file="reports/costs/costs.csv", row={"model": "maedet-m"},
                               ours="gflops", paper="paper_gflops", tol_pct=0.5), root)
    assert m["verdict"] == "contradicted"
    b = claims.evaluate(_claim("bound", stage="f7", file="reports/metrics/f7.json", key="rank_pct", below=5), root)
    assert b["verdict"] == "holds"
    b = claims.evaluate(_claim("bound", stage="f7", file="reports/metrics/f7.json", key="rank_pct", below=2), root)
    assert b["verdict"] == "contradicted"
    # a measurement that only bounds the quantity from above cannot contradict a bound it exceeds
    u = dict(stage="f7", file="reports/metrics/f7.json", key="rank_pct", measured_is="upper_bound")
    assert claims.evaluate(_claim("bound", below=5, **u), root)["verdict"] == "holds"
    b = claims.evaluate(_claim("bound", below=2, **u), root)
    assert b["verdict"].startswith("not resolved: the measured value 3 is an upper bound")
    assert claims.category(b["verdict"]) == "not resolved"
    with pytest.raises(claims.ClaimError, match="measured_is"):
        claims.evaluate(_claim("bound", below=2, **{**u, "measured_is": "lower"}), root)
    s = claims.evaluate(_claim("seeds", stage="s", file="reports/metrics/seeds.json", key="m", direction="<"), root)
    ref = stats.one_sample_interval([10.0, 10.2, 9.9], 10.5)
    assert s["hi"] == pytest.approx(ref["hi"]) and s["verdict"] == "holds"
    n = claims.evaluate({"id": "x", "item": "Table 3", "claim": "c", "test": {"kind": "none", "reason": "no data"}},
                        root)
    assert n["verdict"] == "not tested here: no data"
    p = claims.evaluate(_claim("pending"), root)
    assert p["verdict"].startswith("not tested here")


def test_counts_item_status_and_markdown(root):
    rows = [{"item": "Table 1", "verdict": v, "claim": "c", "id": str(i), "paper": "", "ours": None, "lo": None,
             "hi": None, "n_a": None, "n_b": None, "rule": "", "profile": None, "epochs": None}
            for i, v in enumerate(["holds", "holds", "not resolved", "not tested here: x"])]
    assert claims.counts(rows) == {"holds": 2, "contradicted": 0, "not resolved": 1, "not tested here": 1}
    assert claims.item_status(rows, "Table 1") == "2 holds, 1 not resolved, 1 not tested here"
    assert claims.item_status(rows, "Table 9") is None
    md = claims.markdown(rows)
    assert "**4 claims: 2 holds" in md and md.count("\n| c (`") == 4
    with pytest.raises(claims.ClaimError, match="unknown verdict"):
        claims.category("reproduced")


@pytest.mark.parametrize("entries, message", [
    ("{a: 1}", "expected a list"),
    ("- {id: a, item: T, claim: c}", "lacks test"),
    ("- {id: a, item: T, claim: c, stage: s, test: {kind: runs}}\n- {id: a, item: T, claim: c, stage: s, "
     "test: {kind: runs}}", "duplicate claim id 'a'"),
    ("- {id: a, item: T, claim: c, test: {kind: runs}}", "names no stage"),
    ("- {id: a, item: T, claim: c, stage: s, test: {kind: magic}}", "unknown test kind 'magic'"),
    ("- {id: a, item: T, claim: c, stage: s, direction: '>=', test: {kind: runs}}", "direction must be"),
])
def test_bad_register_is_rejected(tmp_path, entries, message):
    p = tmp_path / "claims.yaml"
    p.write_text(entries)
    with pytest.raises(claims.ClaimError, match=message):
        claims.load(p)


def test_index_never_says_reproduced():
    """Item statuses come from the claims' verdicts: the word "reproduced" appears nowhere in the index."""
    from pathlib import Path

    text = Path("reports/README.md").read_text()
    assert "reproduced" not in text.lower()
    assert "claims:" in text


def test_absent_register(tmp_path):
    with pytest.raises(claims.ClaimError, match="does not exist"):
        claims.load(tmp_path / "none.yaml")


def test_committed_register_loads_and_unbuilt_stages_give_no_verdict():
    """Every claim names a stage of dvc.yaml, or one not built yet, whose claims are then "not tested here"."""
    entries = claims.load("docs/claims.yaml")
    stages = set(yaml.safe_load(open("dvc.yaml"))["stages"])
    for c in entries:
        if c["test"]["kind"] != "none" and c["stage"] not in stages:
            assert claims.evaluate(c)["verdict"].startswith("not tested here"), c["id"]


def test_paper_effect_parsing_and_note(root):
    assert claims.paper_effect("+1.8 (44.5 vs 42.7)") == 1.8
    assert claims.paper_effect("-0.2 (42.5 vs 42.7)") == -0.2
    assert claims.paper_effect(2.5) == 2.5
    assert claims.paper_effect("1:1:6 - 4:1:1 = +5.5") is None  # a ratio first: no number taken
    c = _claim("runs", file="reports/t1/runs.csv", where={"head": "gfl"}, a="m", b="r50", value="AP")
    c["paper"], c["metric"] = "+5.0 (50 vs 45)", "AP"
    row = claims.evaluate(c, root)
    assert row["verdict"] == "not resolved; the paper's (COCO) effect +5 lies outside our 95% CI"
    c["metric"] = "final multi-scale score"  # a zero-shot effect is not a COCO one
    assert claims.evaluate(c, root)["verdict"] == "not resolved; the paper's effect +5 lies outside our 95% CI"
    assert claims.category(row["verdict"]) == "not resolved"


def test_basis_reads_a_claims_own_schedule():
    """A claim whose runs use another schedule than the stage's default (Table 5's transfer) reports those
    epochs, read from the parameters the stage last ran with."""
    from pathlib import Path

    from maedet import claims

    recorded = {"profile": "default", "training": {"default": {"detector": {"epochs": 36}}},
                "table5": {"default": {"epochs": 36, "transfer": {"detector": {"epochs": 96}}}}}
    lock = {"table5": {"params": {"params.yaml": recorded}}}
    params = {"training": {"default": {"detector": {"epochs": 36}}}}
    assert claims.basis("table5", Path("."), lock, params)["epochs"] == 36
    b = claims.basis("table5", Path("."), lock, params, "table5.{profile}.transfer.detector")
    assert b["epochs"] == 96 and b["stale"] == []
    assert claims.basis("table5", Path("."), lock, params, "table5.{profile}.nothing")["epochs"] == 36


def test_claims_stage_depends_on_every_file_its_claims_read():
    """`dvc repro` re-renders reports/claims.md whenever an output a claim reads changes (a new ledger run that
    changes reports/table3/runs.csv must change the verdict, not leave a stale one)."""
    deps = yaml.safe_load(open("dvc.yaml"))["stages"]["claims"]["deps"]
    files = {c["test"]["file"] for c in claims.load("docs/claims.yaml") if c["test"].get("file")}
    assert files
    uncovered = sorted(f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
    assert not uncovered, f"the claims stage lacks these deps: {uncovered}"

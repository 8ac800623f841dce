import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maedet.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_flops_json(capsys):
    rc, out, _ = run(capsys, "flops", "maedet-m", "--resolution", "1280x800", "--json")
    d = json.loads(out)
    assert rc == 0 and d["layers"] == 91 and abs(d["macs"] / 89.9e9 - 1) < 0.003 and abs(d["params"] / 25.8e6 - 1) < 0.003
    assert d["resolution"] == {"height": 800, "width": 1280} and len(d["stage_macs"]) == 5


def test_score_json_has_stage_values(capsys):
    rc, out, _ = run(capsys, "score", "maedet-s", "--estimator", "closed-form", "--alpha", "0,0,1,1,6", "--json")
    d = json.loads(out)
    assert rc == 0 and len(d["stage_scores"]) == 5
    assert d["score"] == pytest.approx(sum(a * h for a, h in zip([0, 0, 1, 1, 6], d["stage_scores"])))


def test_search_result_feeds_every_other_command(tmp_path, capsys):
    out = tmp_path / "s"
    rc, _, _ = run(capsys, "search", "--init", "init", "--estimator", "closed-form", "--budget-flops", "2.5G",
                   "--budget-layers", "40", "--population", "8", "--iterations", "60", "--out", str(out),
                   "--no-progress")
    assert rc == 0
    assert {p.name for p in out.iterdir()} >= {"best.json", "trajectory.jsonl", "checkpoint.json", "config.json"}
    rc, o, _ = run(capsys, "flops", str(out / "best.json"), "--json")
    assert rc == 0 and json.loads(o)["macs"] <= 2.5e9 and json.loads(o)["layers"] <= 40
    rc, o, _ = run(capsys, "score", str(out / "best.json"), "--estimator", "closed-form", "--json")
    assert rc == 0 and json.loads(o)["score"] == pytest.approx(json.loads((out / "best.json").read_text())["score"])


@pytest.mark.parametrize("argv,needle", [
    (["flops", "no-such-net"], "neither a zoo name"),
    (["score", "maedet-m", "--alpha", "1,1"], "5 stages"),
    (["score", "maedet-m", "--estimator", "nope"], "unknown estimator"),
    (["flops", "maedet-m", "--resolution", "12x"], "resolution"),
    (["search", "--init", "init", "--budget-flops", "1G", "--iterations", "5", "--out", "OUT"], "already breaks"),
    (["search", "--init", "init", "--mutation", "coarse", "--alpha", "1,2,3", "--budget-layers", "91",
          "--iterations", "5", "--out", "OUT"],
     "alpha has 3"),
])
def test_bad_input_clear_error_nonzero_exit_nothing_written(tmp_path, capsys, argv, needle):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and needle in err and err.count("\n") == 1 and out == ""
    assert not (tmp_path / "out").exists()


def test_help_documents_every_command():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    top = subprocess.run([sys.executable, "-m", "maedet", "--help"], capture_output=True, text=True, env=env)
    assert top.returncode == 0
    for cmd in ("zoo", "flops", "score", "search", "data"):
        assert cmd in top.stdout
    for cmd in ("zoo", "flops", "score", "search"):
        h = subprocess.run([sys.executable, "-m", "maedet", cmd, "--help"], capture_output=True, text=True, env=env)
        assert h.returncode == 0 and "usage: maedet " + cmd in h.stdout


def test_train_probe_records_go_to_the_probe_ledger_and_bad_fields_fail_before_training(tmp_path, capsys,
                                                                                         monkeypatch):
    from maedet import experiments as ex
    from maedet import ledger

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(ledger, "PROBES", tmp_path / "probes")
    rc, _, err = run(capsys, "train", "retinanet", "resnet50", "--set", "lr=0.02", "--dry-run")
    assert rc == 2 and "--probe" in err  # a changed profile matches no stage: it must be named a probe
    rc, _, err = run(capsys, "train", "retinanet", "resnet50", "--probe", "--set", "head_norm=BN", "--dry-run")
    assert rc == 2 and "head_norm must be" in err
    rc, _, err = run(capsys, "train", "gfl", "resnet50", "--probe", "--set", "anchor_base_scale=2", "--dry-run")
    assert rc == 2 and "RetinaNet setting" in err
    rc, _, err = run(capsys, "train", "retinanet", "resnet50", "--probe", "--set", "lr", "--dry-run")
    assert rc == 2 and "FIELD=VALUE" in err
    rc, out, _ = run(capsys, "train", "retinanet", "resnet50", "--probe", "--set", "lr=0.02", "anchor_base_scale=2",
                     "head_norm=GN", "--dry-run")
    assert rc == 0 and f"0 already in {tmp_path / 'probes'}" in out
    # the run it would train: the default profile's RetinaNet entry with the three fields changed
    import yaml

    det = yaml.safe_load(open(ROOT / "params.yaml"))["training"]["default"]["detector"]
    want = ex.detect_run("resnet50", "resnet50", "retinanet", 0,
                         {**{k: v for k, v in det.items() if k != "heads"}, **det["heads"]["retinanet"],
                          "lr": 0.02, "anchor_base_scale": 2, "head_norm": "GN"})
    assert want.id in out
    assert not (tmp_path / "probes").exists()  # a dry run writes nothing


def test_ledger_records_reads_several_folders(tmp_path):
    from maedet import experiments as ex
    from maedet import ledger

    a = ex.detect_run("r50", "resnet50", "fcos", 0, {"epochs": 2})
    b = ex.detect_run("r50", "resnet50", "retinanet", 0, {"epochs": 2, "head_norm": "GN"})
    ledger.write(a, {"AP": 1.0}, tmp_path / "runs")
    ledger.write(b, {"AP": 2.0}, tmp_path / "probes")
    both = ledger.records([tmp_path / "runs", tmp_path / "probes", tmp_path / "absent"])
    assert sorted(r["head"] for r in both) == ["fcos", "retinanet"]
    assert [r["head"] for r in ledger.records(tmp_path / "runs")] == ["fcos"]


def test_train_on_another_dataset_trains_the_runs_of_the_stage_that_transfers_to_it(tmp_path, capsys, monkeypatch):
    """`maedet train --dataset treecrowns` applies table5's transfer adaptations, so its records are the ones
    the table5 stage reads (same ledger digest); a probe's --set fields win over them."""
    import yaml

    from maedet import experiments as ex
    from maedet import ledger

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(ledger, "ROOT", tmp_path / "runs")
    params = yaml.safe_load(open(ROOT / "params.yaml"))
    det, tr = params["training"]["default"]["detector"], params["table5"]["default"]["transfer"]
    want = ex.detect_run("resnet50", "resnet50", "fcos", 3, dict(det, datasets={tr["dataset"]: tr["detector"]}),
                         dataset=tr["dataset"])
    assert want.profile["img_scale"] == tr["detector"]["img_scale"] and want.profile["lr"] == det["heads"]["fcos"]["lr"]
    rc, out, _ = run(capsys, "train", "fcos", "resnet50", "--dataset", tr["dataset"], "--seeds", "3", "--dry-run")
    assert rc == 0 and want.id in out
    monkeypatch.setattr(ledger, "PROBES", tmp_path / "probes")
    rc, out, _ = run(capsys, "train", "fcos", "resnet50", "--dataset", tr["dataset"], "--seeds", "3", "--probe",
                     "--set", "epochs=7", "--dry-run")
    probe = ex.detect_run("resnet50", "resnet50", "fcos", 3, dict(want.profile, epochs=7), dataset=tr["dataset"])
    assert rc == 0 and probe.id in out


def test_train_ssdlite_applies_table6_overrides(tmp_path, capsys, monkeypatch):
    """SSDLite runs belong to table6 alone: `maedet train ssdlite` trains them with its detector_overrides, so the
    records are the ones the stage reads."""
    import yaml

    from maedet import experiments as ex
    from maedet import ledger

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(ledger, "ROOT", tmp_path / "runs")
    params = yaml.safe_load(open(ROOT / "params.yaml"))
    det, over = params["training"]["default"]["detector"], params["table6"]["default"]["detector_overrides"]
    want = ex.detect_run("mobilenetv2-0.5", "mobilenetv2-0.5", "ssdlite", 1, dict(det, **over))
    assert want.profile["width_multiplier"] == over["width_multiplier"]
    rc, out, _ = run(capsys, "train", "ssdlite", "mobilenetv2-0.5", "--seeds", "1", "--dry-run")
    assert rc == 0 and want.id in out
    assert ex.head_adaptation(params, "default", "fcos") == {}

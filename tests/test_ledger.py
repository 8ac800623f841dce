"""The training-run ledger: present runs are not retrained, bad records are rejected and retrained, the digest
is stable across processes, and records are written atomically."""
import json
import subprocess
import sys

import pytest

from maedet import experiments as ex
from maedet import ledger

RESULTS = {"AP": 12.5, "AP50": 30.0, "metrics": {"AP": 12.5, "AP50": 30.0}, "train_seconds": 10.0,
           "epoch_losses": [{"loss": 1.0}], "val_history": {"1": {"AP": 12.5, "seconds": 1.0}}}


@pytest.fixture
def trainer(monkeypatch):
    calls = []

    def fake(run, data_root, root, out):
        calls.append(run.id)
        return dict(RESULTS)

    monkeypatch.setattr(ex, "_train", fake)
    return calls


def run():
    return ex.detect_run("r50", "resnet50", "fcos", 0, {"epochs": 2})


def test_a_recorded_run_is_not_retrained(tmp_path, trainer):
    led = tmp_path / "ledger"
    assert ex.execute(run(), root=tmp_path / "cache", ledger_root=led)["AP"] == 12.5
    assert ex.execute(run(), root=tmp_path / "cache", ledger_root=led)["AP"] == 12.5
    assert len(trainer) == 1
    rec = ledger.load(ledger.path(run(), led))
    assert rec["head"] == "fcos" and rec["backbone"] == "r50" and rec["metrics"]["AP"] == 12.5
    assert ledger.epoch_to(rec) == 1 and "x" in rec["machine"]


@pytest.mark.parametrize("bad", ["{not json", '{"digest": "x"}', "DIGEST"])
def test_bad_record_is_rejected_and_retrained(tmp_path, trainer, capsys, bad):
    led = tmp_path / "ledger"
    ex.execute(run(), root=tmp_path / "cache", ledger_root=led)
    p = ledger.path(run(), led)
    if bad == "DIGEST":
        rec = json.loads(p.read_text())
        rec["settings"]["seed"] = 7
        bad = json.dumps(rec)
    p.write_text(bad)
    ex.execute(run(), root=tmp_path / "cache", ledger_root=led)
    assert len(trainer) == 2
    assert str(p) in capsys.readouterr().err
    assert [q.read_text() for q in (led / "rejected").iterdir()] == [bad]  # moved aside, not overwritten
    ledger.load(p)  # the retrained run's record is valid


def test_digest_is_stable_across_processes():
    code = ("from maedet import experiments as ex, ledger; "
            "print(ledger.digest(ex.detect_run('r50', 'resnet50', 'fcos', 0, {'epochs': 2})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ledger.digest(run())
    assert ledger.digest(ex.detect_run("r50", "resnet50", "fcos", 1, {"epochs": 2})) != out


def test_an_optional_profile_field_enters_the_digest_only_when_set():
    from maedet import detectors

    assert set(detectors.OPTIONAL_PROFILE).isdisjoint(detectors.DEFAULT_PROFILE)
    base = ex.detect_run("r50", "resnet50", "retinanet", 0, {"epochs": 2})
    assert "anchor_base_scale" not in ledger.settings(base)["profile"]  # runs recorded before it keep their digest
    set_ = ex.detect_run("r50", "resnet50", "retinanet", 0, {"epochs": 2, "anchor_base_scale": 2})
    assert ledger.settings(set_)["profile"]["anchor_base_scale"] == 2 and ledger.digest(set_) != ledger.digest(base)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    p = tmp_path / "a.json"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ledger.os, "replace", boom)
    with pytest.raises(OSError):
        ledger._atomic_write(p, "{}")
    assert list(tmp_path.iterdir()) == []


def test_setting_names_every_adaptation_so_calibration_rows_do_not_pool_different_points():
    base = {"profile": {"lr": 0.01}}
    assert ledger.setting(base) == "lr 0.01"
    assert ledger.setting({"profile": {"lr": 0.01, "anchor_base_scale": 2}}) == "lr 0.01, anchor base scale 2"
    assert ledger.setting({"profile": {"lr": 0.02, "anchor_base_scale": 2, "head_norm": "GN"}}) == \
        "lr 0.02, anchor base scale 2, GN head"
    assert ledger.setting({"profile": {"lr": 0.02, "head_variant": "improved", "backbone_lr_mult": 1.0}}) == \
        "improved, lr 0.02, backbone lr x1"

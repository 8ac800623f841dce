"""benchmarks/bench_pipeline.py: the pipeline's cost is read from the timings a run leaves behind."""
import csv
import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "benchmarks" / "bench_pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"zs": {"cmd": "x"}, "train": {"cmd": "y"},
                                                                  "late": {"cmd": "z"}}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"training": {"default": {"parallel": 2}}}))
    (tmp_path / "logs").mkdir()
    ex = [("zs", 100.0, "2026-01-01T09:00:00"),          # an older, contended execution: not in the measurement
          ("zs", 60.0, "2026-01-01T10:01:00"), ("train", 300.0, "2026-01-01T10:06:05"),
          ("train", 120.0, "2026-01-01T10:20:00")]       # re-run after a parameter change
    (tmp_path / "logs" / "timings.jsonl").write_text("".join(
        json.dumps({"stage": s, "profile": "default", "seconds": sec, "finished": f}) + "\n" for s, sec, f in ex))
    (tmp_path / "artifacts" / "train").mkdir(parents=True)
    with open(tmp_path / "artifacts" / "train" / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["run", "train_seconds"])
        w.writeheader()
        w.writerows([{"run": "a", "train_seconds": 200}, {"run": "b", "train_seconds": 220},
                     {"run": "a", "train_seconds": 200}])
    return tmp_path


def test_since_sums_every_execution_and_flags_reruns(tmp_path):
    root = _repo(tmp_path)
    out = tmp_path / "out"
    assert _bench().main(["--root", str(root), "--since", "2026-01-01T10:00:00", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    rows = {r["stage"]: r for r in res["stages"]}
    assert rows["zs"]["wall_seconds"] == 60.0 and rows["zs"]["executions"] == 1
    assert rows["train"]["wall_seconds"] == 420.0 and rows["train"]["executions"] == 2
    assert rows["train"]["train_runs"] == 2 and rows["train"]["train_seconds"] == 420.0  # run a counted once
    assert rows["late"]["wall_seconds"] is None
    m = res["measured_run"]
    assert m["stages_not_run"] == ["late"] and m["stages_run_more_than_once"] == ["train"]
    assert res["sum_of_stage_wall_seconds"] == 480.0
    md = out.with_suffix(".md").read_text()
    assert "**8.0 min**" in md and "upper bound" in md


def test_since_without_executions_fails_cleanly(tmp_path):
    root = _repo(tmp_path)
    assert _bench().main(["--root", str(root), "--since", "2027-01-01T00:00:00", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o.json").exists()

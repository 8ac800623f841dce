import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maedet.search import Budget, Search, SearchError, make_config, random_sample
from maedet.structure import structure_from_rows

ROOT = Path(__file__).resolve().parents[1]
# a small start (Table 15's shape at a quarter of the width) so budgets of ~0.1-0.3 GMACs apply
TINY = structure_from_rows([("Conv", 3, 3, 16, 2, None, 1), ("ResBlock", 3, 16, 64, 2, 16, 1),
                            ("ResBlock", 3, 64, 128, 2, 32, 1), ("ResBlock", 3, 128, 256, 2, 64, 1),
                            ("ResBlock", 3, 256, 512, 2, 128, 1)], name="tiny-init")


def _cfg(**kw):
    base = dict(estimator="expected", budget=Budget(flops=0.3e9, layers=40), population=16, iterations=600,
                mutation="coarse-to-fine", seed=3, checkpoint_every=50)
    base.update(kw)
    return make_config(TINY, **base)


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.name != "best.json"}


def _best(d):
    b = json.loads((Path(d) / "best.json").read_text())
    b.pop("seconds_this_run", None)
    return b


def test_same_seed_same_trajectory(tmp_path):
    Search(_cfg(), tmp_path / "a").run()
    Search(_cfg(), tmp_path / "b").run()
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _best(tmp_path / "a") == _best(tmp_path / "b")
    Search(_cfg(seed=4), tmp_path / "c").run()
    assert _files(tmp_path / "a")["trajectory.jsonl"] != _files(tmp_path / "c")["trajectory.jsonl"]


def test_budget_and_coarse_to_fine_switch(tmp_path):
    cfg = _cfg()
    s = Search(cfg, tmp_path / "s")
    summary = s.run()
    assert summary["flops"] <= 0.3e9 and summary["layers"] <= 40
    for m in s.pop:
        assert m.macs <= 0.3e9 and m.layers <= 40
    lines = [json.loads(x) for x in (tmp_path / "s" / "trajectory.jsonl").read_text().splitlines()]
    assert len(lines) == cfg.iterations  # one line per iteration
    half = cfg.iterations // 2
    assert all(x["phase"] == "coarse" for x in lines[: half - 1])
    assert lines[half - 1]["phase"] == "fine" and lines[half - 1]["population"] <= 11
    assert all(x["phase"] == "fine" for x in lines[half - 1:])
    assert [x["best_score"] for x in lines] == sorted(x["best_score"] for x in lines)  # the best never drops
    # every change of best carries the structure, so any iteration's best can be rebuilt
    assert all(("best_structure" in b) == (a["best_digest"] != b["best_digest"]) for a, b in zip(lines, lines[1:]))


def test_crash_and_resume_is_exact(tmp_path, monkeypatch):
    Search(_cfg(), tmp_path / "ref").run()
    # crash in the middle of an iteration, after trajectory lines past the last checkpoint were written
    s = Search(_cfg(), tmp_path / "run")
    calls = {"n": 0}
    real = s.evaluate

    def flaky(st):
        calls["n"] += 1
        if calls["n"] == 140:
            raise RuntimeError("simulated kill")
        return real(st)

    monkeypatch.setattr(s, "evaluate", flaky)
    with pytest.raises(RuntimeError):
        s.run()
    Search(_cfg(), tmp_path / "run").run(resume=True)
    assert _files(tmp_path / "ref") == _files(tmp_path / "run")
    assert _best(tmp_path / "ref") == _best(tmp_path / "run")


def test_sigkill_and_resume_through_the_cli(tmp_path):
    TINY.save(tmp_path / "tiny.json")
    args = [sys.executable, "-m", "maedet", "search", "--init", str(tmp_path / "tiny.json"), "--estimator", "expected",
            "--budget-flops", "0.5G", "--budget-layers", "60", "--population", "32", "--iterations", "6000",
            "--checkpoint-every", "250", "--seed", "5", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    subprocess.run(args + ["--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True)
    p = subprocess.Popen(args + ["--out", str(tmp_path / "run")], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ck = tmp_path / "run" / "checkpoint.json"
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until it is well under way, then kill it hard
        if ck.exists() and json.loads(ck.read_text() or "{}").get("t", 0) >= 1000:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "run" / "best.json").exists()
    subprocess.run(args + ["--out", str(tmp_path / "run"), "--resume"], check=True, env=env, capture_output=True)
    assert _files(tmp_path / "ref") == _files(tmp_path / "run")
    assert _best(tmp_path / "ref") == _best(tmp_path / "run")
    # --resume on a finished search changes nothing
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "run").iterdir()}
    subprocess.run(args + ["--out", str(tmp_path / "run"), "--resume"], check=True, env=env, capture_output=True)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "run").iterdir()}
    assert before == after


def test_refuses_to_overwrite_or_mix_settings(tmp_path):
    Search(_cfg(iterations=50), tmp_path / "s").run()
    with pytest.raises(SearchError, match="not empty"):
        Search(_cfg(iterations=50), tmp_path / "s").run()
    with pytest.raises(SearchError, match="other settings"):
        Search(_cfg(iterations=50, seed=9), tmp_path / "s").run(resume=True)


def test_initial_structure_over_budget_writes_nothing(tmp_path):
    with pytest.raises(SearchError, match="already breaks the budget"):
        Search(_cfg(budget=Budget(flops=1e7)), tmp_path / "s").run()
    assert not (tmp_path / "s").exists()


def test_random_search_samples_inside_the_window(tmp_path):
    cfg = _cfg(estimator="random", alpha=None, mutation="coarse", iterations=800,
               budget=Budget(flops=0.4e9, params=6e6, layers=60, flops_min=0.25e9, params_min=2e6),
               record_candidates=True)
    Search(cfg, tmp_path / "r").run()
    picks = random_sample(tmp_path / "r", 5, seed=0)
    assert len({p["digest"] for p in picks}) == 5
    for p in picks:
        assert 0.25e9 <= p["flops"] <= 0.4e9 and 2e6 <= p["params"] <= 6e6
    assert picks == random_sample(tmp_path / "r", 5, seed=0)


def test_config_survives_its_json_form():
    from maedet.search import SearchConfig

    cfg = _cfg(budget=Budget(flops=0.3e9, layers=40, flops_resolution="1280x800"), estimator="zen", alpha=None)
    back = SearchConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.budget.flops_resolution == (800, 1280)


def test_run_many_in_workers_equals_one_by_one_and_reuses_finished(tmp_path):
    from maedet.search import run_many, run_or_resume

    jobs = {s: (_cfg(seed=s, iterations=200), tmp_path / "many" / f"s{s}") for s in (1, 2, 3)}
    many = run_many(jobs, parallel=2, progress=False)
    for s in (1, 2, 3):
        one = run_or_resume(_cfg(seed=s, iterations=200), tmp_path / "one" / f"s{s}")
        assert many[s]["structure"] == one["structure"] and many[s]["score"] == one["score"]
        assert _files(tmp_path / "many" / f"s{s}") == _files(tmp_path / "one" / f"s{s}")
    # a second call finds the finished searches and changes nothing
    before = {s: _files(tmp_path / "many" / f"s{s}") for s in (1, 2, 3)}
    again = run_many(jobs, parallel=2, progress=False)
    assert {s: r["structure"] for s, r in again.items()} == {s: r["structure"] for s, r in many.items()}
    assert before == {s: _files(tmp_path / "many" / f"s{s}") for s in (1, 2, 3)}

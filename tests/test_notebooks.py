"""Every notebook of the pipeline executes top to bottom at the `ci` profile (through papermill, exactly as
the DVC stages run them), in a scratch directory so the committed reports are untouched."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# one stage per notebook (the same notebook serves several stages with other -p values)
STAGES = {}
for name, st in DVC.items():
    nb = shlex.split(st["cmd"])[2]
    STAGES.setdefault(nb, name)


def run_stage(name: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = shlex.split(DVC[name]["cmd"])
    assert cmd[:2] == ["python", "scripts/run_notebook.py"]
    env = dict(os.environ, MAEDET_PROFILE="ci", PYTHONPATH=str(ROOT / "lib"))
    return subprocess.run([sys.executable, str(ROOT / cmd[1])] + cmd[2:] + ["--cwd", str(cwd)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("notebook", sorted(STAGES))
def test_notebook_runs_at_ci_profile(notebook, tmp_path):
    if (ROOT / "data").exists():
        (tmp_path / "data").symlink_to(ROOT / "data")
    name = STAGES[notebook]
    # committed inputs a stage reads relative to its working directory (e.g. benchmarks/*.json)
    for dep in DVC[name].get("deps", []):
        top = dep.split("/")[0]
        if top not in ("lib", "notebooks", "scripts", "data", "artifacts") and (ROOT / top).exists() \
                and not (tmp_path / top).exists():
            (tmp_path / top).symlink_to(ROOT / top)
    r = run_stage(name, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = (tmp_path / "reports" / f"{name}.html").read_text()
    assert "Traceback (most recent call last)" not in html
    assert re.search(r"profile (`|<code>)ci(`|</code>)", html), "the report does not name its profile"
    assert not re.search(r"\d(it/s|s/it)\]", html), "a progress bar (timings) leaked into the rendered notebook"
    outs = [o if isinstance(o, str) else next(iter(o)) for o in DVC[name].get("outs", [])]
    for o in outs:
        assert (tmp_path / o).exists(), f"{name} did not write {o}"
    metrics = tmp_path / "reports" / "metrics" / f"{name}.json"
    if metrics.exists():
        json.loads(metrics.read_text())


def test_every_stage_names_its_notebook_and_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, st in DVC.items():
        cmd = shlex.split(st["cmd"])
        assert cmd[2] in [d for d in st["deps"]], name
        for i, tok in enumerate(cmd):
            if tok == "--section":
                sec = cmd[i + 1]
                assert sec in st["params"], (name, sec)
                assert set(params[sec]) >= {"ci", "default", "paper"}, sec


def test_failing_notebook_exits_nonzero_and_writes_no_report(tmp_path):
    nb = tmp_path / "bad.ipynb"
    nb.write_text(json.dumps({
        "cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x = 1", "outputs": [],
                   "execution_count": None},
                  {"cell_type": "code", "metadata": {}, "source": "raise ValueError('boom')", "outputs": [],
                   "execution_count": None}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebook.py"), str(nb), "--name", "bad",
                        "--cwd", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "boom" in r.stderr
    assert not (tmp_path / "reports" / "bad.html").exists()

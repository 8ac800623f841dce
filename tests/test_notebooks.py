"""Every notebook of the pipeline executes top to bottom at the `ci` profile (through papermill, exactly as
the DVC stages run them), in a scratch directory so the committed reports are untouched."""
import json
import os
import re
import shlex
import shutil
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


# stages whose notebook tests/test_determinism.py already executes at ci (twice, with these same checks)
RUN_BY_DETERMINISM = {"score_variants", "nasbench201"}


def check_report(name: str, cwd: Path):
    """What every stage run at ci must leave in ``cwd``: a rendered report naming its profile, without a
    traceback or timings, every declared output, and readable metrics."""
    html = (cwd / "reports" / f"{name}.html").read_text()
    assert "Traceback (most recent call last)" not in html
    assert re.search(r"profile (`|<code>)ci(`|</code>)", html), "the report does not name its profile"
    assert not re.search(r"\d(it/s|s/it)\]", html), "a progress bar (timings) leaked into the rendered notebook"
    outs = [o if isinstance(o, str) else next(iter(o)) for o in DVC[name].get("outs", [])]
    for o in outs:
        assert (cwd / o).exists(), f"{name} did not write {o}"
    metrics = cwd / "reports" / "metrics" / f"{name}.json"
    if metrics.exists():
        json.loads(metrics.read_text())


def test_determinism_runs_the_notebooks_left_out_here():
    import test_determinism

    stages = set(test_determinism.STAGES)
    assert RUN_BY_DETERMINISM <= stages and RUN_BY_DETERMINISM <= set(STAGES.values())


@pytest.mark.parametrize("notebook", sorted(nb for nb, name in STAGES.items() if name not in RUN_BY_DETERMINISM))
def test_notebook_runs_at_ci_profile(notebook, tmp_path):
    if (ROOT / "data").exists():
        (tmp_path / "data").symlink_to(ROOT / "data")
    name = STAGES[notebook]
    # committed inputs a stage reads relative to its working directory (e.g. benchmarks/*.json)
    for dep in DVC[name].get("deps", []):
        top = dep.split("/")[0]
        if top not in ("lib", "notebooks", "scripts", "data", "artifacts") and (ROOT / top).exists() \
                and not (tmp_path / top).exists():
            if top in ("reports", "ledger"):  # a stage that reads these writes there too: a copy, never the committed files
                shutil.copytree(ROOT / top, tmp_path / top)
            else:
                (tmp_path / top).symlink_to(ROOT / top)
    r = run_stage(name, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check_report(name, tmp_path)


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


def _training_notebooks():
    out = []
    for nb, name in sorted(STAGES.items()):
        cells = json.loads((ROOT / nb).read_text())["cells"]
        if any("training" in c.get("metadata", {}).get("tags", []) for c in cells):
            out.append(nb)
    return out


def test_stages_with_train_detectors_have_tagged_training_cells():
    """A stage whose params carry `train_detectors` must have cells tagged `training` to leave out, and the
    main job's profile leaves out at least the stages the 2-hour budget moved to `extended`."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    tagged = _training_notebooks()
    switchable = set()
    for name, st in DVC.items():
        for sec in st.get("params", []):
            if isinstance(sec, str) and isinstance(params.get(sec), dict) and \
                    any(isinstance(v, dict) and "train_detectors" in v for v in params[sec].values()):
                switchable.add(name)
                nb = shlex.split(st["cmd"])[2]
                assert nb in tagged, f"{name}: train_detectors in params but {nb} has no cell tagged `training`"
                assert all("train_detectors" in params[sec][p] for p in params[sec]), (name, "every profile says")
                assert params[sec]["ci"]["train_detectors"] is True, "the tests must train at ci"
    assert {"table5", "table8", "table9", "figure5", "figure7"} <= switchable


def test_drop_training_cells_leaves_a_note():
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("run_notebook", ROOT / "scripts" / "run_notebook.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a = 1"), nbformat.v4.new_markdown_cell("## Training"),
                nbformat.v4.new_code_cell("train()"), nbformat.v4.new_code_cell("write()")]
    nb.cells[1].metadata["tags"] = ["training"]
    nb.cells[2].metadata["tags"] = ["training"]
    assert mod.drop_training_cells(nb, "default") == 2
    assert [c.source for c in nb.cells][0] == "a = 1" and nb.cells[-1].source == "write()"
    assert len(nb.cells) == 3 and "not run at profile `default`" in nb.cells[1].source
    assert mod.drop_training_cells(nb, "default") == 0 and len(nb.cells) == 3


@pytest.mark.parametrize("notebook", _training_notebooks())
def test_notebook_without_training_writes_its_zero_shot_outputs(notebook, tmp_path):
    """`train_detectors: false` (the default profile of these stages): the notebook runs its searches and
    scores, writes every declared output and says in the report that training runs elsewhere."""
    if (ROOT / "data").exists():
        (tmp_path / "data").symlink_to(ROOT / "data")
    name = STAGES[notebook]
    cmd = shlex.split(DVC[name]["cmd"])
    env = dict(os.environ, MAEDET_PROFILE="ci", PYTHONPATH=str(ROOT / "lib"))
    r = subprocess.run([sys.executable, str(ROOT / cmd[1])] + cmd[2:] + ["--cwd", str(tmp_path), "-p",
                       "train_detectors", "false"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = (tmp_path / "reports" / f"{name}.html").read_text()
    assert "Training is not run at profile" in html and "Traceback (most recent call last)" not in html
    assert not (tmp_path / "cache" / "train").exists(), "nothing may be trained"
    for o in DVC[name].get("outs", []):
        o = o if isinstance(o, str) else next(iter(o))
        assert (tmp_path / o).exists(), f"{name} did not write {o}"
    assert json.loads((tmp_path / "reports" / "metrics" / f"{name}.json").read_text())["trained"] is False

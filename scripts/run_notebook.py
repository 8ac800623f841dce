#!/usr/bin/env python
"""Execute one notebook with papermill for a DVC stage and render it for reading.

    python scripts/run_notebook.py NOTEBOOK --name STAGE [--section KEY ...] [-p NAME VALUE ...]

Parameters passed to the notebook's ``parameters`` cell, in order of precedence:
  1. ``-p NAME VALUE`` pairs (VALUE parsed as YAML),
  2. for every ``--section KEY``: ``params.yaml[KEY][profile]`` (the active profile's values),
  3. always: ``profile`` (from params.yaml) and ``stage`` (= --name).

Training cells: a notebook whose stage trains detectors tags those cells ``training``. When the stage's
parameters say ``train_detectors: false`` (the default profile of stages whose training rows run at ``extended`` only,
to keep the main job within its 2-hour budget), those cells are left out of the executed copy and a note
says where they run; the rest (searches, scores, zero-shot tables) runs as usual.

Training stages render from the run ledger; ``train_missing`` (params.yaml, or the environment variable
``MAEDET_TRAIN_MISSING=1``, which ``make train`` sets) makes them train the runs it lacks.

Outputs: ``reports/STAGE.html`` (the executed notebook; timing metadata stripped, so unchanged code
renders byte-identically) and whatever the notebook itself writes. The executed notebook is written to a
temporary file first; on failure nothing is left behind in reports/ and the exit status is non-zero.
Wall times are appended to ``logs/timings.jsonl`` (not tracked), never to a tracked output.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_params(path: Path = ROOT / "params.yaml") -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def stage_parameters(params: dict, name: str, sections: list[str], extra: dict) -> dict:
    profile = os.environ.get("MAEDET_PROFILE") or params.get("profile", "default")
    out = {"profile": profile, "stage": name}
    for sec in sections:
        if sec not in params:
            raise SystemExit(f"run_notebook: params.yaml has no section {sec!r}")
        table = params[sec]
        if profile not in table:
            raise SystemExit(f"run_notebook: params.yaml section {sec!r} has no profile {profile!r} "
                             f"(profiles there: {', '.join(table)})")
        out.update(table[profile])
    if "training" in sections and os.environ.get("MAEDET_TRAIN_MISSING"):
        out["train_missing"] = os.environ["MAEDET_TRAIN_MISSING"] not in ("0", "false", "no")  # `make train`
    out.update(extra)
    return out


def clean_notebook(nb) -> None:
    """Drop run-dependent metadata (timestamps, durations) so re-runs give identical files."""
    nb.metadata.pop("papermill", None)
    nb.metadata.get("widgets", None) and nb.metadata.pop("widgets")
    for i, cell in enumerate(nb.cells):
        if "id" in cell:  # papermill gives the injected-parameters cell a random id
            cell["id"] = f"cell-{i}"
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            out.get("metadata", {}).pop("execution", None)


def drop_training_cells(nb, profile: str) -> int:
    """Remove the cells tagged ``training`` from ``nb`` (in place); a markdown note takes the first one's place.

    Returns how many cells were removed (0: nothing changed)."""
    import nbformat

    keep, first, dropped = [], None, 0
    for cell in nb.cells:
        if "training" in cell.get("metadata", {}).get("tags", []):
            dropped += 1
            if first is None:
                first = len(keep)
            continue
        keep.append(cell)
    if dropped:
        note = nbformat.v4.new_markdown_cell(
            f"**Training is not run at profile `{profile}`** (`train_detectors: false` in `params.yaml`): the {dropped} cells "
            "that train detectors and tabulate their AP are left out here, so that the main job fits its 2-hour "
            "budget on 2 cores. They run at profile `extended` (`dvc exp run -S profile=extended`, or edit "
            "`profile:` in `params.yaml`); the notebook itself, opened in JupyterLab, still holds them.")
        note["metadata"]["tags"] = ["training-note"]
        keep.insert(first, note)
    nb.cells = keep
    return dropped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("--name", required=True, help="stage name: the report is reports/NAME.html")
    ap.add_argument("--section", action="append", default=[], help="params.yaml section(s) to pass")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--no-html", action="store_true", help="execute only (used by the notebook tests)")
    ap.add_argument("--output", help="where to keep the executed .ipynb (default: not kept)")
    ap.add_argument("--cwd", default=str(ROOT), help="working directory of the notebook: its reports/ and "
                    "artifacts/ are written there (default: the repository root)")
    args = ap.parse_args(argv)

    import nbformat
    import papermill as pm

    extra = {k: yaml.safe_load(v) for k, v in args.p}
    params = stage_parameters(load_params(), args.name, args.section, extra)
    # the kernel imports this checkout's maedet, whatever is installed
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")]))
    nb_path = ROOT / args.notebook
    if not nb_path.exists():
        print(f"run_notebook: {nb_path} not found", file=sys.stderr)
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        out_nb = Path(tmp) / nb_path.name
        src_nb = nb_path
        if params.get("train_detectors", True) is False:
            nb_in = nbformat.read(nb_path, as_version=4)
            if drop_training_cells(nb_in, params["profile"]):
                src_nb = Path(tmp) / ("in-" + nb_path.name)
                nbformat.write(nb_in, src_nb)
        try:
            pm.execute_notebook(str(src_nb), str(out_nb), parameters=params, kernel_name="python3",
                                cwd=args.cwd, progress_bar=sys.stderr.isatty(), log_output=True,
                                stdout_file=sys.stdout, stderr_file=sys.stderr)
        except pm.PapermillExecutionError as e:
            print(f"run_notebook: {args.notebook} failed in cell {e.exec_count}: {e.ename}: {e.evalue}",
                  file=sys.stderr)
            return 1
        nb = nbformat.read(out_nb, as_version=4)
        clean_notebook(nb)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.output)
        if not args.no_html:
            from nbconvert import HTMLExporter

            html, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
            dest = Path(args.cwd) / "reports" / f"{args.name}.html"
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp_html = dest.with_suffix(".html.tmp")
            tmp_html.write_text(html)
            tmp_html.replace(dest)
    (Path(args.cwd) / "logs").mkdir(exist_ok=True)
    with open(Path(args.cwd) / "logs" / "timings.jsonl", "a") as f:
        f.write(json.dumps({"stage": args.name, "profile": params["profile"], "seconds": round(time.time() - t0, 1),
                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""What the default pipeline costs, stage by stage, from the measurements a run leaves behind.

    python benchmarks/bench_pipeline.py [--profile default] [--since ISO-TIME] [--out benchmarks/pipeline_time]

With ``--since`` (the start of a sequential ``make repro`` from an empty run cache on an otherwise idle
machine), every stage's time is the sum of its executions after that moment, and the total is the sum over
stages: a measurement of the whole main job, not an estimate. When some stages were re-run after a change
of their parameters (new rows trained, the others taken from the run cache), every run was still trained
once and only the re-runs' notebook overhead is counted twice, so the total is then an upper bound of one
``make repro``.

Two sources, both written by real runs (nothing here is timed anew):
- ``logs/timings.jsonl``: the wall time of every notebook execution (``scripts/run_notebook.py``). For each
  stage the longest one at the profile is taken (the uncached run; later ones reuse the run cache), and it
  is flagged ``contended`` when another stage's execution overlapped it in time (then it is an upper bound).
- the run cache: ``train_seconds`` of every training run a stage lists in ``artifacts/STAGE/runs.csv``,
  each run counted once (for the first stage in ``dvc.yaml`` order that uses it). ``train_seconds / parallel``
  is what that stage's training costs alone on this machine when the runs are not shared with others.

Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "pipeline_time"))
    ap.add_argument("--root", default=str(ROOT), help="the repository whose logs and artifacts are read")
    ap.add_argument("--since", help="only executions that started at or after this ISO time (one measured run)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    log = root / "logs" / "timings.jsonl"
    if not log.exists():
        print(f"bench_pipeline: {log} not found (run the pipeline first)", file=sys.stderr)
        return 2
    stages = list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    params = yaml.safe_load((root / "params.yaml").read_text())
    parallel = params["training"][args.profile]["parallel"]
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r.get("profile") == args.profile]
    spans = []
    for r in runs:
        end = datetime.fromisoformat(r["finished"])
        spans.append((r["stage"], end - timedelta(seconds=r["seconds"]), end, r["seconds"]))
    since = datetime.fromisoformat(args.since).replace(tzinfo=None) if args.since else None
    if since is not None:
        spans = [s for s in spans if s[1] >= since - timedelta(seconds=2)]
        if not spans:
            print(f"bench_pipeline: no stage execution at profile {args.profile} since {args.since}", file=sys.stderr)
            return 2
    seen_runs: set = set()
    rows = []
    for st in stages:
        mine = [s for s in spans if s[0] == st]
        row = {"stage": st, "wall_seconds": None, "contended": None, "train_runs": 0, "train_seconds": 0.0,
               "train_alone_seconds": 0.0}
        if mine:
            row["executions"] = len(mine) if since is not None else 1
            if since is not None:
                sec = sum(s[3] for s in mine)
                row["contended"] = any(o[0] != st and o[1] < m[2] and o[2] > m[1] for m in mine for o in spans)
            else:
                name, start, end, sec = max(mine, key=lambda s: s[3])
                row["contended"] = any(o[0] != st and o[1] < end and o[2] > start for o in spans)
            row["wall_seconds"] = round(sec, 1)
        csv_path = root / "artifacts" / st / "runs.csv"
        if csv_path.exists():
            with open(csv_path) as f:
                for r in csv.DictReader(f):
                    if r["run"] in seen_runs or not r.get("train_seconds"):
                        continue
                    seen_runs.add(r["run"])
                    row["train_runs"] += 1
                    row["train_seconds"] += float(r["train_seconds"])
            row["train_seconds"] = round(row["train_seconds"], 1)
            row["train_alone_seconds"] = round(row["train_seconds"] / parallel, 1)
        rows.append(row)
    total_wall = sum(r["wall_seconds"] or 0 for r in rows)
    zero_shot = sum(r["wall_seconds"] or 0 for r in rows if not r["train_runs"])
    train_alone = sum(r["train_alone_seconds"] for r in rows)
    measured = None
    if since is not None:
        first, last = min(s[1] for s in spans), max(s[2] for s in spans)
        missing = [r["stage"] for r in rows if r["wall_seconds"] is None]
        measured = {"since": args.since, "first_stage_start": first.isoformat(timespec="seconds"),
                    "last_stage_end": last.isoformat(timespec="seconds"),
                    "span_seconds": round((last - first).total_seconds(), 1),
                    "training_stage_wall_seconds": round(sum(r["wall_seconds"] or 0 for r in rows if r["train_runs"]), 1),
                    "stages_not_run": missing, "stages_run_more_than_once": [r["stage"] for r in rows
                                                                            if r.get("executions", 0) > 1]}
    out = {"profile": args.profile, "parallel": parallel, "stages": rows, "measured_run": measured,
           "sum_of_stage_wall_seconds": round(total_wall, 1),
           "zero_shot_stage_wall_seconds": round(zero_shot, 1),
           "training_alone_seconds": round(train_alone, 1)}
    if measured:
        out["note"] = ("sum_of_stage_wall_seconds = every stage's executions since `since`, summed: the measured cost "
                       "of the pipeline (an upper bound when a stage ran more than once or overlapped another).")
    else:
        out["estimate_seconds"] = round(zero_shot + train_alone, 1)
        out["note"] = ("estimate = the zero-shot stages' measured wall times + each training run's measured time / "
                       "parallel. Run times measured while other jobs shared the 2 cores are upper bounds.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# Pipeline cost at profile `{args.profile}` (from logs/timings.jsonl and the run cache)", "",
             "| stage | wall (s) | executions | overlapped another stage | training runs | training (s, summed) | "
             "training alone (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['wall_seconds'] if r['wall_seconds'] is not None else '-'} | "
                     f"{r.get('executions', 0)} | "
                     f"{'yes' if r['contended'] else 'no' if r['contended'] is not None else '-'} | {r['train_runs']} | "
                     f"{r['train_seconds']} | {r['train_alone_seconds']} |")
    if measured:
        overlap = [r["stage"] for r in rows if r["contended"]]
        lines += ["", f"Measured (executions since {measured['since']}, which should start from an empty run cache"
                  + (f"; these stages overlapped another, so their times are upper bounds: {', '.join(overlap)}"
                     if overlap else "; no two stages overlapped") + f"): **{total_wall / 60:.1f} min** for the whole "
                  f"pipeline (sum of the stage times); zero-shot stages {zero_shot / 60:.1f} min, training stages "
                  f"{measured['training_stage_wall_seconds'] / 60:.1f} min (their runs: {train_alone / 60:.1f} min of "
                  f"summed run time / {parallel} workers). Span from the first stage's start to the last stage's end: "
                  f"{measured['span_seconds'] / 60:.1f} min."
                  + (f" Stages executed twice (re-run after a parameter change; the sum counts both executions, so the "
                     f"total is an upper bound): {', '.join(measured['stages_run_more_than_once'])}."
                     if measured["stages_run_more_than_once"] else "")
                  + (f" Stages not run: {', '.join(measured['stages_not_run'])}." if measured["stages_not_run"] else ""), ""]
    else:
        lines += ["", f"Zero-shot stages, measured wall: {zero_shot / 60:.1f} min. Training, summed run times / {parallel} "
                  f"workers: {train_alone / 60:.1f} min. Estimate of one uncontended `make repro`: "
                  f"{(zero_shot + train_alone) / 60:.1f} min (upper bound where runs were contended).", ""]
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

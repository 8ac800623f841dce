"""Retrain a sample of the ledger from scratch and compare with what it recorded (``make verify``).

A ledger record says what a run computed on one machine. :func:`sample` picks records to retrain (by default
one per head, the lowest seed of the first backbone: at least one run behind every training table), and
:func:`retrain` trains each again in a fresh, temporary run cache and ledger, so nothing recorded is read.
The retrained record is kept as a *replica* in ``ledger/replicas/<digest>.<machine-tag>.<n>.json`` (git-tracked,
like the ledger), and :func:`compare` sets every replica beside its original: identical metrics, or the
measured difference. Replicas from several machines accumulate, and with them the machine-to-machine spread a
reader who re-runs will see (:func:`spread`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import fields
from pathlib import Path

from . import ledger

REPLICAS = Path(os.environ.get("MAEDET_REPLICAS", "ledger/replicas"))
METRICS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")


class VerifyError(ValueError):
    pass


def run_of(rec: dict):
    """The :class:`maedet.experiments.Run` a detection record was trained from (its digest must come out the
    same; a :class:`VerifyError` says why not, e.g. other library versions)."""
    from .experiments import Run

    if rec["kind"] != "detect":
        raise VerifyError(f"record {rec['digest']}: only detection runs are verified (this one is {rec['kind']})")
    st = rec["settings"]
    if st.get("pretrained"):
        raise VerifyError(f"record {rec['digest']}: a pretrained run needs its classification run's checkpoint")
    names = [f.name for f in fields(Run) if f.name != "label"]
    run = Run(rec["backbone"], **{k: st[k] for k in names})
    now = ledger.digest(run)
    if now != rec["digest"]:
        diff = {k: (st["versions"].get(k), v) for k, v in ledger.versions().items() if st["versions"].get(k) != v}
        why = f"library versions differ (recorded, installed): {diff}" if diff else \
            "the training code's revision or defaults changed since"
        raise VerifyError(f"record {rec['digest']} cannot be retrained as recorded: {why}")
    return run


def sample(recs: list[dict], per: tuple[str, ...] = ("head",), limit: int | None = None) -> list[dict]:
    """One record per distinct value of the ``per`` fields (detection runs without a pretrained init only):
    the lowest seed, then the first backbone by name, so that the choice does not depend on the order."""
    groups: dict[tuple, dict] = {}
    for r in recs:
        if r["kind"] != "detect" or r["settings"].get("pretrained"):
            continue
        key = tuple(r.get(k) for k in per)
        best = groups.get(key)
        if best is None or (r["seed"], r["backbone"], r["digest"]) < (best["seed"], best["backbone"], best["digest"]):
            groups[key] = r
    out = [groups[k] for k in sorted(groups, key=str)]
    if limit is not None:
        if limit < 1:
            raise VerifyError(f"limit must be at least 1, got {limit}")
        out = out[:limit]
    return out


def _tag() -> str:
    return hashlib.sha1(ledger.machine_id().encode()).hexdigest()[:8]


def replica_path(digest: str, root: str | Path | None = None) -> Path:
    root = Path(root or REPLICAS)
    n = 0
    while (p := root / f"{digest}.{_tag()}.{n}.json").exists():
        n += 1
    return p


def retrain(recs: list[dict], data_root: str | Path = "data", parallel: int = 2,
            replicas: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Train every record's run again from scratch (temporary cache and ledger) and keep each new record as a
    replica; returns the replicas in order."""
    from . import experiments as ex

    runs = [run_of(r) for r in recs]  # all checked before any training starts
    with tempfile.TemporaryDirectory(prefix="maedet-verify-") as tmp:
        cache, led = Path(tmp) / "cache", Path(tmp) / "ledger"
        ex.run_all(runs, data_root, parallel=parallel, root=cache, ledger_root=led, progress=progress)
        out = []
        for r in runs:
            rec = ledger.lookup(r, led)
            if rec is None:
                raise VerifyError(f"retraining {r.label}/{r.head}/seed {r.seed} left no record")
            p = replica_path(rec["digest"], replicas)
            ledger._atomic_write(p, json.dumps(rec, indent=1, sort_keys=True, default=str) + "\n")
            out.append(rec)
    return out


def replicas(root: str | Path | None = None) -> list[dict]:
    """Every replica record (each validated against its own settings)."""
    out = []
    for p in sorted(Path(root or REPLICAS).glob("*.json")):
        rec = json.loads(p.read_text())
        if ledger.digest_of(rec.get("settings", {})) != rec.get("digest") or not p.name.startswith(rec["digest"]):
            raise VerifyError(f"replica {p}: its digest does not match its settings or its file name")
        out.append(rec)
    return out


def compare(originals: list[dict], reps: list[dict]):
    """One row per replica beside its original record: metrics, their differences, same machine or not."""
    import pandas as pd

    by = {r["digest"]: r for r in originals}
    rows = []
    for rep in reps:
        o = by.get(rep["digest"])
        if o is None:
            continue
        row = {"head": o["head"], "backbone": o["backbone"], "seed": o["seed"], "epochs": o["profile"].get("epochs"),
               "ledger machine": o["machine"], "retrain machine": rep["machine"],
               "same machine": o["machine"] == rep["machine"], "ledger date": o["date"][:10],
               "retrain date": rep["date"][:10]}
        diffs = []
        for m in METRICS:
            a, b = o["metrics"].get(m), rep["metrics"].get(m)
            row[f"{m} ledger"], row[f"{m} retrained"] = a, b
            if a is not None and b is not None:
                diffs.append(abs(b - a))
                row[f"{m} diff"] = round(b - a, 3)
        row["identical"] = bool(diffs) and max(diffs) == 0
        row["max |diff|"] = max(diffs) if diffs else math.nan
        row["digest"] = o["digest"]
        rows.append(row)
    return pd.DataFrame(rows)


def spread(table) -> dict:
    """Summary of retrain-minus-ledger AP differences: count, mean, sd, largest, and how many were identical."""
    import numpy as np

    if table is None or len(table) == 0:
        return {"replicas": 0}
    d = table["AP diff"].astype(float).to_numpy()
    return {"replicas": int(len(d)), "identical": int(table["identical"].sum()),
            "AP diff mean": float(d.mean()), "AP diff sd": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "AP |diff| max": float(np.abs(d).max()),
            "cross-machine": int((~table["same machine"]).sum())}

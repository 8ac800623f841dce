"""The training-run ledger: one small, git-tracked JSON record per finished training run.

The run cache (``cache/train/<id>/``: checkpoints, logs, ``results.json``) lives on one machine and is
gitignored; the ledger is what survives it. Every finished run writes ``ledger/runs/<digest>.json`` (no
weights): its settings and their digest, head, backbone label, seed, profile, metrics, the per-epoch training
losses and val AP (when the run evaluated every epoch), wall time, the versions of torch/mmcv/mmengine/mmdet,
the CPU model, a hostname-free machine id and the date. :func:`maedet.experiments.execute` and
:func:`maedet.experiments.run_all` read the ledger first and train only the runs it lacks.

The digest hashes the run's full settings: kind, head, backbone structure, seed, dataset, pretrained init, the
profile with every default filled in, the library versions that decide training and
:data:`maedet.detectors.TRAINING_REVISION` (bumped when our own code changes what a run computes). It is
independent of the process, the machine and the working directory. A record that does not parse, lacks a
field or whose digest does not match its settings or its file name is rejected: a message naming the file
goes to stderr, the file is moved to ``ledger/runs/rejected/`` and the run is trained again.

Calibration probes (runs at a setting that no comparison stage trains, ``maedet train --probe``) are recorded
the same way in ``ledger/probes/`` (:data:`PROBES`): the comparison stages depend on ``ledger/runs`` only, so a
new probe re-renders the calibration stage and nothing else. A probe whose setting is adopted is retrained (or
moved) into ``ledger/runs`` when the comparison stages start using that setting.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

ROOT = Path(os.environ.get("MAEDET_LEDGER", "ledger/runs"))
PROBES = Path(os.environ.get("MAEDET_PROBES", "ledger/probes"))
PACKAGES = ("torch", "mmcv", "mmengine", "mmdet")
FIELDS = ("digest", "settings", "kind", "head", "backbone", "seed", "dataset", "profile", "metrics",
          "epoch_losses", "val_history", "train_seconds", "wall_seconds", "versions", "cpu", "machine", "date",
          "run_id", "results")


class LedgerError(ValueError):
    """A ledger record that cannot be used (its message names the file)."""


# --------------------------------------------------------------------------------------------------
# settings and digest
# --------------------------------------------------------------------------------------------------
def versions() -> dict:
    """Installed versions of the packages that decide training (None: not installed); no import needed."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def settings(run) -> dict:
    """Everything that decides what ``run`` (a :class:`maedet.experiments.Run`) computes, JSON-normalised."""
    from . import detectors

    d = asdict(run)
    d.pop("label")
    prof = dict(detectors.DEFAULT_PROFILE, **d["profile"]) if run.kind == "detect" else dict(d["profile"])
    d["profile"] = json.loads(json.dumps(prof, sort_keys=True))  # tuples -> lists, as it reads back
    d["versions"] = versions()
    d["revision"] = detectors.TRAINING_REVISION
    return d


def digest_of(settings_: dict) -> str:
    return hashlib.sha256(json.dumps(settings_, sort_keys=True).encode()).hexdigest()[:16]


def digest(run) -> str:
    """The config digest of ``run``: the same in every process and on every machine with these versions."""
    return digest_of(settings(run))


def path(run, root: str | Path | None = None) -> Path:
    return Path(root or ROOT) / f"{digest(run)}.json"


# --------------------------------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``unknown`` where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def machine_id() -> str:
    """A machine description without its hostname: CPU model and the number of cores this process may use."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_model()} x{n}"


# --------------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------------
def make_record(run, results: dict) -> dict:
    """The ledger record of ``run`` finished with ``results`` (its ``results.json``)."""
    st = settings(run)
    res = dict(results)
    res.pop("backbone_structure", None)  # already in the settings
    if run.kind == "classify":
        metrics = {"top1": res.get("top1")}
        losses = [{"loss": v} for v in res.get("train_loss", [])]
        history = None
    else:
        metrics = dict(res.get("metrics") or {k: res[k] for k in ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
                                              if k in res})
        losses = res.get("epoch_losses") or []
        history = res.get("val_history")
    train_s = res.get("train_seconds")
    evals = sum(v.get("seconds") or 0.0 for v in history.values()) if history else (res.get("val_seconds") or 0.0)
    return {
        "digest": digest_of(st), "settings": st, "kind": run.kind, "head": run.head, "backbone": run.label,
        "seed": run.seed, "dataset": run.dataset, "profile": st["profile"], "metrics": metrics,
        "epoch_losses": losses, "val_history": history, "train_seconds": train_s,
        "wall_seconds": None if train_s is None else round(float(train_s) + float(evals), 1),
        "versions": st["versions"], "cpu": cpu_model(), "machine": machine_id(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run_id": run.id, "results": res,
    }


def _atomic_write(p: Path, text: str) -> None:
    """Write ``text`` to ``p`` through a temporary file in the same folder and a rename: a reader sees the old
    file or the whole new one, never a part."""
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(run, results: dict, root: str | Path | None = None) -> dict:
    """Record ``run`` with ``results`` in the ledger (atomically) and return the record."""
    rec = make_record(run, results)
    p = Path(root or ROOT) / f"{rec['digest']}.json"
    _atomic_write(p, json.dumps(rec, indent=1, sort_keys=True, default=str) + "\n")
    return rec


def load(p: str | Path) -> dict:
    """A validated record; :class:`LedgerError` naming ``p`` when it is not valid JSON, lacks a field, or its
    digest matches neither its settings nor its file name."""
    p = Path(p)
    try:
        rec = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LedgerError(f"ledger record {p} is not readable JSON ({e})") from None
    if not isinstance(rec, dict):
        raise LedgerError(f"ledger record {p} is not a JSON object")
    missing = [k for k in FIELDS if k not in rec]
    if missing:
        raise LedgerError(f"ledger record {p} lacks field(s) {', '.join(missing)}")
    if not isinstance(rec["settings"], dict) or digest_of(rec["settings"]) != rec["digest"]:
        raise LedgerError(f"ledger record {p}: its digest {rec['digest']} does not match its settings")
    if p.stem != rec["digest"]:
        raise LedgerError(f"ledger record {p}: its digest {rec['digest']} does not match its file name")
    return rec


def reject(p: Path, why: str) -> Path:
    """Move a bad record aside into ``rejected/`` next to it (never overwritten) and say so on stderr."""
    dest = p.parent / "rejected" / f"{p.name}.{time.strftime('%Y%m%dT%H%M%S')}"
    n = 0
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{dest.name.split('~')[0]}~{n}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(p, dest)
    print(f"{why}; moved to {dest}, the run is trained again", file=sys.stderr)
    return dest


def lookup(run, root: str | Path | None = None) -> dict | None:
    """The valid record of ``run``, or None (nothing recorded, or a bad record, which is moved aside)."""
    p = path(run, root)
    if not p.exists():
        return None
    try:
        return load(p)
    except LedgerError as e:
        reject(p, str(e))
        return None


def records(root: str | Path | list | tuple | None = None) -> list[dict]:
    """Every valid record in the ledger folder (or folders: a list; a missing one holds none), bad ones reported
    on stderr and skipped, by date."""
    roots = [Path(r) for r in root] if isinstance(root, (list, tuple)) else [Path(root or ROOT)]
    out = []
    for p in sorted(q for r in roots for q in r.glob("*.json")):
        try:
            out.append(load(p))
        except LedgerError as e:
            print(f"skipped: {e}", file=sys.stderr)
    return sorted(out, key=lambda r: r["date"])


# --------------------------------------------------------------------------------------------------
# reading the ledger
# --------------------------------------------------------------------------------------------------
def setting(rec: dict) -> str:
    """A short description of what a detection record's profile changes: variant, lr, backbone lr, anchors,
    head norm."""
    p = rec["profile"]
    parts = []
    if p.get("head_variant", "default") != "default":
        parts.append(p["head_variant"])
    parts.append(f"lr {p.get('lr')}")
    if p.get("backbone_lr_mult") is not None:
        parts.append(f"backbone lr x{p['backbone_lr_mult']:g}")
    if p.get("anchor_base_scale") is not None:
        parts.append(f"anchor base scale {p['anchor_base_scale']:g}")
    if p.get("head_norm") is not None:
        parts.append(f"{p['head_norm']} head")
    return ", ".join(parts)


def curve(rec: dict) -> list[tuple[int, float]]:
    """(epoch, val AP) of every in-training evaluation of a record, by epoch ([] when none was made)."""
    hist = rec.get("val_history") or {}
    return sorted((int(e), v["AP"]) for e, v in hist.items() if v.get("AP") is not None)


def epoch_to(rec: dict, fraction: float = 0.9) -> int | None:
    """The first evaluated epoch whose val AP reaches ``fraction`` of the run's final AP (None: no curve)."""
    final = rec["metrics"].get("AP")
    for e, ap in curve(rec):
        if final is not None and ap >= fraction * final:
            return e
    return None


def table(recs: list[dict] | None = None, root: str | Path | None = None, **where):
    """One row per detection record (e.g. ``table(root=..., dataset="digits")``; ``where`` filters on record
    fields): head, setting, backbone, epochs, AP, AP50, the epoch reaching 90% of the final AP, train s."""
    import pandas as pd

    recs = records(root) if recs is None else recs
    rows = []
    for r in recs:
        if r["kind"] != "detect" or any(r.get(k) != v for k, v in where.items()):
            continue
        rows.append({"head": r["head"], "setting": setting(r), "backbone": r["backbone"], "seed": r["seed"],
                     "epochs": r["profile"].get("epochs"), "AP": r["metrics"].get("AP"),
                     "AP50": r["metrics"].get("AP50"), "epoch to 90% AP": epoch_to(r),
                     "train s": r["train_seconds"], "machine": r["machine"], "digest": r["digest"]})
    cols = ["head", "setting", "backbone", "seed", "epochs", "AP", "AP50", "epoch to 90% AP", "train s", "machine",
            "digest"]
    return pd.DataFrame(rows, columns=cols)

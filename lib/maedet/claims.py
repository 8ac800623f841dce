"""The claims register (``docs/claims.yaml``) evaluated against the committed stage outputs under ``reports/``.

Every claim the paper draws from a table or figure is one entry: the paper's effect, the file our stage
writes, and how it is tested (``test.kind``; see the register's header). :func:`evaluate_all` turns each
into a row with our effect, its 95% interval, the verdict of :func:`maedet.stats.verdict` (``holds`` /
``contradicted`` / ``not resolved`` / ``not tested here: why``) and the basis: the profile and training
length the stage last ran at (read from ``dvc.lock``). A training stage whose recorded parameters are no
longer those of ``params.yaml`` ran at a superseded operating point: its numbers are shown, its verdict is
"not resolved" with that reason, never a verdict of the old runs.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import yaml

from . import stats

KINDS = ("welch", "runs", "paired", "seeds", "match", "bound", "pending", "none")
FIELDS = ("id", "item", "claim", "test")  # and ``stage``, except for kind ``none``
VERDICTS = ("holds", "contradicted", "not resolved", "not tested here")
TRAINING_SECTIONS = ("training",)


class ClaimError(ValueError):
    pass


def load(path: str | Path = "docs/claims.yaml") -> list[dict]:
    """The register, checked: required fields, unique ids, known test kinds and directions."""
    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ClaimError(f"claims register {path} does not exist") from None
    if not isinstance(entries, list):
        raise ClaimError(f"{path}: expected a list of claims, got {type(entries).__name__}")
    seen = set()
    for i, c in enumerate(entries):
        missing = [f for f in FIELDS if f not in (c or {})]
        if missing:
            raise ClaimError(f"{path}: entry {i} lacks {', '.join(missing)}")
        if c["id"] in seen:
            raise ClaimError(f"{path}: duplicate claim id {c['id']!r}")
        seen.add(c["id"])
        if c["test"].get("kind") != "none" and not c.get("stage"):
            raise ClaimError(f"{path}: claim {c['id']} names no stage")
        if c["test"].get("kind") not in KINDS:
            raise ClaimError(f"{path}: claim {c['id']}: unknown test kind {c['test'].get('kind')!r} "
                             f"(known: {', '.join(KINDS)})")
        if c.get("direction", "=") not in (">", "<", "="):
            raise ClaimError(f"{path}: claim {c['id']}: direction must be '>', '<' or '='")
    return entries


# --------------------------------------------------------------------------------------------------
# reading stage outputs
# --------------------------------------------------------------------------------------------------
def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(v):
    if v is None or v == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _select(rows: list[dict], where: dict) -> list[dict]:
    return [r for r in rows if all(str(r.get(k)) == str(v) for k, v in where.items())]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


class _Missing(Exception):
    """The stage output a claim needs is absent (the stage did not run, or not that row)."""


def _need(path: Path, root: Path | None = None) -> Path:
    if not path.exists():
        shown = path
        for base in ([root] if root is not None else []) + [Path.cwd()]:
            try:
                shown = path.resolve().relative_to(Path(base).resolve())
                break
            except ValueError:
                continue
        raise _Missing(f"{shown.as_posix()} is not there (stage not run)")
    return path


# --------------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------------
def _welch(t, root: Path, stage: str):
    rows = _rows(_need(root / t["file"], root))
    ra, rb = _select(rows, t["a"]), _select(rows, t["b"])
    if not ra or not rb:
        side = t["a"] if not ra else t["b"]
        raise _Missing(f"no row {side} in {t['file']}")
    a, b = ra[0], rb[0]

    def n_of(r):
        n = t["n"]
        if isinstance(n, (int, float)):
            return int(n)
        if isinstance(n, str) and n.startswith("metrics:"):
            m = _json(_need(root / "reports" / "metrics" / f"{stage}.json", root))
            return int(m[n.split(":", 1)[1]])
        return int(float(r[n]))

    ma, mb = _num(a[t["mean"]]), _num(b[t["mean"]])
    if ma is None or mb is None:
        raise _Missing(f"{t['mean']} is empty for one arm in {t['file']}")
    sa, sb = _num(a.get(t["sd"])) or 0.0, _num(b.get(t["sd"])) or 0.0
    return stats.welch_interval(ma, sa, n_of(a), mb, sb, n_of(b))


def _runs(t, root: Path, stage: str):
    """Per-run rows (one per seed): paired t over the seeds both arms hold when ``pair`` is given and they
    share seeds, else Welch t on the per-run values."""
    rows = _select(_rows(_need(root / t["file"], root)), t.get("where", {}))
    col = t.get("label", "label")
    va = {r.get(t.get("pair", "seed")): _num(r[t["value"]]) for r in rows if r.get(col) == t["a"]}
    vb = {r.get(t.get("pair", "seed")): _num(r[t["value"]]) for r in rows if r.get(col) == t["b"]}
    va = {k: v for k, v in va.items() if v is not None}
    vb = {k: v for k, v in vb.items() if v is not None}
    if not va or not vb:
        raise _Missing(f"no runs of {t['a'] if not va else t['b']} in {t['file']}")
    common = sorted(set(va) & set(vb), key=lambda s: float(s) if _num(s) is not None else s)
    if len(common) >= 2 and len(common) == len(va) == len(vb):
        iv = stats.paired_interval([va[s] for s in common], [vb[s] for s in common])
    else:
        import numpy as np

        a, b = np.array(list(va.values())), np.array(list(vb.values()))
        iv = stats.welch_interval(a.mean(), a.std(ddof=1) if len(a) > 1 else 0.0, len(a),
                                  b.mean(), b.std(ddof=1) if len(b) > 1 else 0.0, len(b))
    if t.get("floor") is not None:  # an arm that does not learn at this operating point decides nothing
        for arm, v in ((t["a"], va), (t["b"], vb)):
            m = sum(v.values()) / len(v)
            if m < float(t["floor"]):
                iv["unresolved"] = (f"{arm} does not learn at this operating point (mean {t['value']} {m:.3g} over "
                                    f"{len(v)} run(s), below the floor {float(t['floor']):g})")
                break
    return iv


def _paired(t, root: Path, stage: str):
    fa, fb = _rows(_need(root / t["file_a"], root)), _rows(_need(root / t["file_b"], root))
    pick = lambda rows: {r[t["label"]]: _num(r[t["value"]]) for r in rows  # noqa: E731
                         if str(r[t["label"]]).startswith(t.get("prefix", ""))}
    a, b = pick(fa), pick(fb)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise _Missing(f"no common rows of {t['file_a']} and {t['file_b']}")
    return stats.paired_interval([a[k] for k in keys], [b[k] for k in keys])


def _seeds(t, root: Path, stage: str):
    m = _json(_need(root / t["file"], root))
    if t["key"] not in m:
        raise _Missing(f"{t['file']} has no {t['key']!r}")
    entry = m[t["key"]]
    # ``tol_pct``: the reference is the published score less that tolerance ("reaches it within 0.1%")
    ref = float(entry["published"])
    return stats.one_sample_interval(entry["final_scores"], ref - abs(ref) * float(t.get("tol_pct", 0)) / 100)


def _value(t, root: Path, key_ours: str):
    path = _need(root / t["file"], root)
    if path.suffix == ".json":
        m = _json(path)
        if t["key"] not in m:
            raise _Missing(f"{t['file']} has no {t['key']!r}")
        return _num(m[t["key"]]), t.get("paper")
    rows = _select(_rows(path), t["row"])
    if not rows:
        raise _Missing(f"no row {t['row']} in {t['file']}")
    r = rows[0]
    paper = t["paper"] if isinstance(t["paper"], (int, float)) else _num(r[t["paper"]])
    return _num(r[t[key_ours]]), paper


def _fixed(diff: float, ok: bool) -> dict:
    """A deterministic comparison (FLOPs, params, a bound): no interval; the verdict is the check itself."""
    return {"diff": diff, "lo": None, "hi": None, "n_a": 1, "n_b": 1, "rule": "exact", "ok": ok}


def _match(t, root: Path, stage: str):
    ours, paper = _value(t, root, "ours")
    if ours is None or paper is None:
        raise _Missing(f"empty value in {t['file']}")
    tol = float(t.get("tol_pct", 1.0))
    out = _fixed(ours - float(paper), abs(ours - float(paper)) <= tol / 100 * abs(float(paper)))
    out.update(ours=ours, rule=f"|ours - paper| <= {tol:g}% of paper")
    return out


def _bound(t, root: Path, stage: str):
    m = _json(_need(root / t["file"], root))
    if t["key"] not in m:
        raise _Missing(f"{t['file']} has no {t['key']!r}")
    v = float(m[t["key"]])
    out = _fixed(v, v < float(t["below"]))
    out.update(ours=v, rule=f"value < {t['below']:g}")
    if t.get("measured_is") == "upper_bound":
        # the measurement overstates the quantity (e.g. a cost ratio against a scaled-down competitor): below the
        # bound it holds a fortiori; above it, it says nothing
        out["rule"] += " (the measured value bounds the quantity from above)"
        if not out["ok"]:
            out["unresolved"] = (f"the measured value {v:.4g} is an upper bound of the quantity and lies above "
                                 f"{t['below']:g}")
    elif t.get("measured_is") not in (None, "value"):
        raise ClaimError(f"bound: measured_is must be 'value' or 'upper_bound', got {t['measured_is']!r}")
    return out


TESTS = {"welch": _welch, "runs": _runs, "paired": _paired, "seeds": _seeds, "match": _match, "bound": _bound}


# --------------------------------------------------------------------------------------------------
# where a stage last ran (dvc.lock) and whether that is still the current operating point
# --------------------------------------------------------------------------------------------------
def _lock(root: Path) -> dict:
    p = root / "dvc.lock"
    return (yaml.safe_load(p.read_text()) or {}).get("stages", {}) if p.exists() else {}


def _lookup(tree: dict, dotted: str):
    cur = tree
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def basis(stage: str, root: Path, lock: dict, params: dict, schedule: str | None = None) -> dict:
    """``{profile, epochs, stale}`` of a stage's last recorded run: ``epochs`` is the detector schedule
    (training stages), ``stale`` lists the training parameters that changed since. ``schedule`` (a claim's
    field, e.g. ``table5.{profile}.transfer.detector``) names the recorded parameters whose ``epochs`` the
    claim's runs trained with, where they are not the stage's default schedule."""
    entry = lock.get(stage)
    if entry is None:
        return {"profile": None, "epochs": None, "stale": []}
    recorded = entry.get("params", {}).get("params.yaml", {})
    profile = recorded.get("profile")
    out = {"profile": profile, "epochs": None, "stale": []}
    if profile is None:
        return out
    for sec in TRAINING_SECTIONS:
        if sec in recorded:
            old = _lookup(recorded, f"{sec}.{profile}.detector") or {}
            new = _lookup(params, f"{sec}.{profile}.detector") or {}
            out["epochs"] = old.get("epochs")
            out["stale"] = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    own = _lookup(recorded, f"{stage}.{profile}") or {}
    if isinstance(own, dict) and "epochs" in own:  # a stage's own schedule (Table 5's Mask R-CNN)
        out["epochs"] = own["epochs"]
    if schedule:
        sched = _lookup(recorded, schedule.format(profile=profile))
        if isinstance(sched, dict) and "epochs" in sched:
            out["epochs"] = sched["epochs"]
    return out


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------
def paper_effect(text) -> float | None:
    """The paper's effect size as a number from the register's ``paper`` field (``"+1.8 (44.5 vs 42.7)"``
    gives 1.8; a number is taken as it is; None when the field does not start with one)."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.match(r"\s*([+\-−]?\d+(?:\.\d+)?)(?=\s|\(|$)", str(text or ""))
    return float(m.group(1).replace("−", "-")) if m else None


def evaluate(claim: dict, root: str | Path = ".", lock: dict | None = None, params: dict | None = None) -> dict:
    root = Path(root)
    lock = _lock(root) if lock is None else lock
    params = (yaml.safe_load((root / "params.yaml").read_text()) if (root / "params.yaml").exists() else {}) \
        if params is None else params
    t = claim["test"]
    b = basis(claim.get("stage"), root, lock, params, claim.get("schedule"))
    row = {"id": claim["id"], "item": claim["item"], "claim": claim["claim"], "metric": claim.get("metric", ""),
           "direction": claim.get("direction", "="), "paper": str(claim.get("paper", "")), "stage": claim.get("stage"),
           "ours": None, "lo": None, "hi": None, "n_a": None, "n_b": None, "rule": "",
           "profile": b["profile"], "epochs": b["epochs"], "verdict": None}
    kind = t["kind"]
    if kind == "none":
        row["verdict"] = f"not tested here: {t.get('reason', 'no stage')}"
        return row
    if kind == "pending":
        row["verdict"] = "not tested here: the stage trains no detector at this profile"
        return row
    try:
        iv = TESTS[kind](t, root, claim["stage"])
    except _Missing as e:
        row["verdict"] = f"not tested here: {e}"
        return row
    row.update(ours=iv.get("ours", iv["diff"]), lo=iv["lo"], hi=iv["hi"], n_a=iv["n_a"], n_b=iv["n_b"],
               rule=iv["rule"])
    if iv.get("unresolved"):
        row["verdict"] = f"not resolved: {iv['unresolved']}"
    elif "ok" in iv:  # deterministic
        row["verdict"] = "holds" if iv["ok"] else "contradicted"
    else:
        row["verdict"] = stats.verdict(iv, row["direction"])
        effect = paper_effect(claim.get("paper")) if kind in ("runs", "welch", "paired") else None
        if row["verdict"] == "not resolved" and effect is not None and not (iv["lo"] <= effect <= iv["hi"]):
            # a detection effect is the paper's on COCO, ours on the reduced-scale data: a note, not a verdict
            where = " (COCO)" if "AP" in row["metric"] else ""
            row["verdict"] = f"not resolved; the paper's{where} effect {effect:+g} lies outside our 95% CI"
    if b["stale"]:
        row["verdict"] = (f"not resolved: rendered at a superseded operating point "
                          f"({b['epochs']} epochs; changed since: {', '.join(b['stale'])})")
    return row


def evaluate_all(path: str | Path = "docs/claims.yaml", root: str | Path = ".") -> list[dict]:
    root = Path(root)
    lock = _lock(root)
    params = yaml.safe_load((root / "params.yaml").read_text()) if (root / "params.yaml").exists() else {}
    return [evaluate(c, root, lock, params) for c in load(root / path if not Path(path).is_absolute() else path)]


def category(verdict: str) -> str:
    """One of :data:`VERDICTS` for a verdict string."""
    for v in VERDICTS:
        if verdict.startswith(v):
            return v
    raise ClaimError(f"unknown verdict {verdict!r}")


def counts(rows: list[dict]) -> dict:
    out = {v: 0 for v in VERDICTS}
    for r in rows:
        out[category(r["verdict"])] += 1
    return out


def item_status(rows: list[dict], item: str) -> str | None:
    """The index's status of a paper item from its claims (None: the register has no claim for it)."""
    mine = [r for r in rows if r["item"] == item]
    if not mine:
        return None
    c = counts(mine)
    return ", ".join(f"{n} {v}" for v, n in c.items() if n)


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.0f}"


def markdown(rows: list[dict]) -> str:
    c = counts(rows)
    lines = ["# The paper's claims and our verdicts", "",
             "Generated by the `claims` stage (`notebooks/claims.ipynb`, `lib/maedet/claims.py`) from "
             "`docs/claims.yaml` and the stages' outputs under `reports/`; do not edit.", "",
             f"**{len(rows)} claims: " + ", ".join(f"{n} {v}" for v, n in c.items()) + ".**", "",
             "Verdict rule: the difference of the two arms with its 95% confidence interval (paired t over seeds "
             "where both arms share the seeds, else Welch t); *holds* / *contradicted* only when the interval "
             "excludes 0, else *not resolved*. FLOPs and params are exact comparisons within the stated "
             "tolerance. A training stage last rendered at parameters that have changed since (a superseded "
             "operating point) gives *not resolved*, whatever its old numbers show.", "",
             "| claim | item | the paper | ours | 95% CI | runs (a/b) | basis | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = f"[{_fmt(r['lo'])}, {_fmt(r['hi'])}]" if r["lo"] is not None else ""
        n = f"{r['n_a']}/{r['n_b']}" if r["n_a"] is not None and r["rule"] != "exact" \
            and not r["rule"].startswith(("|", "value")) else ""
        b = "" if r["profile"] is None else f"{r['profile']}" + (f", {r['epochs']} ep" if r["epochs"] else "")
        lines.append(f"| {r['claim']} (`{r['id']}`) | {r['item']} | {r['paper']} | {_fmt(r['ours'], 4)} | {ci} | "
                     f"{n} | {b} | {r['verdict']} |")
    return "\n".join(lines) + "\n"

"""Training runs shared by the tables: specification, a content-addressed run cache, parallel execution,
and seed statistics.

A run is (backbone structure, head, dataset, seed, profile, optional pretrained init). Its id hashes all of
that plus the source of the modules that decide training, so a finished run is reused by every table that
needs it (Table 1's FCOS runs serve Tables 4, 8 and 9 too) and is redone when any of it changes. Runs live
in ``cache/train/<id>/`` (mmdet work_dir: checkpoints, logs, ``results.json``); a killed run resumes from its
last epoch checkpoint. Every finished run is also recorded in the git-tracked ledger (:mod:`maedet.ledger`,
``ledger/runs/``), which is read first: a run recorded there is not trained again, on any machine with the same
library versions. The tables' own numbers are written by the notebooks into DVC-tracked artifacts.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import ledger
from .structure import Structure, load

ROOT_CACHE = Path(os.environ.get("MAEDET_RUN_CACHE", "cache/train"))
_CODE = ("detectors.py", "mmdet_backbone.py", "networks.py", "structure.py", "data.py")


def _code_hash() -> str:
    h = hashlib.sha1()
    here = Path(__file__).parent
    for name in _CODE:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:10]


def structure_dict(backbone) -> dict:
    """What a :class:`Run` stores as its backbone: the structure dict of a structure (zoo name, JSON path, dict,
    Structure), or the canonical, JSON-normalised spec of a SpineNet / DetNAS backbone
    (:func:`maedet.detectors.backbone_spec`: a spec dict or a name such as ``spinenet-96``, ``detnas-3.8g``)."""
    from .detectors import foreign_spec

    spec = foreign_spec(backbone)
    if spec is not None:
        return spec
    s = backbone if isinstance(backbone, Structure) else load(backbone) if isinstance(backbone, (str, Path)) \
        else Structure.from_dict(backbone)
    return s.to_dict()


def is_spec(backbone: dict) -> bool:
    """Whether a Run's ``backbone`` is a SpineNet / DetNAS spec rather than a structure dict."""
    from .detectors import is_foreign

    return isinstance(backbone, dict) and is_foreign(backbone)


def backbone_digest(backbone: dict) -> str:
    """A digest identifying a Run's backbone: the structure's own digest, or one of the spec's canonical JSON."""
    if is_spec(backbone):
        from .detectors import backbone_spec

        return "spec-" + hashlib.sha1(json.dumps(backbone_spec(backbone), sort_keys=True).encode()).hexdigest()[:12]
    return Structure.from_dict(backbone).digest()


@dataclass
class Run:
    """One training run. ``kind`` is ``detect`` (mmdet) or ``classify`` (the top-1 column / pretraining)."""

    label: str                      # the backbone's name in tables (e.g. "maedet-m", "alpha 1:1:6")
    backbone: dict                  # structure dict, or a SpineNet / DetNAS spec (structure_dict)
    head: str = "fcos"
    seed: int = 0
    dataset: str = "digits"
    kind: str = "detect"
    pretrained: str | None = None   # id of a classify run whose backbone initialises this one
    profile: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        d = asdict(self)
        d.pop("label")
        d["code"] = _code_hash()
        digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.kind}-{self.head if self.kind == 'detect' else 'cls'}-s{self.seed}-{digest}"

    def dir(self, root: Path = None) -> Path:
        return Path(root or ROOT_CACHE) / self.id

    def result(self, root: Path = None) -> dict | None:
        p = self.dir(root) / "results.json"
        return json.loads(p.read_text()) if p.exists() else None


def detect_run(label, backbone, head, seed, profile, dataset="digits", pretrained: "Run | None" = None) -> Run:
    """A detection run; ``profile``'s per-head table (``heads``) is resolved for ``head`` and its per-dataset
    table (``datasets``) for ``dataset`` here (:func:`maedet.detectors.head_profile`,
    :func:`maedet.detectors.dataset_profile`; the dataset's entry wins)."""
    from .detectors import dataset_profile, head_profile

    return Run(label, structure_dict(backbone), head, int(seed), dataset, "detect",
               pretrained.id if pretrained is not None else None,
               dataset_profile({**head_profile(profile, head), "datasets": (profile or {}).get("datasets")}, dataset))


def dataset_adaptation(params: dict, profile: str, dataset: str) -> dict:
    """The detector adaptation that the stages of ``params`` (params.yaml) train ``dataset`` with at
    ``profile``: the ``detector`` of every ``<stage>.<profile>.transfer`` whose ``dataset`` it is ({} for the
    digits set, or when no stage transfers to it). Two stages that disagree raise ``ValueError``, so
    ``maedet train --dataset`` and the stages always train the same runs."""
    found = {}
    for name, section in params.items():
        t = (section.get(profile) or {}).get("transfer") if isinstance(section, dict) and isinstance(
            section.get(profile), dict) else None
        if isinstance(t, dict) and t.get("dataset") == dataset:
            found[name] = dict(t.get("detector") or {})
    values = {json.dumps(v, sort_keys=True) for v in found.values()}
    if len(values) > 1:
        raise ValueError(f"stages {', '.join(sorted(found))} adapt the detector for {dataset} differently")
    return next(iter(found.values())) if found else {}


# heads that one stage alone trains, with that stage's `detector_overrides` (table6: SSDLite's mobile backbones)
HEAD_STAGES = {"ssdlite": "table6"}


def head_adaptation(params: dict, profile: str, head: str) -> dict:
    """The ``detector_overrides`` that the one stage training ``head`` applies at ``profile`` ({} for the heads
    every stage shares), so ``maedet train ssdlite ...`` trains the runs the table6 stage reads."""
    stage = HEAD_STAGES.get(head)
    if stage is None:
        return {}
    return dict(((params.get(stage) or {}).get(profile) or {}).get("detector_overrides") or {})


def classify_run(label, backbone, seed, profile) -> Run:
    if is_spec(structure_dict(backbone)):
        raise ValueError(f"classification runs (top-1, pretraining) are for structure backbones, not the spec "
                         f"{backbone!r}")
    return Run(label, structure_dict(backbone), "cls", int(seed), "digits_cls", "classify", None, dict(profile))


def recorded(run: Run, root: Path = None, ledger_root: Path = None) -> dict | None:
    """The results of a finished run: from the ledger, else from the run cache's ``results.json`` (then
    recorded in the ledger too); None when it has not finished."""
    # a classification run also provides the backbone checkpoint of pretrained runs, which only the cache holds
    needs_ckpt = run.kind == "classify" and not (run.dir(root) / "backbone.pth").exists()
    rec = None if needs_ckpt else ledger.lookup(run, ledger_root)
    if rec is not None:
        return rec["results"]
    res = run.result(root)
    if res is not None:
        ledger.write(run, res, ledger_root)
    return res


def execute(run: Run, data_root: str | Path = "data", root: Path = None, ledger_root: Path = None,
            work_dir: str | Path | None = None) -> dict:
    """Run one training in this process (what the worker subprocess calls), unless the ledger (or the run
    cache) already holds it; the finished run is recorded in the ledger. ``work_dir`` replaces the run-cache
    folder ``root/<id>`` (checkpoints, resume)."""
    done = recorded(run, root, ledger_root) if work_dir is None else (ledger.lookup(run, ledger_root) or {}).get("results")
    if done is not None:
        return done
    res = _train(run, data_root, root, Path(work_dir) if work_dir is not None else run.dir(root))
    ledger.write(run, res, ledger_root)
    return res


def _train(run: Run, data_root, root, out: Path) -> dict:
    from . import detectors

    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(asdict(run), indent=1, sort_keys=True))
    if run.kind == "classify":
        p = run.profile
        res = detectors.classify(run.backbone, Path(data_root) / "digits_cls", width_multiplier=p["width_multiplier"],
                                 epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                                 input_size=p["input_size"], seed=run.seed, threads=p.get("threads", 2),
                                 save_to=out / "backbone.pth", max_train=p.get("max_train"))
        res = dict(res, label=run.label, kind="classify")
        (out / "results.json").write_text(json.dumps(res, indent=1, sort_keys=True))
        return res
    pre = None
    if run.pretrained is not None:
        pre = Path(root or ROOT_CACHE) / run.pretrained / "backbone.pth"
        if not pre.exists():
            raise FileNotFoundError(f"run {run.id} needs the pretrained backbone {pre}")
    cfg = detectors.make_config(run.backbone, run.head, data_root, profile=run.profile, seed=run.seed,
                                work_dir=out, dataset=run.dataset, pretrained=str(pre) if pre else None)
    res = detectors.train(cfg)
    return res


def run_all(runs: list[Run], data_root: str | Path = "data", parallel: int = 2, root: Path = None,
            progress: bool = True, ledger_root: Path = None, train: bool = True) -> list[dict | None]:
    """Execute the runs that neither the ledger nor the run cache holds, ``parallel`` at a time in worker
    processes (each with ``profile['threads']`` torch threads); classification runs that others depend on go
    first. Returns the results of every run, in order. ``train=False`` trains nothing: runs not recorded yet
    come back as None (a stage then renders what the ledger holds and lists what it lacks)."""
    root = Path(root or ROOT_CACHE)
    ledger_root = Path(ledger_root or ledger.ROOT)
    if not train:
        return [recorded(r, root, ledger_root) for r in runs]
    todo, seen = [], set()
    for r in sorted(runs, key=lambda r: r.kind != "classify"):
        if r.id not in seen and recorded(r, root, ledger_root) is None:
            seen.add(r.id)
            todo.append(r)
    bar = None
    if progress and todo:
        from .report import progress as pbar

        bar = pbar(total=len(todo), desc="training runs", mininterval=1.0)

    def work(r: Run):
        spec = json.dumps(asdict(r))
        log = r.dir(root)
        log.mkdir(parents=True, exist_ok=True)
        t = time.time()
        with open(log / "worker.log", "a") as f:
            p = subprocess.run([sys.executable, "-m", "maedet.experiments", spec, str(data_root), str(root),
                                str(ledger_root)],
                               stdout=f, stderr=subprocess.STDOUT)
        if bar is not None:
            bar.update(1)
        if p.returncode != 0:
            tail = (log / "worker.log").read_text()[-2000:]
            raise RuntimeError(f"training run {r.label}/{r.head}/seed {r.seed} ({r.id}) failed after "
                               f"{time.time() - t:.0f}s:\n{tail}")

    cls = [r for r in todo if r.kind == "classify"]
    det = [r for r in todo if r.kind != "classify"]
    try:
        for batch in (cls, det):
            with ThreadPoolExecutor(max_workers=max(1, parallel)) as ex:
                list(ex.map(work, batch))
    finally:
        if bar is not None:
            bar.close()
    return [recorded(r, root, ledger_root) for r in runs]


# --------------------------------------------------------------------------------------------------
# statistics over seeds
# --------------------------------------------------------------------------------------------------
def seed_stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[~np.isnan(v)]  # a run not in the ledger yet is NaN in a frame: it is not a seed
    if len(v) == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}


def verdict(a: dict, b: dict, name_a: str, name_b: str, interval: dict | None = None) -> str:
    """The ordering of two seed groups (:func:`seed_stats` dicts), judged by the 95% confidence interval of
    their mean difference (``interval``: e.g. :func:`maedet.stats.paired_interval`; by default Welch's from the
    arms' mean, sd and n): an ordering is stated only where the interval excludes 0, never from the seed
    ranges."""
    from . import stats

    if a["n"] == 0 or b["n"] == 0:
        return "no data"
    if a["n"] < 2 or b["n"] < 2:
        hi, lo = (name_a, name_b) if a["mean"] >= b["mean"] else (name_b, name_a)
        return f"{hi} >= {lo} on one seed (not resolved: no spread to test against)"
    iv = interval or stats.welch_interval(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
    if iv["lo"] is None:
        return "not resolved (one run)"
    ci = f"{iv['rule']} {iv['lo']:.2f} to {iv['hi']:.2f}"
    if iv["lo"] > 0:
        return f"{name_a} > {name_b} ({ci})"
    if iv["hi"] < 0:
        return f"{name_b} > {name_a} ({ci})"
    hi, lo = (name_a, name_b) if iv["diff"] >= 0 else (name_b, name_a)
    return f"{hi} >= {lo} on the mean, not resolved ({ci} holds 0)"


# --------------------------------------------------------------------------------------------------
# tables: data, result frames, summaries
# --------------------------------------------------------------------------------------------------
DETECT_METRICS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
MASK_METRICS = ("mask_AP", "mask_AP50", "mask_AP75", "mask_AP_S", "mask_AP_M", "mask_AP_L")


def ensure_data(data_root: str | Path, datasets=("digits", "digits_cls"), build_profile: str | None = None) -> Path:
    """The training data under ``data_root``. With ``build_profile`` (the ``ci`` profile passes ``ci``) the
    missing datasets are generated there (seconds at ``ci``); otherwise a missing dataset is an error that
    says how to make it (``make data`` materialises and verifies ``data/`` against ``data.dvc``)."""
    root = Path(data_root)
    # a COCO-format directory given directly (annotations/train.json; e.g. COCO itself) serves detection
    direct = (root / "annotations" / "train.json").exists()
    missing = [d for d in datasets if not (root / d / "meta.json").exists() and not (direct and d == "digits")]
    if missing and build_profile is None:
        raise FileNotFoundError(f"dataset(s) {', '.join(missing)} not found under {root}/ "
                                f"(run `make data`, or `python -m maedet.data {root}`)")
    if missing:
        from . import data

        params = copy.deepcopy(data.PROFILES[build_profile])
        for d in data.DATASETS:
            if d not in missing:
                params[d] = None
        data.build_all(root, params)
    return root


def frame(runs: list[Run], results: list[dict | None]):
    """One row per run: label, head, seed, the COCO metrics (or top-1), costs, speed, wall time, run id (the run
    cache's folder, which changes with the training code) and ledger digest (which does not)."""
    import pandas as pd

    rows = []
    for r, res in zip(runs, results):
        row = {"label": r.label, "head": r.head, "seed": r.seed, "kind": r.kind,
               "init": "pretrain" if r.pretrained else "scratch", "run": r.id}
        res = res or {}
        if r.kind == "classify":
            row.update(top1=res.get("top1"), train_seconds=res.get("train_seconds"),
                       backbone_macs=res.get("backbone_macs"), backbone_params=res.get("backbone_params"))
        else:
            for k in DETECT_METRICS + (MASK_METRICS if r.head in ("mask_rcnn", "scnet") else ()):
                row[k] = res.get(k, float("nan"))  # NaN where the run is not recorded yet (train=False)
            for k in MASK_METRICS:
                if k in res and k not in row:
                    row[k] = res[k]
            row.update(backbone_macs=res.get("backbone_macs"), backbone_params=res.get("backbone_params"),
                       detector_macs=res.get("detector_macs"), images_per_second=res.get("images_per_second"),
                       train_seconds=res.get("train_seconds"), epochs=res.get("epochs", r.profile.get("epochs")))
        row["digest"] = ledger.digest(r)
        rows.append(row)
    return pd.DataFrame(rows)


def missing(runs: list[Run], results: list[dict | None]):
    """The runs without a result, as a table (label, head, seed, dataset, init, run id)."""
    import pandas as pd

    rows = [{"label": r.label, "head": r.head, "seed": r.seed, "dataset": r.dataset,
             "init": "pretrain" if r.pretrained else "scratch", "run": r.id}
            for r, res in zip(runs, results) if res is None]
    return pd.DataFrame(rows, columns=["label", "head", "seed", "dataset", "init", "run"])


def curves(runs: list[Run], results: list[dict | None]):
    """The learning curves of the runs that evaluated during training: one row per (run, evaluated epoch)
    with label, head, seed, epoch, AP (and AP50)."""
    import pandas as pd

    rows = []
    for r, res in zip(runs, results):
        for e, v in sorted(((res or {}).get("val_history") or {}).items(), key=lambda kv: int(kv[0])):
            rows.append({"label": r.label, "head": r.head, "seed": r.seed,
                         "init": "pretrain" if r.pretrained else "scratch", "epoch": int(e),
                         "AP": v.get("AP"), "AP50": v.get("AP50")})
    return pd.DataFrame(rows, columns=["label", "head", "seed", "init", "epoch", "AP", "AP50"])


def plateau(curve_df, final_gain: float = 0.5):
    """Per run: the final AP, the best evaluated AP, final/best, the AP gained over the last evaluation
    interval, and whether the run has plateaued (gained less than ``final_gain`` AP over that interval)."""
    import pandas as pd

    rows = []
    for (label, head, seed, init), g in curve_df.groupby(["label", "head", "seed", "init"], sort=False):
        g = g.sort_values("epoch")
        ap = g["AP"].tolist()
        last_gain = ap[-1] - ap[-2] if len(ap) > 1 else float("nan")
        rows.append({"label": label, "head": head, "seed": seed, "init": init, "final AP": ap[-1],
                     "best AP": max(ap), "final / best": ap[-1] / max(ap) if max(ap) > 0 else float("nan"),
                     "gain over last interval": last_gain,
                     "plateaued": bool(last_gain < final_gain) if len(ap) > 1 else False})
    return pd.DataFrame(rows, columns=["label", "head", "seed", "init", "final AP", "best AP", "final / best",
                                       "gain over last interval", "plateaued"])


def summary(df, by=("label", "head"), metrics=("AP", "AP_S", "AP_M", "AP_L")):
    """Mean and sample standard deviation over seeds of each metric, per group (order of first appearance)."""
    import pandas as pd

    out = []
    for key, g in df.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        done = g[g[metrics[0]].notna()] if metrics and metrics[0] in g else g
        row["seeds"] = int(done["seed"].nunique())
        for m in metrics:
            if m not in g:
                continue
            st = seed_stats(g[m].tolist())
            row[m] = st["mean"]
            row[f"{m} sd"] = st["std"]
        out.append(row)
    return pd.DataFrame(out)


def compare(df, label_a: str, label_b: str, metric: str = "AP", **where) -> dict:
    """Seed statistics of ``metric`` for two labels (rows filtered by ``where``, e.g. head="fcos"), the 95%
    interval of their difference (paired by seed where both arms hold the same >= 2 seeds, else Welch's) and
    the :func:`verdict` on their ordering."""
    from . import stats

    sel = df
    for k, v in where.items():
        sel = sel[sel[k] == v]
    ra, rb = sel[sel.label == label_a], sel[sel.label == label_b]
    a, b = seed_stats(ra[metric].tolist()), seed_stats(rb[metric].tolist())
    iv = None
    if "seed" in sel and a["n"] >= 2 and b["n"] >= 2:
        va, vb = ra.set_index("seed")[metric].dropna(), rb.set_index("seed")[metric].dropna()
        if va.index.is_unique and vb.index.is_unique and set(va.index) == set(vb.index):
            seeds = sorted(va.index)
            iv = stats.paired_interval(va[seeds].tolist(), vb[seeds].tolist())
    if iv is None and a["n"] >= 2 and b["n"] >= 2:
        iv = stats.welch_interval(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
    return {"a": label_a, "b": label_b, "metric": metric, **{f"{k}_a": v for k, v in a.items()},
            **{f"{k}_b": v for k, v in b.items()}, "difference": round(a["mean"] - b["mean"], 6),
            "lo": None if iv is None else iv["lo"], "hi": None if iv is None else iv["hi"],
            "rule": None if iv is None else iv["rule"],
            "verdict": verdict(a, b, label_a, label_b, iv), **where}


def collect(stages, head: str, epochs: int | None = None, artifacts: str | Path = "artifacts", root: Path = None,
            ledger_root: Path = None):
    """Every finished from-scratch detection run with ``head`` that the given stages trained (their
    ``artifacts/STAGE/runs.csv``), one row per distinct backbone: AP mean and spread over seeds, the stages
    that trained it, and its structure (read from the run's ``run.json`` in the run cache). ``epochs``
    keeps only runs of that schedule, so the pooled models share one protocol; runs not trained yet (no AP) are
    left out. A run missing from the run cache (a machine that rendered the stage from the ledger) takes its
    structure from its ledger record, found by the row's ledger ``digest`` (or its run id, for tables written
    before the digest column)."""
    import pandas as pd

    root = Path(root or ROOT_CACHE)
    rows, recorded_backbones = [], None
    for st in stages:
        p = Path(artifacts) / st / "runs.csv"
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: run the {st} stage first")
        df = pd.read_csv(p)
        df = df[(df["kind"] == "detect") & (df["head"] == head) & (df["init"] == "scratch") & df["AP"].notna()]
        if epochs is not None and "epochs" in df:
            df = df[df["epochs"] == epochs]
        for _, r in df.iterrows():
            spec = root / r["run"] / "run.json"
            if spec.exists():
                b = json.loads(spec.read_text())["backbone"]
            else:  # rendered from the ledger on a machine without the run cache: the record holds the structure
                if recorded_backbones is None:  # by digest (code-independent), and by the run id it was trained as
                    recorded_backbones = {}
                    for rec in ledger.records(ledger_root):
                        recorded_backbones[rec["digest"]] = recorded_backbones[rec["run_id"]] = rec["settings"]["backbone"]
                key = next((k for k in (r.get("digest"), r["run"]) if isinstance(k, str) and k in recorded_backbones),
                           None)
                if key is None:
                    raise FileNotFoundError(f"run {r['run']} of the {st} stage is neither in the run cache ({root}) "
                                            f"nor in the ledger: re-run the {st} stage")
                b = recorded_backbones[key]
            rows.append({"stage": st, "label": r["label"], "seed": int(r["seed"]), "AP": r["AP"],
                         "digest": backbone_digest(b), "backbone": b})
    if not rows:
        return pd.DataFrame(columns=["digest", "label", "stages", "seeds", "AP", "AP sd", "backbone"])
    df = pd.DataFrame(rows).drop_duplicates(["digest", "seed"])
    out = []
    for digest, g in df.groupby("digest", sort=False):
        st = seed_stats(g["AP"].tolist())
        out.append({"digest": digest, "label": g["label"].iloc[0], "stages": ",".join(dict.fromkeys(g["stage"])),
                    "seeds": st["n"], "AP": st["mean"], "AP sd": st["std"], "backbone": g["backbone"].iloc[0]})
    return pd.DataFrame(out)


def main(argv=None):  # worker entry: python -m maedet.experiments RUN_JSON DATA_ROOT CACHE_ROOT [LEDGER_ROOT]
    argv = argv if argv is not None else sys.argv[1:]
    run = Run(**json.loads(argv[0]))
    execute(run, argv[1], Path(argv[2]), Path(argv[3]) if len(argv) > 3 else None)


if __name__ == "__main__":
    main()

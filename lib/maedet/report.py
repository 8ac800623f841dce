"""Helpers the notebooks use to write their artifacts deterministically (tables, figures, JSON).

Everything written here is byte-identical across re-runs of unchanged code: JSON with sorted keys and
rounded floats, CSV/Markdown from pandas with fixed float formats, PNG/SVG without dates.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

PROFILE_NOTE = {
    "paper": "the paper's own settings",
    "default": "the reduced-scale default profile",
    "ci": "the seconds-long CI profile (numbers are smoke-test values, not results)",
}


def _round(obj, digits: int):
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {str(k): _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v, digits) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _round(obj.item(), digits)
    return obj


def write_json(obj, path: str | Path, digits: int = 10) -> Path:
    """JSON with sorted keys and floats rounded to ``digits`` significant digits, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_round(obj, digits), indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def write_table(df, stem: str | Path, floatfmt: str = ".4g", title: str | None = None, note: str | None = None):
    """``stem.csv`` and ``stem.md`` (a Markdown table, with an optional title and note)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(stem.with_suffix(".csv"), index=False, float_format=lambda v: format(v, floatfmt))
    md = []
    if title:
        md += [f"### {title}", ""]
    md.append(_markdown(df, floatfmt))
    if note:
        md += ["", note]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    return df


def _markdown(df, floatfmt: str) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def save_figure(fig, stem: str | Path, formats=("png", "svg")) -> list[Path]:
    """Save without creation dates (so unchanged code gives identical files)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in formats:
        p = stem.with_suffix("." + ext)
        meta = {"Date": None} if ext == "svg" else {"Software": None}
        kw = {"metadata": meta}
        if ext == "svg":
            import matplotlib

            matplotlib.rcParams["svg.hashsalt"] = "maedet"
        fig.savefig(p, dpi=110, bbox_inches="tight", **kw)
        out.append(p)
    return out


def banner(profile: str, stage: str) -> str:
    return f"**Stage `{stage}`, profile `{profile}`** ({PROFILE_NOTE.get(profile, profile)})."


def rel_diff(ours: float, paper: float | None) -> float | None:
    if paper in (None, 0) or ours is None:
        return None
    return 100.0 * (ours / paper - 1.0)


def progress(iterable=None, **kw):
    """A tqdm bar that never lands in a rendered notebook (whose outputs must not hold timings).

    In a script it goes to the terminal (stderr). Inside a notebook kernel (papermill, the DVC stages,
    JupyterLab) ipykernel forwards even the process's own stderr into the cell outputs, so there the bar is
    written to ``logs/progress.log`` under the working directory instead: follow a running stage with
    ``tail -f logs/progress.log``."""
    import sys

    from tqdm import tqdm

    kw.setdefault("mininterval", 5.0)
    if "ipykernel" in sys.modules:
        log = Path("logs")
        log.mkdir(exist_ok=True)
        kw["file"] = open(log / "progress.log", "a", buffering=1)  # noqa: SIM115 (lives as long as the bar)
    else:
        kw["file"] = sys.__stderr__
    return tqdm(iterable, **kw)

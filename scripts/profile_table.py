#!/usr/bin/env python
"""The per-profile table of what every training and study stage runs, generated from ``params.yaml``.

``docs/protocol.md`` holds it between ``<!-- profiles:begin -->`` and ``<!-- profiles:end -->``;
``scripts/make_index.py`` rewrites that block (and ``--check`` fails when it has drifted from params.yaml),
so the prose cannot say one thing while the parameters do another.

    python scripts/profile_table.py          # print the table
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("ci", "default", "extended", "paper")
BEGIN, END = "<!-- profiles:begin -->", "<!-- profiles:end -->"


def _grid(grid: dict) -> str:
    return "; ".join(f"{h}: {', '.join(b)}" for h, b in grid.items())


def _n(x: int) -> str:
    return f"{x:,}"


def _trains(p: dict, what: str) -> str:
    return what if p.get("train_detectors", True) else "no training"


def _training(p: dict) -> str:
    d = p["detector"]
    heads = d.get("heads") or {}
    own = "; ".join(f"{h}: " + ", ".join(f"{k} {v}" for k, v in o.items()) for h, o in heads.items())
    return (f"{d['epochs']} epochs at {d['img_scale'][0]} px, width x{d['width_multiplier']:g}, lr {d['lr']}"
            + (f" ({own})" if own else "") + f"; seeds {len(p['seeds'])}; "
            + ("trains the runs the ledger lacks" if p.get("train_missing") else "renders from the ledger, trains nothing"))


def _transfer(t: dict | None) -> str:
    if not t:
        return "no transfer rows; "
    return (f"transfer to {t['dataset']} ({', '.join(t['heads'])}; {', '.join(t['backbones'])}; "
            f"{'/'.join(t.get('init', ['scratch']))}; seeds {len(t['seeds'])}; "
            + ", ".join(f"{k} {v}" for k, v in (t.get("detector") or {}).items()) + "); ")


DESCRIBE = {
    "training": _training,
    "table1": lambda p: _grid(p["grid"]),
    "table3": lambda p: f"{p['head'].upper()}: " + ", ".join(
        k + (f" (width x{v['width_scale']:g})" if isinstance(v, dict) and "width_scale" in v else "")
        for k, v in p["backbones"].items()) + f"; costs at {p['cost_profile']['img_scale'][0]}x{p['cost_profile']['img_scale'][1]}",
    "table4": lambda p: f"{', '.join(p['heads'])}" + (" + top-1" if p.get("top1") else "")
                        + ("; Zen row from table9" if p.get("zen_structure") else "; no Zen row"),
    "table5": lambda p: _transfer(p.get("transfer")) + f"{' + '.join(h.replace('mask_rcnn', 'Mask R-CNN').replace('scnet', 'SCNet') for h in p.get('heads', ['mask_rcnn']))}: "
                        f"{', '.join(p['backbones'])}, {p['epochs']} epochs"
                        + ("" if p.get("train_detectors", True) else " (not trained)"),
    "table6": lambda p: f"{len(p['budgets'])} MBv2-space searches (N={_n(p['population'])}, T={_n(p['iterations'])}); "
                        + _trains(p, "SSDLite: the five rows"),
    "table7": lambda p: _grid(p["grid"]) + " (scratch vs pretrained)",
    "table8": lambda p: f"{len(p['ratios'])} searches (N={_n(p['population'])}, T={_n(p['iterations'])}); "
                        + _trains(p, f"FCOS: {', '.join(p['train'])} + R50"),
    "table9": lambda p: f"{len(p['proxies'])} searches (N={_n(p['population'])}, T={_n(p['iterations'])}); "
                        + _trains(p, "FCOS: the found structures + R50" + (" + the published one" if p.get("reference") else "")),
    "figure5": lambda p: f"2 searches (N={_n(p['population'])}, T={_n(p['iterations'])}), {len(p['points'])} points each"
                         + (" + init" if p.get("include_init") else "") + "; "
                         + _trains(p, f"{p['head'].upper()}, {len(p['train_seeds'])} seed(s)"),
    "figure7": lambda p: f"{p['n_random']} random models; " + _trains(p, f"{p['head'].upper()}, 1 seed each + M, R50"),
    "score_ap": lambda p: "; ".join(f"{h}: {', '.join(s)}" for h, s in p["pools"].items()) or "no pools",
    "nasbench201": lambda p: f"{_n(p['n_cells'])} cells",
}


def render(params: dict | None = None) -> str:
    params = params if params is not None else yaml.safe_load((ROOT / "params.yaml").read_text())
    lines = [BEGIN, "<!-- generated from params.yaml by scripts/profile_table.py (via make_index.py); do not edit -->",
             "| stage | " + " | ".join(f"`{p}`" for p in PROFILES) + " |",
             "|---|" + "---|" * len(PROFILES)]
    for stage, fn in DESCRIBE.items():
        sec = params.get(stage)
        if sec is None:
            raise SystemExit(f"params.yaml has no section {stage!r}")
        cells = []
        for prof in PROFILES:
            if prof not in sec:
                raise SystemExit(f"params.yaml section {stage!r} has no profile {prof!r}")
            cells.append(fn(sec[prof]).replace("|", "/"))
        lines.append(f"| `{stage}` | " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines)


def with_block(text: str, block: str, path: str = "docs/protocol.md") -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} lacks the {BEGIN} ... {END} markers")
    return text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]


if __name__ == "__main__":
    print(render())
    sys.exit(0)

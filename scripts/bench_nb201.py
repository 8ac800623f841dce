#!/usr/bin/env python
"""Rank correlation of zero-shot proxies with trained CIFAR-10 accuracy on NAS-Bench-201 cells.

    python scripts/bench_nb201.py --n 1000 --cache nb201_scores.jsonl --out nb201_corr

Scores every sampled cell (resumable: cells already in --cache under the same settings are skipped), then
writes OUT.csv (one row per proxy: Spearman rho, Kendall tau-b, bootstrap 95 % intervals, seconds per cell),
OUT_cells.csv (per-cell scores) and OUT.md (the table, with the published values beside it), and prints OUT.md.
Accuracies: analog-nasbench's ``baseline_accuracy`` (see maedet.nasbench201).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "lib") not in sys.path:
    sys.path.insert(0, str(ROOT / "lib"))

from maedet import nasbench201 as nb  # noqa: E402


def _fmt(v, nd=3):
    return "-" if v is None else f"{v:.{nd}f}"


def markdown(table, table_conn, settings) -> str:
    pub = {p["proxy"]: p for p in nb.PUBLISHED}
    lines = [
        f"NAS-Bench-201, CIFAR-10 accuracy = analog-nasbench {nb.ANALOG_NASBENCH_VERSION} `{nb.ACCURACY_METRIC}`; "
        f"{settings['n_cells']} sampled cells (seed {settings['seed']}), data batch {settings['batch']} "
        f"({settings['data']}), noise batch {settings['noise_batch']}; bootstrap 95 % intervals.",
        "",
        "| proxy | n | Spearman rho [95% CI] | Kendall tau [95% CI] | rho, connected cells | s/cell "
        "| published rho / tau (quoted, not ours) |",
        "|---|---|---|---|---|---|---|",
    ]
    conn = {r["proxy"]: r for r in table_conn.to_dict("records")}
    for r in table.to_dict("records"):
        p = pub.get(r["proxy"], {})
        c = conn.get(r["proxy"], {})
        quoted = f"{_fmt(p.get('spearman'), 2)} / {_fmt(p.get('kendall'), 2)}" if p else "-"
        lines.append(
            f"| {r['proxy']} | {r['n']} | {r['spearman']:.3f} [{r['spearman_lo']:.3f}, {r['spearman_hi']:.3f}] "
            f"| {r['kendall']:.3f} [{r['kendall_lo']:.3f}, {r['kendall_hi']:.3f}] "
            f"| {_fmt(c.get('spearman'))} | {r['sec_per_cell']:.3f} | {quoted} |")
    lines += ["", "Published values (all 15,625 cells, NAS-Bench-201's own accuracies, CIFAR-10 batches):"]
    lines += [f"- {p['proxy']}: {p['source']}" for p in nb.PUBLISHED]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="cells to sample (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64, help="data batch of NASWOT/GradNorm/SNIP (default 64)")
    ap.add_argument("--noise-batch", type=int, default=16, help="Gaussian batch of Zen and the entropies")
    ap.add_argument("--data", default="mnist", choices=["mnist", "noise"])
    ap.add_argument("--proxies", default=",".join(nb.DEFAULT_PROXIES))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--cache", default=None, help="JSONL of per-cell scores (resumable)")
    ap.add_argument("--out", default=None, help="output prefix (OUT.csv, OUT_cells.csv, OUT.md)")
    ap.add_argument("--time-limit", type=float, default=None, help="stop scoring after this many seconds")
    args = ap.parse_args(argv)

    proxies = [p for p in args.proxies.split(",") if p]
    t0 = time.perf_counter()
    archs = nb.sample_archs(args.n, args.seed)
    df = nb.score_cells(archs, proxies, batch=args.batch, seed=args.seed, data=args.data, repeats=args.repeats,
                        noise_batch=args.noise_batch, cache=args.cache, threads=args.threads, progress=True,
                        time_limit=args.time_limit)
    table = nb.correlation_table(df, proxies, bootstrap=args.bootstrap, seed=args.seed)
    table_conn = nb.correlation_table(df, proxies, bootstrap=0, seed=args.seed, connected_only=True)
    settings = {"n_cells": len(df), "seed": args.seed, "batch": args.batch, "data": args.data,
                "noise_batch": args.noise_batch}
    md = markdown(table, table_conn, settings)
    md += f"\nWall time of this run (scoring not in the cache + statistics): {time.perf_counter() - t0:.0f} s\n"
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(f"{out}.csv", index=False)
        df.to_csv(f"{out}_cells.csv", index=False)
        Path(f"{out}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

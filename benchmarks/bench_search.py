"""Benchmark of a paper-scale search (MAE-DET-M setting) on this machine.

Table 15 start, FLOPs <= 4.4G at 224, <= 91 layers, alpha (0,0,1,1,6), N = 256, T = 96,000, coarse-to-fine,
one trajectory line per iteration. Each search runs in its own process so that its peak memory (max RSS)
is its own. Writes benchmarks/search_speed.json.

    python benchmarks/bench_search.py [--estimators closed-form,expected] [--out benchmarks/search_speed.json]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, resource, sys, time
from maedet.search import Budget, Search, make_config
est, out = sys.argv[1], sys.argv[2]
cfg = make_config("init", estimator=est, alpha=(0, 0, 1, 1, 6), budget=Budget(flops=4.4e9, layers=91),
                  population=256, iterations=96000, mutation="coarse-to-fine", space="paper", seed=0, log_every=1)
t = time.perf_counter()
s = Search(cfg, out).run()
wall = time.perf_counter() - t
print(json.dumps({"estimator": est, "seconds": wall, "iterations_per_second": 96000 / wall,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "evaluated": s["stats"]["evaluated"], "best_score": s["score"],
                  "best_flops_224": s["flops"], "best_params": s["params"], "stage_layers": s["stage_layers"]}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--estimators", default="closed-form,expected")
    ap.add_argument("--out", default="benchmarks/search_speed.json")
    args = ap.parse_args()
    res = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
           "setting": "Table 15 start, FLOPs<=4.4G@224, <=91 layers, alpha 0,0,1,1,6, N=256, T=96000, coarse-to-fine",
           "runs": []}
    for est in args.estimators.split(","):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, "-c", CHILD, est, os.path.join(d, "s")], capture_output=True,
                               text=True, check=True)
            run = json.loads(r.stdout.strip().splitlines()[-1])
            run["trajectory_mb"] = os.path.getsize(os.path.join(d, "s", "trajectory.jsonl")) / 2**20
        print(json.dumps(run), flush=True)
        res["runs"].append(run)
    res["paper_gpu_days"] = 0.6
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

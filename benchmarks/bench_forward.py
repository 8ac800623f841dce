"""Benchmark of the `forward` entropy estimator (the released code's method) on maedet-m at 384x384.

Measures (1) seconds per structure per repeat at each batch size, and (2) the smallest batch size whose
scores stay within the seed-to-seed spread of batch 32 (the released code's batch). With the same seed
the weights are identical across batch sizes (they are drawn before the input), so the paired difference
score(batch b, seed) - score(batch 32, seed) isolates the effect of the batch.

    python benchmarks/bench_forward.py [--seeds 6] [--out benchmarks/forward_estimator.json]
"""
import argparse
import json
import statistics
import time

import torch

from maedet import zoo
from maedet.score import ScoreSettings, score


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--structure", default="maedet-m")
    ap.add_argument("--resolution", type=int, default=384)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--out", default="benchmarks/forward_estimator.json")
    args = ap.parse_args()
    s = zoo.get(args.structure)
    batches = [int(b) for b in args.batches.split(",")]
    res = {"structure": args.structure, "resolution": args.resolution, "threads": torch.get_num_threads(),
           "repeats_per_score": 1, "by_batch": {}}
    expected = score(s, "expected", settings=ScoreSettings(args.resolution)).score
    res["expected_estimator"] = expected
    for b in batches:
        scores, secs = [], []
        for seed in range(args.seeds):
            t = time.perf_counter()
            scores.append(score(s, "forward", settings=ScoreSettings(args.resolution, b, 1, "float32", seed)).score)
            secs.append(time.perf_counter() - t)
            print(f"batch {b:2d} seed {seed}: {scores[-1]:.4f} ({secs[-1]:.1f}s)", flush=True)
        res["by_batch"][b] = {"scores": scores, "mean": statistics.mean(scores), "std": statistics.stdev(scores),
                              "seconds_per_structure": statistics.median(secs)}
    ref = res["by_batch"][32]
    spread = ref["std"]
    for b in batches:
        d = res["by_batch"][b]
        diffs = [x - y for x, y in zip(d["scores"], ref["scores"])]
        d["max_paired_diff_vs_32"] = max(abs(v) for v in diffs)
        d["within_spread_of_32"] = d["max_paired_diff_vs_32"] <= spread
    res["seed_spread_batch32"] = spread
    res["seed_spread_batch32_pct"] = 100 * spread / ref["mean"]
    res["smallest_batch_within_spread"] = min(b for b in batches if res["by_batch"][b]["within_spread_of_32"])
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k != "by_batch"}, indent=1))


if __name__ == "__main__":
    main()

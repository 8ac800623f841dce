"""DetNAS's three search steps on this machine at the training protocol's reduced scale, timed (Table 2's
"measured here" block; the found path is Table 3's "DetNAS (searched here)" row). Writes
``benchmarks/detnas_search.json``.

The search space is the one of the Table 3 DetNAS row (``table3.<profile>.backbones.detnas-3.8g`` in
params.yaml: the DetNAS-3.8G space, 40 blocks, at its width_scale), trained at the profile's detection
setting (``training.<profile>.detector``, GFL) and pre-trained at its classification setting
(``training.<profile>.classify``); the FLOPs constraint is MAE-DET-M's backbone conv MACs at that setting
(``maedet.detectors.complexity``, the number Table 3 matches widths on). The EA is
``maedet.detnas_search.EA_REDUCED`` (100 paths). Resumable: rerun the same command after a kill and it
continues in ``--work-dir`` (step 1 restarts if it was the one killed; step 2 resumes from its last epoch;
step 3 replays its cached fitnesses).

    python benchmarks/bench_detnas.py                  # default profile (about 40 min on one core)
    python benchmarks/bench_detnas.py --profile ci --out /tmp/detnas_ci.json   # a smoke run (about 1 min)
"""
import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

CI_EA = dict(population=4, generations=2, topk=2, mutation_num=1, crossover_num=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default", help="params.yaml profile (default, ci)")
    ap.add_argument("--work-dir", default=None, help="where the steps run (default work_dirs/detnas_<profile>)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "detnas_search.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import yaml

    from maedet import detectors, detnas_search

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.profile not in params["training"]:
        ap.error(f"unknown profile {args.profile!r} (params.yaml training: {', '.join(params['training'])})")
    train = params["training"][args.profile]
    prof = train["detector"]
    cls = {k: v for k, v in train["classify"].items() if k != "width_multiplier"}
    t3 = params["table3"][args.profile]
    head = t3["head"]
    dn = next(v for v in t3["backbones"].values() if isinstance(v, dict) and v.get("type") == "DetNASBackbone")
    arch, ws = dn["arch"], float(dn.get("width_scale", 1.0))
    data_root = ROOT / train["data_root"]
    budget = detectors.complexity("maedet-m", head, data_root, profile=prof, detector=False)["backbone_conv_macs"]
    ea = CI_EA if args.profile == "ci" else None
    work = Path(args.work_dir or ROOT / "work_dirs" / f"detnas_{args.profile}")
    res = detnas_search.run(work, data_root, arch=arch, width_scale=ws, head=head, profile=prof, classify=cls,
                            flops_budget=budget, ea=ea, seed=args.seed)
    steps = {"pretrain": res["pretrain"]["train_seconds"] + res["pretrain"]["eval_seconds"],
             "finetune": res["finetune"]["train_seconds"], "search": res["search"]["eval_seconds_total"]}
    found = dict(type="DetNASBackbone", arch=arch, path=res["search"]["best_path"])
    if ws != 1.0:
        found["width_scale"] = ws
    out = dict(
        machine=dict(cpus=os.cpu_count(), python=platform.python_version(), processor=platform.processor()),
        profile=args.profile, head=head, arch=arch, width_scale=ws, seed=args.seed,
        setting=(f"DetNAS {arch} space x width_scale {ws} at training.{args.profile} (GFL, "
                 f"{prof['img_scale'][0]} px, width x{prof['width_multiplier']}, {prof['epochs']} epochs; "
                 f"classification {cls.get('epochs')} epochs); EA {res['search']['ea']['population']} x "
                 f"{res['search']['ea']['generations']}; budget = MAE-DET-M backbone conv MACs"),
        threads=prof.get("threads", 1),
        flops_budget=int(budget), step_seconds={k: round(float(v), 1) for k, v in steps.items()},
        total_seconds=round(float(sum(steps.values())), 1), found_spec=found,
        found_macs=res["search"]["best_macs"], found_ap=res["search"]["best_ap"],
        steps={k: {kk: vv for kk, vv in v.items() if kk not in ("checkpoint", "resumed_from")}
               for k, v in res.items()})
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: out[k] for k in ("step_seconds", "total_seconds", "found_ap", "found_macs", "flops_budget")}))


if __name__ == "__main__":
    main()

"""Training/evaluation speed of the detectors at reduced-scale profiles on this machine, to choose the
``default`` training profile. Writes ``benchmarks/train_speed.json``.

Every measurement runs in a fresh subprocess (its own torch thread count) on the digits dataset (``data/``):

* ``s_per_iter``: steady-state seconds per training iteration *including* data loading (num_workers=0),
  median of ``--iters`` iterations after 2 warm-up ones; ``train_img_per_s`` = batch / s_per_iter;
* ``eval_img_per_s``: evaluation throughput (forward + post-processing, val batch 8);
* ``infer_img_per_s``: batch-1 inference speed (:func:`maedet.detectors.inference_speed`);
* ``startup_s``: building the Runner (config, model, datasets), paid once per training run.

``parallel`` compares one 2-thread process with two 1-thread processes running at once (total images/s).
``run`` times complete :func:`maedet.detectors.train` runs (startup + training + COCO evaluation + speed).
``curves`` (``--curves 12,24``) trains FCOS with MAE-DET-M and ResNet-50 side by side (two 1-thread processes)
at the candidate default profile and records AP along the way: what a run of that length reaches.

    python benchmarks/bench_train.py                 # the full grid (~30 min on 2 cores)
    python benchmarks/bench_train.py --quick         # FCOS only, two profiles
    python benchmarks/bench_train.py --only-curves --curves 12,24   # add learning curves to the JSON
"""
import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, statistics, sys, time
t_start = time.perf_counter()
head, bb, prof, iters, data = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
import torch
from maedet import detectors as det
det._ensure_registered()
torch.set_num_threads(int(prof.get('threads', 2)))
from mmengine.runner import Runner
cfg = det.make_config(bb, head, data, profile=prof, work_dir='/tmp/maedet_bench_train/%s_%s' % (head, bb))
t0 = time.perf_counter()
runner = Runner.from_cfg(cfg)
runner._train_loop = runner.build_train_loop(runner._train_loop)
runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
runner.model.init_weights()
startup = time.perf_counter() - t0
runner.model.train()
it = iter(runner.train_dataloader)
times = []
for i in range(iters + 2):
    t = time.perf_counter()
    d = next(it)
    runner.model.train_step(d, runner.optim_wrapper)
    if i >= 2:
        times.append(time.perf_counter() - t)
s_it = statistics.median(times)
runner.model.eval()
vl = runner.build_dataloader(runner._val_dataloader)
vit = iter(vl)
batches = [next(vit) for _ in range(4)]
with torch.no_grad():
    runner.model.val_step(batches[0])
    t = time.perf_counter()
    n = 0
    for b in batches[1:]:
        runner.model.val_step(b)
        n += len(b['inputs'])
    eval_ips = n / (time.perf_counter() - t)
infer = det.inference_speed(runner.model, vl.dataset, 10)
print(json.dumps(dict(head=head, backbone=bb, s_per_iter=round(s_it, 4),
                      train_img_per_s=round(prof['batch_size'] / s_it, 1), eval_img_per_s=round(eval_ips, 1),
                      infer_img_per_s=infer, startup_s=round(startup, 2),
                      process_s=round(time.perf_counter() - t_start, 1), profile=prof)))
"""

RUN = r"""
import json, shutil, sys, time
from maedet import detectors as det
head, bb, prof, data, wd = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
shutil.rmtree(wd, ignore_errors=True)
t = time.perf_counter()
r = det.train(det.make_config(bb, head, data, profile=prof, work_dir=wd))
keep = ('AP', 'AP50', 'AP_S', 'AP_M', 'AP_L', 'mask_AP', 'train_seconds', 'epoch_seconds', 'iterations',
        'images_per_second', 'detector_macs', 'backbone_macs')
print(json.dumps(dict(head=head, backbone=bb, total_s=round(time.perf_counter() - t, 1), profile=prof,
                      **{k: r.get(k) for k in keep})))
"""


CURVE = r"""
import glob, json, shutil, sys, time
from maedet import detectors as det
head, bb, prof, data, wd = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
shutil.rmtree(wd, ignore_errors=True)
t = time.perf_counter()
r = det.train(det.make_config(bb, head, data, profile=prof, work_dir=wd))
curve = []
for f in glob.glob(wd + '/*/vis_data/scalars.json'):
    for line in open(f):
        d = json.loads(line)
        if 'coco/bbox_mAP' in d:
            curve.append([d['step'], round(100 * d['coco/bbox_mAP'], 2), round(100 * d['coco/bbox_mAP_50'], 2)])
print(json.dumps(dict(head=head, backbone=bb, profile=prof, AP=r['AP'], AP50=r['AP50'], AP_S=r['AP_S'],
                      AP_M=r['AP_M'], AP_L=r['AP_L'], curve_epoch_AP_AP50=sorted(curve),
                      train_seconds=r['train_seconds'], val_seconds=r['val_seconds'],
                      total_s=round(time.perf_counter() - t, 1), images_per_second=r['images_per_second'])))
"""


def _env(threads):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return env


def _spawn(code, args, threads):
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=_env(threads))


def _collect(p, what):
    out, err = p.communicate()
    if p.returncode:
        return dict(what, error=err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def measure(head, bb, prof, iters, data):
    p = _spawn(CHILD, [head, bb, json.dumps(prof), str(iters), data], prof.get("threads", 2))
    return _collect(p, dict(head=head, backbone=bb, profile=prof))


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# the candidate default training profile (see the module docstring of maedet.detectors for the fields)
CANDIDATE = dict(img_scale=[160, 160], width_multiplier=0.125, neck_channels=32, batch_size=8, lr=0.02,
                 threads=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data")
    ap.add_argument("--heads", default="fcos,retinanet,gfl,yolof,mask_rcnn")
    ap.add_argument("--backbones", default="resnet50,maedet-m")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--runs", default="fcos:maedet-m,fcos:resnet50",
                    help="complete short trainings to time (head:backbone, comma-separated; '' for none)")
    ap.add_argument("--run-epochs", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--curves", default="",
                    help="epoch counts (comma-separated) of FCOS learning curves to run, MAE-DET-M and ResNet-50 "
                         "side by side (two 1-thread processes) at the candidate default profile")
    ap.add_argument("--only-curves", action="store_true", help="skip the speed grid; merge into --out")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "train_speed.json"))
    args = ap.parse_args()

    base = dict(img_scale=[192, 192], width_multiplier=0.125, neck_channels=32, batch_size=8, threads=2)
    # the full grid for FCOS (the detector of most tables); the two smallest profiles for the others
    grid = [dict(base, img_scale=[s, s], width_multiplier=w, neck_channels=n)
            for s, w, n in itertools.product((160, 192), (0.25, 0.125), (32, 64))]
    small = [dict(base, img_scale=[s, s]) for s in (160, 192)]
    heads = args.heads.split(",")
    bbs = args.backbones.split(",")
    if args.quick:
        heads, grid, small = ["fcos"], small, small
    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "single": [], "parallel": [], "runs": [], "curves": []}
    if args.only_curves and Path(args.out).exists():
        res = dict(json.loads(Path(args.out).read_text()), curves=[])

    def save():
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")

    if args.only_curves:
        heads, args.runs = [], ""
        res["parallel_runs_skipped"] = True

    for head in heads:
        for prof in (grid if head == "fcos" else small):
            for bb in bbs:
                la = load_average()
                r = measure(head, bb, prof, args.iters, args.data)
                r["load_avg_before"] = la
                print(json.dumps(r), flush=True)
                res["single"].append(r)
                save()

    # throughput: one 2-thread process vs two 1-thread processes at once
    for threads, n in (() if args.only_curves else ((2, 1), (1, 2))):
        prof = dict(base, threads=threads)
        t = time.perf_counter()
        ps = [_spawn(CHILD, ["fcos", "maedet-m", json.dumps(prof), str(2 * args.iters), args.data], threads)
              for _ in range(n)]
        outs = [_collect(p, {}) for p in ps]
        ok = [o for o in outs if "error" not in o]
        r = {"threads": threads, "processes": n, "s_per_iter_each": [o["s_per_iter"] for o in ok],
             "train_img_per_s_total": round(sum(o["train_img_per_s"] for o in ok), 1),
             "eval_img_per_s_total": round(sum(o["eval_img_per_s"] for o in ok), 1),
             "wall_s": round(time.perf_counter() - t, 1), "errors": [o["error"] for o in outs if "error" in o]}
        print(json.dumps(r), flush=True)
        res["parallel"].append(r)
        save()

    # complete short runs (what one table cell costs), at the base profile
    for spec in filter(None, args.runs.split(",")):
        head, bb = spec.split(":")
        prof = dict(base, epochs=args.run_epochs)
        p = _spawn(RUN, [head, bb, json.dumps(prof), args.data, f"/tmp/maedet_bench_run/{head}_{bb}"], 2)
        r = _collect(p, dict(head=head, backbone=bb, profile=prof))
        print(json.dumps(r), flush=True)
        res["runs"].append(r)
        save()
    # learning curves: what mAP a run reaches, MAE-DET-M and ResNet-50 trained side by side
    for epochs in [int(e) for e in filter(None, args.curves.split(","))]:
        prof = dict(CANDIDATE, epochs=epochs, val_interval=max(1, epochs // 6))
        t = time.perf_counter()
        ps = [_spawn(CURVE, ["fcos", bb, json.dumps(prof), args.data, f"/tmp/maedet_bench_curve/{bb}_{epochs}"], 1)
              for bb in ("maedet-m", "resnet50")]
        outs = [_collect(p, dict(profile=prof)) for p in ps]
        for o in outs:
            o["pair_wall_s"] = round(time.perf_counter() - t, 1)
            print(json.dumps(o), flush=True)
        res["curves"].extend(outs)
        save()
    res.pop("parallel_runs_skipped", None)
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()


if __name__ == "__main__":
    main()

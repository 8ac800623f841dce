"""The ``maedet`` command line (also ``python -m maedet``).

    maedet zoo [NAME]                      list the named structures, or print one (JSON / table)
    maedet flops STRUCTURE                 FLOPs (MACs), params and layers at a resolution
    maedet score STRUCTURE                 the multi-scale entropy under an estimator
    maedet search --init STRUCTURE ...     Algorithm 1 (or random search), resumable, into --out DIR
    maedet convert FILE [--to ...]         between the released code's structure files and ours
    maedet config STRUCTURE --head H       write a complete mmdetection config for a structure
    maedet data ...                        build the offline datasets of the reduced-scale profile
    maedet train HEAD BACKBONE... --seeds  train detection runs of a params.yaml profile into the run ledger
    maedet verify [--per head] [--limit N] retrain a sample of the ledger from scratch and compare (make verify)

STRUCTURE is a zoo name (``maedet zoo``), a structure JSON file (a search's best.json works too) or a
structure file of the authors' released code (see ``maedet.released``).
Errors print one line to stderr and exit with status 2; nothing is half-written.

Limits (far above any real backbone or the paper's settings; larger values are rejected): a structure has
at most 64 super-blocks, 1048576 (2^20) channels per width or bottleneck, kernel 15, 256 units per super-block and
4096 layers; scoring takes a side of at most 4096, batch 1024, 100 repeats, and the forward estimators at
most 32 x 512 x 512 input pixels per pass; a search needs at least one budget (FLOPs, params, layers or
latency) and takes population <= 100,000 and iterations <= 10,000,000.
"""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__


def _emit(args, payload: dict, text: str):
    print(json.dumps(payload, indent=1) if args.json else text)


def _structure(spec):
    from .released import load_any  # zoo name, our JSON, or a released-code structure file

    return load_any(spec)


def cmd_convert(args):
    from . import released
    from .structure import StructureError

    s = released.load_any(args.structure, args.index)
    to = args.to or ("ours" if released.is_released_file(args.structure) else "released")
    text = s.to_json() + "\n" if to == "ours" else released.dumps(s, to)
    for note in released.caveats(s):
        print(f"maedet convert: note: {note}", file=sys.stderr)
    if not args.out:
        sys.stdout.write(text)
        return 0
    from pathlib import Path

    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(out)
    except OSError as e:
        raise StructureError(f"cannot write {out}: {e}") from None
    return 0


def cmd_config(args):
    from .mmdet_config import config_text, write

    s = _structure(args.structure)
    if not args.out:
        sys.stdout.write(config_text(s, args.head, label=str(args.structure)))
        return 0
    print(f"{args.head} config for {s.name or args.structure} -> {write(s, args.head, args.out, str(args.structure))}")
    return 0


def cmd_zoo(args):
    from . import zoo

    if not args.name:
        rows = []
        for n in zoo.names():
            s = zoo.get(n)
            rows.append({"name": n, "layers": s.layers, "source": s.source})
        _emit(args, {"structures": rows}, "\n".join(f"{r['name']:22s} {r['layers']:4d} layers  {r['source']}" for r in rows))
        return 0
    s = _structure(args.name)
    _emit(args, s.to_dict(), f"{s.name}: {s.source}\n{s.table()}")
    return 0


def cmd_flops(args):
    from .flops import count, parse_resolution

    s = _structure(args.structure)
    res = parse_resolution(args.resolution)
    c = count(s, res, args.convention)
    payload = {"structure": s.name or args.structure, "resolution": {"height": res[0], "width": res[1]},
               "convention": c.convention, "macs": c.macs, "params": c.params, "layers": c.layers,
               "parts": {"conv": c.conv_macs, "bn": c.bn_flops, "relu": c.relu_flops, "pool": c.pool_flops},
               "stage_macs": c.stage_macs, "stage_params": c.stage_params, "stage_layers": s.stage_layers()}
    text = (f"{payload['structure']} at {res[1]}x{res[0]}: {c.macs / 1e9:.2f} GMACs ({c.convention}), "
            f"{c.params / 1e6:.2f} M params, {c.layers} layers")
    _emit(args, payload, text)
    return 0


def cmd_score(args):
    from .score import ScoreSettings, score

    s = _structure(args.structure)
    st = ScoreSettings(args.resolution, args.batch_size, args.repeats, args.dtype, args.seed)
    alpha = None if args.alpha in (None, "none") else args.alpha
    r = score(s, args.estimator, alpha, st)
    payload = dict(r.as_dict(), structure=s.name or args.structure)
    text = f"{payload['structure']}: {r.estimator} score {r.score:.4f}"
    if r.stage_scores:
        text += "\n" + "  ".join(f"C{i + 1}={v:.3f}" for i, v in enumerate(r.stage_scores))
    _emit(args, payload, text)
    return 0


def cmd_search(args):
    from .search import Budget, Search, make_config

    budget = Budget(flops=args.budget_flops, params=args.budget_params, layers=args.budget_layers,
                    latency_ms=args.budget_latency_ms, flops_resolution=args.flops_resolution,
                    flops_convention=args.flops_convention, flops_min=args.window_flops_min,
                    params_min=args.window_params_min)
    cfg = make_config(
        _structure(args.init), estimator=args.estimator, alpha=None if args.alpha in (None, "none") else args.alpha,
        resolution=args.resolution, batch_size=args.batch_size, repeats=args.repeats, dtype=args.dtype,
        score_seed=args.score_seed, budget=budget, population=args.population, iterations=args.iterations,
        mutation=args.mutation, space=args.space, seed=args.seed, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, record_candidates=args.record_candidates,
    )
    summary = Search(cfg, args.out, progress=not args.no_progress).run(resume=args.resume)
    text = (f"best score {summary['score']:.4f} ({summary['estimator']}), {summary['flops'] / 1e9:.3f} GMACs at "
            f"{summary['flops_resolution'][1]}x{summary['flops_resolution'][0]}, {summary['params'] / 1e6:.2f} M params, "
            f"{summary['layers']} layers -> {args.out}/best.json")
    _emit(args, summary, text)
    return 0


def cmd_train(args):
    """Train (head, backbone, seed) runs at a params.yaml training profile, the way the stages define them, so
    their records land in the ledger and the stages find them: a self-contained job that any machine can run."""
    import yaml

    from . import experiments as ex
    from . import ledger
    from .released import load_any

    params = yaml.safe_load(open(args.params))
    try:
        tp = params["training"][args.profile]
    except KeyError:
        raise ValueError(f"{args.params} has no training profile {args.profile!r} "
                         f"(known: {', '.join(params.get('training', {}))})") from None
    if len(args.seeds) > 1000 or any(s < 0 or s > 10**6 for s in args.seeds):
        raise ValueError("seeds must be 0..1000000, at most 1000 of them")
    det = {**tp["detector"], **ex.head_adaptation(params, args.profile, args.head)}
    adapt = ex.dataset_adaptation(params, args.profile, args.dataset)
    if adapt:  # what the stage that transfers to this dataset trains with (e.g. table5's tree-crown rows)
        det["datasets"] = {**(det.get("datasets") or {}), args.dataset: adapt}
    if args.set and not args.probe:
        raise ValueError("--set changes the profile, so the runs match no stage's: add --probe to record them "
                         "as calibration probes (ledger/probes)")
    if args.set:  # applied to the head's resolved profile; make_config rejects unknown fields and bad values
        from .detectors import dataset_profile, head_profile

        det = {**dataset_profile({**head_profile(det, args.head), "datasets": det.get("datasets")}, args.dataset),
               **_assignments(args.set)}
    if args.epochs is not None:
        if not 1 <= args.epochs <= 1000:
            raise ValueError(f"--epochs must be 1..1000, got {args.epochs}")
        det["epochs"] = args.epochs
    structures = {b: load_any(b) for b in args.backbones}  # fails early on a bad name
    runs = [ex.detect_run(b, structures[b], args.head, seed, det, dataset=args.dataset)
            for seed in args.seeds for b in args.backbones]  # seed-major: finished pairs accumulate first
    if args.set:  # a bad field or value fails here, before any training
        from .detectors import resolve_profile

        resolve_profile(runs[0].profile, args.head)
    led = ledger.PROBES if args.probe else ledger.ROOT
    data_root = args.data_root or tp["data_root"]
    todo = [r for r in runs if ex.recorded(r, ledger_root=led) is None]
    print(f"{len(runs)} runs, {len(runs) - len(todo)} already in {led}; training {len(todo)} "
          f"({args.parallel} at a time)", flush=True)
    if args.dry_run:
        for r in todo:
            print(f"  {r.label} {r.head} seed {r.seed} {r.id}")
        return 0
    ex.ensure_data(data_root, (args.dataset,), tp.get("build_data"))
    results = ex.run_all(runs, data_root, parallel=args.parallel, progress=True, ledger_root=led)
    for r, res in zip(runs, results):
        print(f"{r.label:>12} {r.head:>9} seed {r.seed}: AP {res['AP']:.2f}" if res else f"{r.label} missing")
    return 0


def cmd_verify(args):
    """Retrain a sample of the ledger (one run per head by default) and set it beside the recorded metrics."""
    from . import experiments as ex
    from . import ledger, verify

    recs = ledger.records([ledger.ROOT, ledger.PROBES])
    picked = verify.sample(recs, tuple(args.per), args.limit)
    if not picked:
        raise ValueError(f"the ledger ({ledger.ROOT}, {ledger.PROBES}) holds no detection run to verify")
    print(f"retraining {len(picked)} of {len(recs)} ledger runs from scratch ({args.parallel} at a time):")
    for r in picked:
        print(f"  {r['head']} {r['backbone']} seed {r['seed']} ({r['digest']}, recorded AP {r['metrics'].get('AP')}"
              f" on {r['machine']})")
    for r in picked:
        verify.run_of(r)  # fails before training when a record cannot be retrained as recorded
    if args.dry_run:
        return 0
    ex.ensure_data(args.data_root, ("digits",))
    reps = verify.retrain(picked, args.data_root, args.parallel)
    table = verify.compare(picked, reps)
    cols = ["head", "backbone", "seed", "AP ledger", "AP retrained", "AP diff", "same machine", "identical"]
    print(table[cols].to_string(index=False))
    print(f"replicas written to {verify.REPLICAS}/; render the comparison with `dvc repro calibration`")
    return 0


def cmd_data(args):
    from . import data

    return data.main(args.data_args) or 0


def _assignments(items) -> dict:
    """``FIELD=VALUE`` pairs, each value read as YAML (``0.02``, ``GN``, ``null``, ``[160, 160]``)."""
    import yaml

    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--set takes FIELD=VALUE, got {it!r}")
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {it!r}: the value is not YAML ({e})") from None
    return out


def _num(text: str) -> float:
    """Numbers with an optional SI suffix: 4.4G, 25.8M, 91."""
    t = str(text).strip()
    mult = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    try:
        if t and t[-1] in mult:
            return float(t[:-1]) * mult[t[-1]]
        return float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (e.g. 4.4G, 25.8M)") from None


def _score_options(p, resolution_default="384"):
    p.add_argument("--estimator", default="forward",
                   help="forward | paper-text | closed-form | expected | random, or a proxy: zen, naswot, "
                        "synflow, gradnorm, snip (default: forward)")
    p.add_argument("--alpha", default="0,0,1,1,6",
                   help="one weight per stage C1..C5, comma-separated (default 0,0,1,1,6; 'none' for scalar proxies)")
    p.add_argument("--resolution", default=resolution_default, help="input size N or WxH (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="forward estimators: batch (default 32)")
    p.add_argument("--repeats", type=int, default=4, help="forward estimators: weight/input draws (default 4)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maedet", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n")[-1].strip()
                                + "\n\nRun 'maedet COMMAND --help' for a command's options.")
    p.add_argument("--version", action="version", version=f"maedet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    z = sub.add_parser("zoo", help="list named structures or show one")
    z.add_argument("name", nargs="?", help="a zoo name or structure file to print")
    z.add_argument("--json", action="store_true", help="print JSON")
    z.set_defaults(fn=cmd_zoo)

    f = sub.add_parser("flops", help="FLOPs (MACs), params and layers of a structure")
    f.add_argument("structure", help="zoo name or structure JSON file")
    f.add_argument("--resolution", default="224", help="input size N or WxH, e.g. 1280x800 (default 224)")
    f.add_argument("--convention", default="paper",
                   help="paper | maedet-code | mmdet-syncbn | mmcv | conv (see docs; default paper)")
    f.add_argument("--json", action="store_true", help="print JSON")
    f.set_defaults(fn=cmd_flops)

    s = sub.add_parser("score", help="multi-scale entropy score of a structure")
    s.add_argument("structure", help="zoo name or structure JSON file")
    _score_options(s)
    s.add_argument("--seed", type=int, default=0, help="seed of weights and input (default 0)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_score)

    r = sub.add_parser("search", help="evolutionary search (Algorithm 1) or random search",
                       description="Evolutionary search maximising the score under a budget. Resumable: "
                                   "re-run with --resume after a kill; --resume on a finished search changes nothing.")
    r.add_argument("--init", default="init", help="initial structure (default: init, Table 15)")
    _score_options(r)
    r.set_defaults(estimator="expected")
    r.add_argument("--score-seed", type=int, default=0, help="seed of the forward estimators' draws")
    r.add_argument("--budget-flops", type=_num, help="max MACs at --flops-resolution, e.g. 4.4G")
    r.add_argument("--budget-params", type=_num, help="max params, e.g. 30M")
    r.add_argument("--budget-layers", type=int, help="max layers (depth budget L)")
    r.add_argument("--budget-latency-ms", type=float, help="max measured batch-1 latency on this machine")
    r.add_argument("--flops-resolution", default="224", help="where FLOPs are counted (default 224)")
    r.add_argument("--flops-convention", default="paper", help="FLOPs convention (default paper)")
    r.add_argument("--window-flops-min", type=_num, help="random search: lower FLOPs edge of the window")
    r.add_argument("--window-params-min", type=_num, help="random search: lower params edge of the window")
    r.add_argument("--population", type=int, default=256, help="population size N (default 256)")
    r.add_argument("--iterations", type=int, default=96000, help="iterations T (default 96000)")
    r.add_argument("--mutation", default="coarse-to-fine", choices=["coarse", "coarse-to-fine", "fine"])
    r.add_argument("--space", default="paper", help="mutation preset: paper | released | mbv2 (default paper)")
    r.add_argument("--seed", type=int, default=0, help="search seed (default 0)")
    r.add_argument("--log-every", type=int, default=1, help="trajectory line every N iterations (default 1)")
    r.add_argument("--checkpoint-every", type=int, default=2000, help="checkpoint every N iterations")
    r.add_argument("--record-candidates", action="store_true", help="log every accepted candidate (random search)")
    r.add_argument("--out", required=True, help="output directory (best.json, trajectory.jsonl, checkpoint.json)")
    r.add_argument("--resume", action="store_true", help="continue the search in --out from its checkpoint")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(fn=cmd_search)

    c = sub.add_parser("convert", help="convert between the released code's structure files and ours")
    c.add_argument("structure", help="zoo name, structure JSON, or released structure file (.txt/.json)")
    c.add_argument("--to", choices=["ours", "released", "released-v1"],
                   help="ours (JSON) | released (dict with best_structures) | released-v1 (first release's "
                        "list); default: the other format than the input's")
    c.add_argument("--index", type=int, default=0, help="which of a released file's best_structures (default 0)")
    c.add_argument("--out", help="output file (default: stdout)")
    c.set_defaults(fn=cmd_convert)

    g = sub.add_parser("config", help="write a complete mmdetection config for a structure")
    g.add_argument("structure", help="zoo name, structure JSON, or released structure file")
    g.add_argument("--head", required=True, choices=["retinanet", "fcos", "gfl", "yolof", "mask-rcnn"])
    g.add_argument("--out", help="config file to write (.py; default: stdout)")
    g.set_defaults(fn=cmd_config)

    t = sub.add_parser("train", help="train detection runs of a params.yaml profile into the run ledger")
    t.add_argument("head", choices=["fcos", "retinanet", "gfl", "yolof", "mask_rcnn", "scnet", "ssdlite"])
    t.add_argument("backbones", nargs="+", metavar="BACKBONE", help="zoo names or structure files")
    t.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)")
    t.add_argument("--profile", default="default", help="training profile of params.yaml (default: default)")
    t.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    t.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    t.add_argument("--dataset", default="digits", help="detection dataset under the data root (default digits)")
    t.add_argument("--data-root", default=None, help="data root (default: the profile's)")
    t.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2)")
    t.add_argument("--probe", action="store_true",
                   help="a calibration probe: record in ledger/probes (read by the calibration stage only)")
    t.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="change profile fields of the head (with --probe), e.g. lr=0.02 anchor_base_scale=2")
    t.add_argument("--dry-run", action="store_true", help="list the runs the ledger lacks and stop")
    t.set_defaults(fn=cmd_train)

    v = sub.add_parser("verify", help="retrain a sample of the run ledger from scratch and compare")
    v.add_argument("--per", nargs="+", default=["head"], choices=["head", "backbone", "seed", "dataset"],
                   help="one run per distinct value of these record fields (default: head)")
    v.add_argument("--limit", type=int, default=None, help="at most this many runs")
    v.add_argument("--data-root", default="data", help="data root (default data)")
    v.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2)")
    v.add_argument("--dry-run", action="store_true", help="list the sample and stop")
    v.set_defaults(fn=cmd_verify)

    d = sub.add_parser("data", help="build the offline datasets (see 'maedet data --help')", add_help=False)
    d.add_argument("data_args", nargs=argparse.REMAINDER)
    d.set_defaults(fn=cmd_data)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .score import ScoreError
    from .search import SearchError
    from .structure import StructureError

    try:
        return args.fn(args)
    except (StructureError, ScoreError, SearchError, ValueError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"maedet {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"maedet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The pretrained section: each of detectron2's detectors against the same with DW, fine-tuned
from ImageNet weights on the tree-crown photographs until the held-out AP stops rising.

Pairs (:data:`PAIRS`) are configs of ``configs/trees/`` that differ only in DW: the same
EfficientNet-Lite0-FPN and its converted ImageNet weights, images, flips, solver, schedule,
warm-up and seeds. Every run is ``train_net.py`` as a user runs it (a subprocess with
``--resume``, so an interrupted section continues where it stopped), evaluated by detectron2's
``EvalHook`` every ``--eval-period`` iterations; the AP curves are read from the
``metrics.json`` detectron2's writers record. Each detector is scored at its own default score
threshold. A run that stops on an error (a ``FloatingPointError`` of detectron2's or DW's
checks) is recorded as diverged with its last error line, and the section goes on.

The table gives, per pair, mean ± sample standard deviation over seeds of the final AP, AP50,
AP75, APs and APm of both detectors (for the RPN pair also the recall AR@100 and AR@1000 of the
proposals, detectron2's ``ProposalNetwork`` on the final weights), and DW - original per seed.
"AP last half" is the mean AP of the evaluations of a run's second half, less noisy than one
evaluation of the small held-out split. The plateau check compares the last evaluation with the
best one of the run's first half: a curve still rising by more than :data:`PLATEAU_AP` AP is
marked "rising". Time to accuracy: per seed, the first evaluated iteration at which the DW
detector's AP reaches its original's final AP. Last, the training step time and peak memory
of each pair's two detectors, interleaved round by round on a real training batch
(:func:`~.speed.measure_speed`).
"""

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from dual_weighting.checkpoint import DWCheckpointer
from dual_weighting.data import register_trees
from dual_weighting.engine import DWTrainer, SetupError, load_yacs_config

from .detectors import REPO
from .plots import curve_chart
from .report import format_table, mean_std
from .speed import measure_speed, ratios

CONFIGS = REPO / "configs" / "trees"
# name: (detectron2's detector, the same with DW), configs of configs/trees/.
PAIRS = {
    "fcos": ("fcos_Lite0_FPN", "dw_fcos_Lite0_FPN"),
    "fcos_dw_loss": ("fcos_Lite0_FPN", "fcos_dw_loss_Lite0_FPN"),
    "retinanet": ("retinanet_Lite0_FPN", "dw_retinanet_Lite0_FPN"),
    "rpn": ("faster_rcnn_Lite0_FPN", "dw_rpn_faster_rcnn_Lite0_FPN"),
}
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "AP last half")
RECALLS = ("AR@100", "AR@1000")
# AP gained over the last half of a run below which its curve counts as flat.
PLATEAU_AP = 0.5


def run_options(seed, args, output_dir):
    """``train_net.py`` KEY VALUE overrides of one run: seed, folder, schedule (lr x0.1 at 80%
    of ``args.pretrained_iters``), warm-up (the config's unless ``args.warmup_iters``), the
    evaluation period, then the user's ``args.opts``."""
    iters = args.pretrained_iters
    opts = [
        "SEED", seed, "OUTPUT_DIR", output_dir, "SOLVER.MAX_ITER", iters,
        "SOLVER.STEPS", (round(0.8 * iters),), "SOLVER.CHECKPOINT_PERIOD", args.eval_period,
        "TEST.EVAL_PERIOD", args.eval_period, "MODEL.DEVICE", args.device,
    ]  # fmt: skip
    if args.warmup_iters is not None:
        opts += ["SOLVER.WARMUP_ITERS", args.warmup_iters]
    return [str(o) for o in [*opts, *args.opts]]


def read_curve(output_dir, max_iter):
    """``[[iteration, {metric: value}], ...]`` of the box evaluations in ``metrics.json`` (the
    periodic ones are recorded at the 0-based index of their iteration, the final one at
    ``max_iter``)."""
    path = Path(output_dir) / "metrics.json"
    curve = {}
    for line in path.read_text().splitlines() if path.is_file() else ():
        record = json.loads(line)
        if "bbox/AP" in record:
            curve[min(record["iteration"] + 1, max_iter)] = {
                k[5:]: float(v) for k, v in record.items() if k.startswith("bbox/")
            }
    return [[it, m] for it, m in sorted(curve.items())]


def plateau(curve):
    """ "flat" or "rising": whether the last AP is within :data:`PLATEAU_AP` of the best AP of
    the run's first half (the curve stopped rising), or above it by more."""
    aps = [m["AP"] for _, m in curve]
    first_half = aps[: max(1, len(aps) // 2)]
    return "rising" if aps[-1] - max(first_half) > PLATEAU_AP else "flat"


def last_half_ap(curve):
    """Mean AP of the evaluations of the run's second half (its last evaluation included)."""
    aps = [m["AP"] for _, m in curve]
    return sum(aps[len(aps) // 2 :]) / len(aps[len(aps) // 2 :])


def config_of(config, opts=()):
    return load_yacs_config(str(CONFIGS / f"{config}.yaml"), list(opts))


def check_opts(configs, opts):
    """Stop (``SystemExit`` with the loader's message, which names the key) before any run when
    the overrides ``opts`` do not apply to every one of ``configs``."""
    for config in configs:
        try:
            config_of(config, opts)
        except SetupError as e:
            raise SystemExit(f"--opts: {e}") from None


def proposal_recall(config, run_dir, device, opts=()):
    """AR@100 and AR@1000 (%) on the held-out split of the proposals of the final weights in
    ``run_dir``: the config's backbone and RPN (with ``opts``) as detectron2's
    ``ProposalNetwork``, evaluated by ``COCOEvaluator``."""
    register_trees()  # train_net.py registers them in its own process
    weights = str(Path(run_dir) / "model_final.pth")
    opts = ["MODEL.META_ARCHITECTURE", "ProposalNetwork", "MODEL.DEVICE", device, *opts]
    cfg = config_of(config, opts)
    model = build_model(cfg)
    DWCheckpointer(model).load(weights)
    dataset = cfg.DATASETS.TEST[0]
    loader = DWTrainer.build_test_loader(cfg, dataset)
    results = inference_on_dataset(model, loader, COCOEvaluator(dataset, output_dir=None))
    return {k: results["box_proposals"][k] for k in RECALLS}


def train(config, seed, args):
    """Train (or finish, or reuse) one run; its record: config, seed, curve, final metrics,
    plateau (the RPN pair: proposal recall), or ``diverged`` with the error's last line."""
    run_dir = Path(args.output_dir) / "pretrained" / f"{config}_seed{seed}"
    command = [
        sys.executable, str(REPO / "train_net.py"), "--config-file",
        str(CONFIGS / f"{config}.yaml"), "--resume", *run_options(seed, args, run_dir),
    ]  # fmt: skip
    record = {"config": config, "seed": seed, "command": " ".join(command[1:])}
    saved = run_dir / "record.json"
    if args.resume and saved.is_file():
        previous = json.loads(saved.read_text())
        if previous["command"] == record["command"]:
            record = {**previous, "reused": True}
    if "curve" not in record:
        run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
        with open(run_dir / "stdout.txt", "w") as log:
            finished = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        curve = read_curve(run_dir, args.pretrained_iters)
        record["curve"] = curve
        if finished.returncode != 0 or not curve or curve[-1][0] != args.pretrained_iters:
            lines = (run_dir / "stdout.txt").read_text().strip().splitlines()
            record["diverged"] = lines[-1] if lines else f"exit code {finished.returncode}"
        else:
            record.update(metrics=curve[-1][1], plateau=plateau(curve))
    if "metrics" in record:
        record["metrics"]["AP last half"] = last_half_ap(record["curve"])
        if config in PAIRS["rpn"] and "AR@100" not in record["metrics"]:
            record["metrics"].update(proposal_recall(config, run_dir, args.device, args.opts))
    saved.write_text(json.dumps({k: v for k, v in record.items() if k != "reused"}))
    return record


def runs_by_key(records):
    """{(config, seed): record}."""
    return {(r["config"], r["seed"]): r for r in records}


def metric_values(by_key, config, metric, seeds):
    """``metric`` of ``config``'s runs (``by_key``: :func:`runs_by_key`), one per seed (NaN
    where missing or diverged)."""
    rs = [by_key.get((config, s)) for s in seeds]
    return [r["metrics"].get(metric, float("nan")) if r and "metrics" in r else float("nan")
            for r in rs]  # fmt: skip


def format_pairs(records, pairs):
    """The table: per pair and metric, both detectors' mean ± std and DW - original per seed."""
    by_key = runs_by_key(records)
    seeds = sorted({r["seed"] for r in records})
    rows = []
    for name in pairs:
        original, with_dw = PAIRS[name]
        for metric in METRICS + (RECALLS if name == "rpn" else ()):
            a, b = (metric_values(by_key, c, metric, seeds) for c in (original, with_dw))
            stats = [mean_std(a), mean_std(b)]
            diffs = ", ".join(f"{y - x:+.1f}" for x, y in zip(a, b))
            rows.append(
                [f"{name} {metric}", *(f"{m:.1f} ± {s:.1f}" for m, s, _, _ in stats), diffs]
            )
    diverged = [
        f"{r['config']} seed {r['seed']}: {r['diverged']}" for r in records if "diverged" in r
    ]
    rising = [f"{r['config']} seed {r['seed']}" for r in records if r.get("plateau") == "rising"]
    notes = [f"diverged: {d}" for d in diverged] + [f"still rising: {r}" for r in rising]
    header = ["pair, metric", "original", "with DW", "DW - original by seed " + str(seeds)]
    return "\n".join([format_table(header, rows), *notes])


def iterations_to_reach(curve, ap):
    """The first evaluated iteration of ``curve`` whose AP is at least ``ap``; None if none."""
    return next((it for it, m in curve if m["AP"] >= ap), None)


def format_time_to_accuracy(records, pairs):
    """Per pair and seed: the iteration at which DW reaches its original's final AP."""
    by_key = runs_by_key(records)
    lines = []
    for name in pairs:
        original, with_dw = PAIRS[name]
        for seed in sorted({r["seed"] for r in records}):
            a, b = by_key.get((original, seed)), by_key.get((with_dw, seed))
            if not (a and b and "metrics" in a and "metrics" in b):
                continue
            target = a["metrics"]["AP"]
            it = iterations_to_reach(b["curve"], target)
            reached = f"iteration {it} of {a['curve'][-1][0]}" if it else "not reached"
            lines.append(f"  {name} seed {seed}: original's final AP {target:.1f}: {reached}")
    return "\n".join(lines)


def training_batch(cfg):
    """The first training batch of ``cfg``'s data loader (its mapper, flips and sizes)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = 0
    return next(iter(DWTrainer.build_train_loader(cfg)))


def pair_speed(args, pairs, opts=()):
    """Training step time and peak memory of each pair's two detectors (their configs with
    ``opts``), from their ImageNet weights at the lr of a run's first iteration (a randomly
    initialised detector at full lr diverges within the timed steps), interleaved round by
    round on one real training batch; {pair: (step ratio, inference ratio, memory ratio)}."""
    register_trees()
    speeds = {}
    for name in pairs:
        models = {}
        for config in PAIRS[name]:
            cfg = config_of(config, ["MODEL.DEVICE", args.device, *opts])
            cfg.defrost()
            cfg.SOLVER.BASE_LR *= cfg.SOLVER.WARMUP_FACTOR
            seed_all_rng(0)
            model = build_model(cfg)
            DWCheckpointer(model).load(cfg.MODEL.WEIGHTS)
            models[config] = (cfg, model)
        batch = training_batch(models[PAIRS[name][0]][0])
        runs = measure_speed(models, batch, args.device, args.warmup, args.repeats)
        speeds[name] = ratios(runs[PAIRS[name][1]], runs[PAIRS[name][0]])
        del models
    return speeds


def report_runs(records, pairs, output_dir):
    """Print the table and time to accuracy of ``records``; draw each pair's AP curves."""
    print(format_pairs(records, pairs))
    print("Time to accuracy (the first evaluation at which DW reaches its original's final AP):")
    print(format_time_to_accuracy(records, pairs))
    for name in pairs:
        curves = {
            (r["config"], f"seed {r['seed']}"): tuple(zip(*[(i, m["AP"]) for i, m in r["curve"]]))
            for r in records
            if r["config"] in PAIRS[name] and r["curve"]
        }
        path = Path(output_dir) / f"pretrained_{name}_ap_curves.png"
        curve_chart(curves, path, f"{name}: held-out AP while fine-tuning on the tree crowns")
        print(f"  plot: {path}", flush=True)


def run_pretrained(args, out):
    """Train every pair of ``args.pretrained_pairs`` for every seed of ``args.seeds`` (no seeds:
    only the step times), print the table, draw the AP curves, set ``out["pretrained"]``."""
    records = []
    configs = list(dict.fromkeys(c for name in args.pretrained_pairs for c in PAIRS[name]))
    check_opts(configs, args.opts)
    for seed in args.seeds:
        for config in configs:
            print(f"  {config} seed {seed} ...", end="", flush=True)
            record = train(config, seed, args)
            records.append(record)
            if "diverged" in record:
                print(f" diverged: {record['diverged']}", flush=True)
            else:
                m = record["metrics"]
                reused = " (reused)" if record.get("reused") else ""
                print(f" AP {m['AP']:.1f} AP50 {m['AP50']:.1f}, {record['plateau']}{reused}")
    out["pretrained"] = records
    if records:
        report_runs(records, args.pretrained_pairs, args.output_dir)
    if args.pair_speed:
        speeds = pair_speed(args, args.pretrained_pairs, args.opts)
        out["pretrained_speed"] = speeds
        rows = [
            [name, *("-" if x is None else f"{x:.3f}x" for x in r)] for name, r in speeds.items()
        ]
        print(
            f"DW / original, median of {args.repeats} interleaved rounds after {args.warmup} "
            f"warm-up, one training batch of the tree crowns, {args.device}:\n"
            + format_table(["pair", "train step", "inference", "train memory"], rows)
        )


def warmup_cell(record):
    """What a warm-up run ended with: the error that stopped it, its AP, or "no detections"
    (COCO AP is NaN when a detector keeps no box above its score threshold)."""
    if "diverged" in record:
        return record["diverged"]
    ap = record["metrics"]["AP"]
    return "no detections" if math.isnan(ap) else f"AP {ap:.1f}"


def run_warmup(args, out):
    """Which lr warm-ups (``args.warmups``, iterations from factor 0.001) each detector of
    ``args.pretrained_pairs`` survives: per warm-up W and seed, a run of W +
    ``args.after_warmup`` iterations (lr x0.1 at 80% of them all, as :func:`run_options` sets;
    with W above 4 x ``after_warmup`` that comes before the warm-up ends), evaluated at its end, in
    ``OUTPUT_DIR/warmup<W>/``; prints the final AP of each run or the error that stopped it."""
    configs = list(dict.fromkeys(c for name in args.pretrained_pairs for c in PAIRS[name]))
    check_opts(configs, args.opts)
    table = {}
    for warmup in args.warmups:
        iters = warmup + args.after_warmup
        run_args = argparse.Namespace(
            **{**vars(args), "warmup_iters": warmup, "pretrained_iters": iters,
               "eval_period": iters, "output_dir": str(Path(args.output_dir) / f"warmup{warmup}")}
        )  # fmt: skip
        for seed in args.seeds:
            for config in configs:
                print(f"  warm-up {warmup}, {config} seed {seed} ...", flush=True)
                record = train(config, seed, run_args)
                cell = warmup_cell(record)
                table.setdefault(config, {})[(warmup, seed)] = cell
    out["warmup"] = {
        c: {f"{w} seed {s}": v for (w, s), v in row.items()} for c, row in table.items()
    }
    columns = [(w, s) for w in args.warmups for s in args.seeds]
    header = ["detector", *(f"warm-up {w}, seed {s}" for w, s in columns)]
    rows = [[c, *(table[c][k] for k in columns)] for c in configs]
    print(format_table(header, rows))

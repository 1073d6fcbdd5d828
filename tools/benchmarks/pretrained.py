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
AP75, APs and APm of both detectors, and DW - original per seed. The plateau check compares the
last evaluation with the best one of the run's last half: a curve still rising by more than
:data:`PLATEAU_AP` AP over its last half is marked "rising".
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from .detectors import REPO
from .plots import curve_chart
from .report import format_table, mean_std

CONFIGS = REPO / "configs" / "trees"
# name: (detectron2's detector, the same with DW), configs of configs/trees/.
PAIRS = {
    "fcos": ("fcos_Lite0_FPN", "dw_fcos_Lite0_FPN"),
    "fcos_dw_loss": ("fcos_Lite0_FPN", "fcos_dw_loss_Lite0_FPN"),
    "retinanet": ("retinanet_Lite0_FPN", "dw_retinanet_Lite0_FPN"),
    "rpn": ("faster_rcnn_Lite0_FPN", "dw_rpn_faster_rcnn_Lite0_FPN"),
}
METRICS = ("AP", "AP50", "AP75", "APs", "APm")
# AP gained over the last half of a run below which its curve counts as flat.
PLATEAU_AP = 0.5


def run_options(seed, args, output_dir):
    """``train_net.py`` KEY VALUE overrides of one run: seed, folder, schedule (lr x0.1 at 80%
    of ``args.pretrained_iters``), warm-up (the config's unless ``args.warmup_iters``), the
    evaluation period."""
    iters = args.pretrained_iters
    opts = [
        "SEED", seed, "OUTPUT_DIR", output_dir, "SOLVER.MAX_ITER", iters,
        "SOLVER.STEPS", (round(0.8 * iters),), "SOLVER.CHECKPOINT_PERIOD", args.eval_period,
        "TEST.EVAL_PERIOD", args.eval_period, "MODEL.DEVICE", args.device,
    ]  # fmt: skip
    if args.warmup_iters is not None:
        opts += ["SOLVER.WARMUP_ITERS", args.warmup_iters]
    return [str(o) for o in opts]


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


def train(config, seed, args):
    """Train (or finish, or reuse) one run; its record: config, seed, curve, final metrics,
    plateau, or ``diverged`` with the error's last line."""
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
            return {**previous, "reused": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    with open(run_dir / "stdout.txt", "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    curve = read_curve(run_dir, args.pretrained_iters)
    record["curve"] = curve
    if finished.returncode != 0 or not curve or curve[-1][0] != args.pretrained_iters:
        lines = (run_dir / "stdout.txt").read_text().strip().splitlines()
        record["diverged"] = lines[-1] if lines else f"exit code {finished.returncode}"
    else:
        record.update(metrics=curve[-1][1], plateau=plateau(curve))
    saved.write_text(json.dumps(record))
    return record


def format_pairs(records, pairs):
    """The table: per pair and metric, both detectors' mean ± std and DW - original per seed."""
    by_key = {(r["config"], r["seed"]): r for r in records}
    seeds = sorted({r["seed"] for r in records})
    rows = []
    for name in pairs:
        original, with_dw = PAIRS[name]
        for metric in METRICS:

            def values(config, metric=metric):
                rs = [by_key.get((config, s)) for s in seeds]
                return [r["metrics"][metric] if r and "metrics" in r else float("nan") for r in rs]

            a, b = values(original), values(with_dw)
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


def run_pretrained(args, out):
    """Train every pair of ``args.pretrained_pairs`` for every seed of ``args.seeds``, print the
    table, draw the AP curves, set ``out["pretrained"]``."""
    records = []
    configs = [c for name in args.pretrained_pairs for c in PAIRS[name]]
    for seed in args.seeds:
        for config in dict.fromkeys(configs):
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
    print(format_pairs(records, args.pretrained_pairs))
    for name in args.pretrained_pairs:
        curves = {
            (r["config"], f"seed {r['seed']}"): tuple(zip(*[(i, m["AP"]) for i, m in r["curve"]]))
            for r in records
            if r["config"] in PAIRS[name] and r["curve"]
        }
        path = Path(args.output_dir) / f"pretrained_{name}_ap_curves.png"
        curve_chart(curves, path, f"{name}: held-out AP while fine-tuning on the tree crowns")
        print(f"  plot: {path}", flush=True)

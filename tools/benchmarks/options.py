"""The command line of ``tools/benchmark.py``: its options and their checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from dual_weighting.evaluation import COCOEVAL_BACKENDS
from dual_weighting.export.quantize import PRECISIONS as QUANT_PRECISIONS

from .detectors import PAIRS, REPO, VARIANTS
from .export_speed import export_settings
from .precision import PRECISIONS as SPEED_PRECISIONS
from .precision import check_precision
from .speed import speed_settings

# The sections, in the order "all" runs them; those of ALONE run only when named.
SECTIONS = (
    "accuracy",
    "speed",
    "losses",
    "detectors",
    "evaluation",
    "batched",
    "export",
    "quantization",
    "soak",
)
ALONE = ("detectors", "evaluation", "batched", "export", "quantization", "soak")


def _csv(kind):
    def parse(text):
        return [kind(x) for x in text.split(",") if x]

    return parse


def argument_parser(doc):
    """The options of ``tools/benchmark.py``; ``doc`` (its docstring) gives the description
    (first paragraph) and the epilog (the rest)."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "section",
        nargs="?",
        default="all",
        choices=("all", *SECTIONS),
        help="what to run (default: all = accuracy, speed, losses; detectors, evaluation, "
        "batched, export, quantization and soak run alone)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--output-dir", default=str(REPO / "output" / "benchmark"))
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse accuracy and detectors runs already finished in OUTPUT_DIR with the same "
        "config (marked 'reused'), e.g. after an interrupted run",
    )
    a = p.add_argument_group("accuracy")
    a.add_argument(
        "--dataset",
        choices=("synthetic", "trees"),
        default="synthetic",
        help="synthetic: the generated shapes (default); trees: real aerial photographs of tree "
        "crowns (DeepForest's, downloaded and converted on first use)",
    )
    a.add_argument("--seeds", type=_csv(int), default=[0, 1, 2], help="default 0,1,2")
    a.add_argument(
        "--variants",
        type=_csv(str),
        default=["fcos", "dw"],
        help="of fcos,fcos_dw (detectron2's FCOS with DW's losses),dw,dw_refine",
    )
    a.add_argument("--iters", type=int, default=120, help="training iterations (demo: 220)")
    a.add_argument(
        "--warmup-iters",
        type=int,
        help="lr warm-up iterations (default: min(50, iters / 4); also the detectors section)",
    )
    a.add_argument("--batch", type=int, default=8, help="images per batch (also 'small' speed)")
    a.add_argument("--min-size", type=int, default=192, help="shorter image side (demo: 256)")
    a.add_argument("--max-size", type=int, default=240, help="longer side cap (demo: 320)")
    a.add_argument(
        "--eval-period", type=int, default=40, help="iterations between AP evaluations (0: end)"
    )
    d = p.add_argument_group("detectors (also uses the accuracy and speed options)")
    d.add_argument(
        "--pairs",
        type=_csv(str),
        default=list(PAIRS),
        help=f"of {','.join(PAIRS)}: detectron2's detector and the same with DW (default: all)",
    )
    s = p.add_argument_group("speed")
    s.add_argument(
        "--speed-settings", type=_csv(str), default=["small", "r50"], help="of small,r50"
    )
    s.add_argument(
        "--speed-variants",
        type=_csv(str),
        default=["fcos", "dw", "dw_refine"],
        help="of fcos,dw,dw_refine (ratios are to fcos)",
    )
    s.add_argument(
        "--speed-precisions",
        type=_csv(str),
        default=["fp32"],
        help=f"of {','.join(SPEED_PRECISIONS)}: fp16/bf16 under autocast as detectron2's "
        "AMPTrainer (SOLVER.AMP.ENABLED) trains, ratios also to fp32 (default: fp32)",
    )
    s.add_argument(
        "--channels-last", action="store_true", help="speed models in channels_last memory format"
    )
    s.add_argument("--boxes", type=int, default=10, help="random boxes per image")
    s.add_argument("--warmup", type=int, default=1, help="untimed rounds first (also batched)")
    s.add_argument("--repeats", type=int, default=3, help="timed rounds, median (also batched)")
    los = p.add_argument_group("losses")
    los.add_argument(
        "--loss-args",
        default="--boxes 10,50 --repeats 3",
        help="arguments of tools/benchmark_losses.py, given as --loss-args='...' "
        "(default: %(default)s)",
    )
    e = p.add_argument_group("evaluation")
    e.add_argument("--coco-images", type=int, default=5000, help="generated images")
    e.add_argument("--coco-dets", type=int, default=100, help="detections per image")
    e.add_argument(
        "--coco-backends",
        type=_csv(str),
        default=["pycocotools", "faster_coco_eval"],
        help=f"of {','.join(COCOEVAL_BACKENDS)}, the first is the reference (default: "
        "pycocotools,faster_coco_eval)",
    )
    b = p.add_argument_group("batched")
    b.add_argument(
        "--batch-sizes",
        type=_csv(int),
        default=[1, 4, 8],
        help="the first is the reference (default: 1,4,8)",
    )
    b.add_argument(
        "--batched-images", type=int, default=24, help="images of a timed round (default 24)"
    )
    b.add_argument(
        "--weights",
        type=Path,
        default=REPO / "output" / "demo" / "model_final.pth",
        help="the demo model's checkpoint (default: make demo's)",
    )
    x = p.add_argument_group("export")
    x.add_argument(
        "--export-settings",
        type=_csv(str),
        default=["r50", "demo"],
        help="of r50,r50_refine,demo (default: r50,demo)",
    )
    q = p.add_argument_group("quantization (also uses --weights, --warmup, --repeats)")
    q.add_argument(
        "--quant-precisions",
        type=_csv(str),
        default=list(QUANT_PRECISIONS),
        help=f"of {','.join(QUANT_PRECISIONS)}, fp32 first (the reference)",
    )
    q.add_argument(
        "--calibration-images", type=int, default=32, help="training images for static int8"
    )
    q.add_argument("--quant-images", type=int, default=10, help="images of a timed round")
    k = p.add_argument_group("soak")
    k.add_argument("--soak-iters", type=int, default=2000, help="iterations of each of two runs")
    k.add_argument("--soak-batch", type=int, default=2, help="images per batch")
    k.add_argument("--soak-min-size", type=int, default=128, help="shorter image side")
    k.add_argument("--soak-max-size", type=int, default=160, help="longer side cap")
    k.add_argument("--soak-seed", type=int, default=0)
    k.add_argument("--soak-rss-period", type=int, default=100, help="iterations between samples")
    return p


def check_args(args):
    """Stop (``SystemExit`` naming the option and value) on a name no section knows."""
    for name in (*args.variants, *args.speed_variants):
        if name not in VARIANTS:
            raise SystemExit(f"Unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    if args.quant_precisions[:1] != ["fp32"] or not set(args.quant_precisions) <= set(
        QUANT_PRECISIONS
    ):
        raise SystemExit(f"--quant-precisions: fp32 first, then of {sorted(QUANT_PRECISIONS)}")
    for name in args.pairs:
        if name not in PAIRS:
            raise SystemExit(f"Unknown pair {name!r}; choose from {sorted(PAIRS)}")
    for name in args.speed_settings:
        if name not in speed_settings(args):
            raise SystemExit(
                f"Unknown speed setting {name!r}; choose from {sorted(speed_settings(args))}"
            )
    for name in args.speed_precisions:
        try:
            check_precision(name, args.device)
        except ValueError as e:
            raise SystemExit(str(e)) from e
    for name in args.export_settings:
        if name not in export_settings():
            raise SystemExit(
                f"Unknown export setting {name!r}; choose from {sorted(export_settings())}"
            )
    for name in args.coco_backends:
        if name not in COCOEVAL_BACKENDS:
            raise SystemExit(f"Unknown COCOeval backend {name!r}; choose from {COCOEVAL_BACKENDS}")

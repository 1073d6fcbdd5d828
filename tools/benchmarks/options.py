"""The command line of ``tools/benchmark.py``: its options and their checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from dual_weighting.export.quantize import PRECISIONS as QUANT_PRECISIONS

from .detectors import REPO, VARIANTS
from .pretrained import PAIRS as PRETRAINED_PAIRS
from .speed import speed_settings

# The sections; one runs per call.
SECTIONS = ("speed", "pretrained", "warmup", "quantization")


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
    p.add_argument("section", choices=SECTIONS, help="what to measure")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--output-dir", default=str(REPO / "output" / "benchmark"))
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the runs finished in OUTPUT_DIR with the same command (marked 'reused'); an "
        "interrupted run continues from its last checkpoint (pretrained: every --eval-period; "
        "warmup: only the final one, unless --opts SOLVER.CHECKPOINT_PERIOD N)",
    )
    t = p.add_argument_group("pretrained (also uses --warmup, --repeats for its step times)")
    t.add_argument(
        "--pretrained-pairs",
        type=_csv(str),
        default=list(PRETRAINED_PAIRS),
        help=f"of {','.join(PRETRAINED_PAIRS)}: configs/trees/ pairs (default: all)",
    )
    t.add_argument(
        "--seeds", type=_csv(int), default=[0, 1, 2], help="default 0,1,2; '': step times only"
    )
    t.add_argument(
        "--pretrained-iters", type=int, default=300, help="iterations of each run (default 300)"
    )
    t.add_argument("--warmup-iters", type=int, help="lr warm-up iterations (default: the configs')")
    t.add_argument("--eval-period", type=int, default=50, help="iterations between AP evaluations")
    t.add_argument(
        "--opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="yacs overrides for both detectors of every pair and run, last on the command line "
        "(e.g. SOLVER.CLIP_GRADIENTS.ENABLED True); warmup uses them too",
    )
    t.add_argument(
        "--pair-speed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the runs, time each pair's training step and memory (default: yes)",
    )
    w = p.add_argument_group("warmup (also uses --pretrained-pairs, --seeds)")
    w.add_argument(
        "--warmups", type=_csv(int), default=[0, 50, 200, 1000], help="default 0,50,200,1000"
    )
    w.add_argument(
        "--after-warmup",
        type=int,
        default=100,
        help="iterations after the warm-up; the lr steps x0.1 at 80%% of the run, as in pretrained",
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
    s.add_argument("--batch", type=int, default=8, help="images per batch of 'small'")
    s.add_argument("--min-size", type=int, default=192, help="image height of 'small'")
    s.add_argument("--max-size", type=int, default=240, help="image width of 'small'")
    s.add_argument("--boxes", type=int, default=10, help="random boxes per image")
    s.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    s.add_argument("--repeats", type=int, default=3, help="timed rounds, median")
    q = p.add_argument_group("quantization (also uses --warmup, --repeats)")
    q.add_argument(
        "--weights",
        type=Path,
        default=REPO / "output" / "shapes_demo" / "model_final.pth",
        help="the demo model's checkpoint (default: make demo-shapes')",
    )
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
    return p


def check_args(args):
    """Stop (``SystemExit`` naming the option and value) on a name no section knows, or on
    options that leave the section nothing to run."""
    if not args.seeds and (args.section == "warmup" or not args.pair_speed):
        raise SystemExit(
            f"--seeds '': {args.section} has nothing to run (pretrained: only with --pair-speed)"
        )
    if args.opts and args.section not in ("pretrained", "warmup"):
        raise SystemExit(
            f"--opts: only the pretrained and warmup sections take overrides, not {args.section}"
        )
    if len(args.opts) % 2:
        raise SystemExit(f"--opts takes KEY VALUE pairs; got {len(args.opts)} words: {args.opts}")
    for name in args.speed_variants:
        if name not in VARIANTS:
            raise SystemExit(f"Unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    if args.quant_precisions[:1] != ["fp32"] or not set(args.quant_precisions) <= set(
        QUANT_PRECISIONS
    ):
        raise SystemExit(f"--quant-precisions: fp32 first, then of {sorted(QUANT_PRECISIONS)}")
    for name in args.pretrained_pairs:
        if name not in PRETRAINED_PAIRS:
            raise SystemExit(
                f"Unknown pretrained pair {name!r}; choose from {sorted(PRETRAINED_PAIRS)}"
            )
    for name in args.speed_settings:
        if name not in speed_settings(args):
            raise SystemExit(
                f"Unknown speed setting {name!r}; choose from {sorted(speed_settings(args))}"
            )

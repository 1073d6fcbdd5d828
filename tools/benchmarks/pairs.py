"""The detectors section: DW inside detectron2's own detectors, each trained beside its original
at equal budget.

Pairs (:data:`.detectors.PAIRS`):

- ``fcos``: detectron2's ``FCOS`` against the same class trained with DW's losses
  (``DWLossFCOS``), both on the accuracy section's model (:func:`.accuracy.accuracy_cfg`).
- ``retinanet``: detectron2's ``RetinaNet`` against ``DWRetinaNet`` (quality "none"), from
  ``configs/COCO-Detection/dw_retinanet_R_50_FPN_1x.yaml``.
- ``rpn``: Faster R-CNN (``GeneralizedRCNN``) with detectron2's ``RPN`` against the same with
  ``DWRPN``, from ``configs/COCO-Detection/dw_rpn_faster_rcnn_R_50_FPN_1x.yaml``.

The RetinaNet and Faster R-CNN pairs are made as small as the FCOS pair: ResNet-18 from scratch
with trainable BN, 128 FPN channels, RetinaNet's towers of 2 convs, Faster R-CNN's box head
with 256-wide FCs and 128 sampled RoIs an image, the DW configs' RGB input and
pixel statistics and their solver (lr 0.01, momentum 0.9, no weight decay on norms, linear
warm-up from 0.001); the training and test sizes, batch, schedule, data and seeds of the
accuracy section. The two detectors of a pair and seed start from the same random state (the
same backbone weights) and see the same images in the same order. Each is evaluated once after
training at a low score threshold (:data:`.detectors.LOW_SCORE` on each one's score: FCOS's
``sqrt(cls * ctr)``, RetinaNet's and the ROI heads' class probability), and the Faster R-CNN
pair also by the average recall of its RPN's proposals (AR@100, AR@1000, detectron2's
``COCOEvaluator`` box-proposal evaluation).

Training-step time and peak memory ratios come from one extra measurement per pair, after its
trainings: the two fresh models' training steps interleaved round by round on one batch of the
generated-box kind the speed section uses (:func:`.speed.measure_speed`), so that the same
load from other processes hits both.
"""

import json
import statistics
import sys
from pathlib import Path

import torch
from detectron2.data import build_detection_test_loader
from detectron2.engine import HookBase
from detectron2.evaluation import COCOEvaluator
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.utils.env import seed_all_rng

from dual_weighting.engine import load_yacs_config
from sample_data.shapes import ensure_synthetic

from .accuracy import (
    BenchmarkTrainer,
    ScoreFilteredCOCOEvaluator,
    accuracy_cfg,
    run_opts,
    run_training,
)
from .accuracy import diverged_result as diverged_accuracy_result
from .detectors import LOW_SCORE, NAMES, PAIRS, REPO, build_detector, score_of_product
from .plots import bar_chart
from .report import format_table, mean_std
from .speed import measure_speed, paired_ratio, peak_mib, synthetic_batch

CONFIGS = REPO / "configs" / "COCO-Detection"
PAIR_CONFIGS = {
    "retinanet": CONFIGS / "dw_retinanet_R_50_FPN_1x.yaml",
    "rpn": CONFIGS / "dw_rpn_faster_rcnn_R_50_FPN_1x.yaml",
}
NUM_CLASSES = 6  # the generated shapes
# The small model and the DW configs' input and solver, for the RetinaNet and Faster R-CNN pairs.
SMALL_OPTS = [
    "MODEL.WEIGHTS", "",
    "MODEL.BACKBONE.FREEZE_AT", 0,
    "MODEL.RESNETS.DEPTH", 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.RESNETS.STRIDE_IN_1X1", False,
    "MODEL.FPN.OUT_CHANNELS", 128,
    "MODEL.PIXEL_MEAN", [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD", [58.395, 57.12, 57.375],
    "INPUT.FORMAT", "RGB",
    "DATASETS.TRAIN", ("dw_synthetic_train",),
    "DATASETS.TEST", ("dw_synthetic_val",),
    "DATALOADER.NUM_WORKERS", 1,
    "SOLVER.BASE_LR", 0.01,
    "SOLVER.WEIGHT_DECAY_NORM", 0.0,
    "SOLVER.WARMUP_FACTOR", 0.001,
]  # fmt: skip
PAIR_OPTS = {
    "retinanet": [
        "MODEL.RETINANET.NUM_CLASSES", NUM_CLASSES,
        "MODEL.RETINANET.NUM_CONVS", 2,
        "MODEL.RETINANET.SCORE_THRESH_TEST", LOW_SCORE,
    ],
    "rpn": [
        "MODEL.ROI_HEADS.NUM_CLASSES", NUM_CLASSES,
        # A box head sized like the small model: detectron2's 512 sampled RoIs an image and
        # 1024-wide FCs made a CPU training step 4x FCOS's (RoIAlign's backward, the first FC).
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 128,
        "MODEL.ROI_BOX_HEAD.FC_DIM", 256,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", LOW_SCORE,
    ],
}  # fmt: skip
# What makes each original out of the DW config of its pair.
ORIGINAL_OPTS = {
    "retinanet": ["MODEL.META_ARCHITECTURE", "RetinaNet"],
    "faster_rcnn": ["MODEL.PROPOSAL_GENERATOR.NAME", "RPN"],
}
RECALL_LIMITS = (100, 1000)


def pair_of(member):
    """The pair (a key of :data:`PAIRS`) that ``member`` belongs to."""
    return next(p for p, members in PAIRS.items() if member in members)


def pair_cfg(member, seed, args, output_dir):
    """Config of one run of ``member`` (a detector of :data:`PAIRS`), ``args`` as
    :func:`.accuracy.run_opts` takes them."""
    pair = pair_of(member)
    if pair == "fcos":
        return accuracy_cfg(member, seed, args, output_dir)
    opts = [*SMALL_OPTS, *PAIR_OPTS[pair], *ORIGINAL_OPTS.get(member, [])]
    opts = [str(o) for o in opts] + run_opts(seed, args, output_dir)
    cfg = load_yacs_config(str(PAIR_CONFIGS[pair]), [*opts, "MODEL.DEVICE", args.device])
    cfg.defrost()
    return cfg


def score_threshold(cfg):
    """:data:`LOW_SCORE` on the score of ``cfg``'s detector (FCOS scores sqrt(cls * ctr))."""
    fcos = cfg.MODEL.META_ARCHITECTURE in ("FCOS", "DWLossFCOS")
    return score_of_product("fcos" if fcos else "dw", LOW_SCORE)


class PairTrainer(BenchmarkTrainer):
    """The accuracy section's trainer with one evaluation: COCO box AP at the low threshold."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return ScoreFilteredCOCOEvaluator(dataset_name, "low", score_threshold(cfg))


@torch.no_grad()
def rpn_recall(cfg, model):
    """AR@100 and AR@1000 (percent) of ``model``'s RPN proposals on ``cfg.DATASETS.TEST[0]``, in
    the original image frame: detectron2's ``COCOEvaluator`` box-proposal evaluation (non-crowd
    boxes, every area)."""
    dataset = cfg.DATASETS.TEST[0]
    evaluator = COCOEvaluator(dataset, tasks=("bbox",), distributed=False)
    evaluator.reset()
    was_training = model.training
    model.eval()
    for inputs in build_detection_test_loader(cfg, dataset):
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        found, _ = model.proposal_generator(images, features, None)
        # From the resized frame back to the original, as detectron2's ProposalNetwork does.
        outputs = [
            {"proposals": detector_postprocess(p, x["height"], x["width"])}
            for x, p in zip(inputs, found)
        ]
        evaluator.process(inputs, outputs)
    model.train(was_training)
    results = evaluator.evaluate()["box_proposals"]
    return {f"AR@{k}": results[f"AR@{k}"] for k in RECALL_LIMITS}


class RecallAfterTraining(HookBase):
    """Records :func:`rpn_recall` of the trained model in ``self.recall``."""

    def after_train(self):
        self.recall = rpn_recall(self.trainer.cfg, self.trainer.model)


def diverged_result(reason):
    """The accuracy section's record of a diverged run, with NaN proposal recall."""
    nan = float("nan")
    return {**diverged_accuracy_result(reason), "recall": {f"AR@{k}": nan for k in RECALL_LIMITS}}


def run_member(member, seed, args, run_dir):
    """Train and evaluate one detector for one seed; reuse the saved result with ``args.resume``
    when the config is the same. Returns the run (accuracy's run dict plus ``member``, ``seed``
    and, for Faster R-CNN, ``recall``)."""
    cfg = pair_cfg(member, seed, args, run_dir)
    saved = run_dir / "result.json"
    if args.resume and saved.is_file():
        record = json.loads(saved.read_text())
        if record["config"] == cfg.dump():
            return {**record["result"], "reused": True}
    recall = RecallAfterTraining() if pair_of(member) == "rpn" else None
    try:
        result = run_training(cfg, [recall] if recall else [], trainer_class=PairTrainer)
    except FloatingPointError as e:
        # A run that diverges (detectron2's check on the losses, or DW's on its predictions)
        # is a result of the comparison, not the end of the section.
        result = diverged_result(str(e).splitlines()[0])
    result.update(member=member, seed=seed)
    if recall and "diverged" not in result:
        result["recall"] = recall.recall
    saved.write_text(json.dumps({"config": cfg.dump(), "result": result}))
    return result


def measure_pair(pair, args):
    """The pair's training step seconds and peak MiB, interleaved (:func:`.speed.measure_speed`).

    Returns:
        {member: {"train_s": [...], "train_mib": [...], ...}} as measure_speed's.
    """
    models = {}
    for member in PAIRS[pair]:
        cfg = pair_cfg(member, 0, args, Path(args.output_dir) / "detectors" / "speed")
        seed_all_rng(0)
        models[member] = (cfg, build_detector(cfg))
    batch = synthetic_batch(
        args.batch, args.min_size, args.max_size, NUM_CLASSES, args.boxes, seed=0
    )
    return measure_speed(models, batch, args.device, args.warmup, args.repeats)


def metric_rows(runs, pair):
    """Table rows of a pair: per member AP, AP50, AP75, (AR@100, AR@1000) as mean ± std over
    seeds, then the per-seed paired difference of AP (and AR) DW - original."""
    original, dw = PAIRS[pair]
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    recall_keys = [f"AR@{k}" for k in RECALL_LIMITS] if pair == "rpn" else []

    def value(run, key):
        return run["recall"][key] if key in recall_keys else run["metrics"]["low"][key]

    by_member = {
        m: sorted((r for r in runs if r["member"] == m), key=lambda r: r["seed"])
        for m in PAIRS[pair]
    }
    rows = []
    for member, mine in by_member.items():
        cells = []
        for key in keys + recall_keys:
            mean, std, _, _ = mean_std([value(r, key) for r in mine])
            cells.append(f"{mean:.1f} ± {std:.1f}")
        diverged = sum("diverged" in r for r in mine)
        rows.append([NAMES[member], *cells, f"{diverged}/{len(mine)}"])
    seeds = {r["seed"] for r in by_member[original]} & {r["seed"] for r in by_member[dw]}
    diff_cells = []
    for key in keys + recall_keys:
        pairs = {m: {r["seed"]: value(r, key) for r in by_member[m]} for m in (original, dw)}
        diffs = [pairs[dw][s] - pairs[original][s] for s in sorted(seeds)]
        mean, std, lo, hi = mean_std(diffs)
        diff_cells.append(f"{mean:+.1f} ({lo:+.1f}..{hi:+.1f})")
    rows.append(["  DW - original", *diff_cells, ""])
    return keys + recall_keys + ["diverged"], rows


def format_pairs(runs, speed, pairs, seeds):
    """The tables: per pair, the metrics and paired differences; then the time and memory
    ratios of every pair."""
    parts = []
    for pair in pairs:
        keys, rows = metric_rows(runs, pair)
        parts.append(
            f"{NAMES[PAIRS[pair][0]]} vs {NAMES[PAIRS[pair][1]]}: COCO box % at score > "
            f"{LOW_SCORE:g} (FCOS sqrt > {score_of_product('fcos', LOW_SCORE):g}), mean ± sample "
            f"std over seeds {seeds}; last row: paired difference, mean (range)\n"
            + format_table(["detector", *keys], rows)
        )
    rows = []
    for pair in pairs:
        original, dw = PAIRS[pair]
        steps = {m: speed[pair][m]["train_s"] for m in PAIRS[pair]}
        times = {
            m: [r["s_per_iter"] for r in runs if r["member"] == m and "diverged" not in r]
            for m in PAIRS[pair]
        }
        finished = times[dw] and times[original]
        base_mib, dw_mib = peak_mib(speed[pair][original]), peak_mib(speed[pair][dw])
        rows.append(
            [
                NAMES[dw],
                f"{statistics.median(steps[original]):.3f}",
                f"{statistics.median(steps[dw]):.3f}",
                f"{paired_ratio(steps[dw], steps[original]):.2f}x",
                "n/a" if base_mib is None else f"{base_mib:.0f}",
                "n/a" if dw_mib is None else f"{dw_mib:.0f}",
                "n/a" if not (base_mib and dw_mib) else f"{dw_mib / base_mib:.2f}x",
                f"{statistics.median(times[dw]) / statistics.median(times[original]):.2f}x"
                if finished
                else "n/a",
            ]
        )
    parts.append(
        "Training step, the two models of a pair interleaved on one batch (median of "
        "same-round ratios), peak memory growth of a step, and the ratio of the trainings' "
        "median s/it:\n"
        + format_table(
            [
                "with DW", "original s/it", "DW s/it", "ratio", "original MiB", "DW MiB",
                "ratio", "training s/it ratio",
            ],
            rows,
        )
    )  # fmt: skip
    return "\n\n".join(parts)


def plot_pairs(runs, pairs, path):
    """Bars of mean AP (and AR) of each original and its DW version."""
    groups = {}
    for pair in pairs:
        original, dw = PAIRS[pair]
        keys = ["AP"] + ([f"AR@{k}" for k in RECALL_LIMITS] if pair == "rpn" else [])
        for key in keys:
            bars = {}
            for label, member in (("detectron2's original", original), ("with DW", dw)):
                values = [
                    r["recall"][key] if key.startswith("AR") else r["metrics"]["low"][key]
                    for r in runs
                    if r["member"] == member
                ]
                bars[label] = mean_std(values)[0]
            groups[f"{NAMES[original]} {key}"] = bars
    return bar_chart(
        groups,
        path,
        "DW inside detectron2's detectors: mean over seeds, same runs as the tables "
        "(box AP at a low threshold; AR of the RPN's proposals)",
        "%",
        value_format="{:.1f}",
    )


def run_pairs(args, out):
    """Train every detector of ``args.pairs`` for every seed, measure each pair's step time and
    memory, print the tables, write ``detectors.png``, set ``out["detectors"]``."""
    ensure_synthetic()
    members = [(s, m) for s in args.seeds for p in args.pairs for m in PAIRS[p]]
    runs = []
    for i, (seed, member) in enumerate(members):
        print(f"  [{i + 1}/{len(members)}] {NAMES[member]} seed {seed} ...", end="", flush=True)
        run = run_member(
            member, seed, args, Path(args.output_dir) / "detectors" / f"{member}_seed{seed}"
        )
        runs.append(run)
        recall = "".join(f" {k} {v:.1f}" for k, v in run.get("recall", {}).items())
        low = run["metrics"]["low"]
        reused = " (reused)" if run.get("reused") else ""
        if "diverged" in run:
            print(f" diverged: {run['diverged']}{reused}", flush=True)
            continue
        print(
            f" AP {low['AP']:.1f} AP50 {low['AP50']:.1f}{recall} | train {run['train_s']:.0f} s"
            f" ({run['s_per_iter']:.2f} s/it){reused}",
            flush=True,
        )
    speed = {}
    for pair in args.pairs:
        print(f"  step time and memory: {pair} ...", flush=True)
        speed[pair] = measure_pair(pair, args)
    out["detectors"] = {"runs": runs, "speed": speed}
    print()
    print(format_pairs(runs, speed, args.pairs, args.seeds))
    path = Path(args.output_dir) / "detectors.png"
    plot_pairs(runs, args.pairs, path)
    print(f"  plot: {path}", flush=True)
    sys.stdout.flush()

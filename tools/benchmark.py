#!/usr/bin/env python
"""Benchmark DW-FCOS against detectron2's own FCOS, side by side, in one run.

    python tools/benchmark.py                     # all sections at the default small setting
    python tools/benchmark.py accuracy --seeds 0,1,2,3,4
    python tools/benchmark.py speed --speed-settings r50 --device cuda
    python tools/benchmark.py losses --loss-args="--boxes 1,10,50,200"

**The two detectors.** Both sit on the same backbone, this project's registered
``build_dw_resnet_fpn_backbone`` (ResNet-FPN, P3-P7, P6 from P5), built from the same config and,
for one seed, from the same random state, so they start with identical backbone and FPN weights.
detectron2's ``FCOS`` comes from its own model-zoo config ``COCO-Detection/fcos_R_50_FPN_1x.py``
with only the backbone swapped in and the head's depth, width, norm and class count matched to
DW's (``MODEL.DW.NUM_CONVS`` convs of ``FPN.OUT_CHANNELS`` channels, ``MODEL.DW.NORM``); the rest
is detectron2's (focal loss, center sampling 1.5, scale ranges, GIoU, centerness target, prior
0.01, no per-level scales, anchor offset 0). DW-FCOS keeps the release's defaults (DW_SPEC.md).
Both use the same pixel mean/std, solver, input sizes, batch, iterations and seeds.

**accuracy**: trains each detector (``--variants``, default FCOS and DW) for every seed of
``--seeds`` on the generated shapes dataset (``dual_weighting.data.ensure_synthetic``: 400 train
and 100 val images of 256x320, 6 classes) with the demo's model and solver
(``dw_R_18_FPN_synthetic_demo``: ResNet-18-FPN, 128 channels, 2-conv towers, from scratch,
trainable BN, batch 8, its SGD settings) but a shorter default run: images resized to 192x240
and ``--iters`` iterations, with warm-up and lr steps scaled to them (:func:`scaled_schedule`).
Training goes through ``train_net.Trainer`` (detectron2's ``DefaultTrainer``) and evaluation
through ``COCOEvaluator`` + ``inference_on_dataset``. The two detectors of one seed see the same
images in the same order with the same flips. Detections are scored once at a low threshold and
evaluated twice:

- ``own``: each detector's own default threshold. detectron2's FCOS keeps ``sqrt(cls * ctr) >
  0.2`` (its score is the square root), i.e. ``cls * ctr > 0.04``; DW keeps ``cls * ctr > 0.05``
  (the release). The square root does not change the ranking, so the two are nearly equal.
- ``low``: both keep ``cls * ctr > 0.0025`` (FCOS: ``sqrt > 0.05``, as COCO detectors usually
  are evaluated), so that neither short-trained detector loses recall to its threshold.

Filtering after NMS gives exactly what running the model at the higher threshold gives: the
per-level top-k, the greedy NMS and the final top-100 keep every higher-scoring box the same.
Mean, sample standard deviation and range over seeds are printed, the detections kept per
image (at most 100) and the per-seed paired difference DW - FCOS (same seed = same initial
backbone and data order).

**speed**: per setting (``--speed-settings``), one model per variant (default FCOS, DW, DW with
box refine), random weights, synthetic images and 10 COCO-like random boxes per image (from
``tools/benchmark_losses.py``): seconds per training step (forward, backward, SGD step),
latency per image at inference and the peak memory of a training step. Steps of the models are
interleaved round by round, so load from other processes hits them alike; the ratio to FCOS is
the median over rounds of the two models' times in the same round. Inference runs with score
threshold 0 (every level sends its top 1000 candidates to NMS: the most post-processing either
model can do). Peak memory, probed around every timed training step and reported as the largest:
on CPU, the growth of the process's peak resident set size during the step (``VmHWM`` reset
through ``/proc/self/clear_refs``, after ``malloc_trim``, as ``tools/benchmark_losses.py``
measures); on CUDA, ``torch.cuda.max_memory_allocated`` above the step's start.
Settings: ``r50`` = R-50-FPN (Base-DW), 800x1216, batch 2, 80 classes; ``small`` =
the accuracy model at its input size and batch.

**losses**: runs ``tools/benchmark_losses.py`` (``dw_losses`` against the release's per-box loop).

**soak** (not part of "all"; about 20 minutes on 2 cores): trains DW-FCOS twice with one seed,
``--soak-iters`` (2000) iterations each, with the demo's model and solver at batch
``--soak-batch`` (2, lr scaled linearly) on 128x160 images of the generated dataset. Prints
whether every loss was finite, the resident set size of the process and its data-loader workers
(sampled every ``--soak-rss-period`` iterations) and its growth after the first quarter of the
run, AP, and the largest difference between the two runs' loss curves (0 = identical).

Every result is also written to ``OUTPUT_DIR/results.json``; training logs, ``metrics.json`` and
``result.json`` of each accuracy run go to ``OUTPUT_DIR/accuracy/<variant>_seed<k>/``, and
``--resume`` reuses the finished ones whose config is unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime
import functools
import gc
import importlib.util
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import detectron2
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg, instantiate
from detectron2.engine import hooks
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.modeling import build_backbone, build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from dual_weighting import add_dw_config
from dual_weighting.data import default_synthetic_root, ensure_synthetic

with warnings.catch_warnings():  # detectron2.model_zoo imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    from detectron2 import model_zoo

REPO = Path(__file__).resolve().parents[1]
SMALL_CONFIG = REPO / "configs" / "dw_R_18_FPN_synthetic_demo.yaml"
R50_CONFIG = REPO / "configs" / "dw_R_50_FPN_1x.yaml"


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The root-level train_net.py (its Trainer) and the loss benchmark (its inputs and memory probe).
train_net = _load_module("train_net", REPO / "train_net.py")
benchmark_losses = _load_module("benchmark_losses", REPO / "tools" / "benchmark_losses.py")

VARIANTS = {"fcos": "FCOS (d2)", "dw": "DW", "dw_refine": "DW+refine"}
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Threshold of the "low" view, on cls * ctr for both detectors (FCOS thresholds its square root).
LOW_SCORE = 0.0025


# ---------------------------------------------------------------------------------------------
# The two detectors
# ---------------------------------------------------------------------------------------------


@functools.cache
def _fcos_zoo_model():
    return model_zoo.get_config("COCO-Detection/fcos_R_50_FPN_1x.py").model


def fcos_default_score_thresh() -> float:
    """detectron2's FCOS score threshold, on its score sqrt(cls * ctr) (0.2)."""
    return float(_fcos_zoo_model().test_score_thresh)


def dw_default_score_thresh() -> float:
    """DW's score threshold, on cls * ctr (0.05, the release's)."""
    cfg = get_cfg()
    add_dw_config(cfg)
    return float(cfg.MODEL.DW.TEST_SCORE_THRESH)


def make_cfg(config_file, variant, opts=(), device="cpu"):
    """A DW config (``add_dw_config`` + ``config_file`` + ``opts``) for one variant.

    ``variant`` "fcos" sets ``MODEL.META_ARCHITECTURE`` to "FCOS", which only
    :func:`build_detector` understands (detectron2's FCOS is not registered); "dw_refine" turns
    on ``MODEL.DW.BOX_REFINE``. ``MODEL.FCOS.TEST_SCORE_THRESH`` (added here) is FCOS's
    threshold on sqrt(cls * ctr), detectron2's default unless overridden.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.MODEL.FCOS = CN()
    cfg.MODEL.FCOS.TEST_SCORE_THRESH = fcos_default_score_thresh()
    cfg.merge_from_file(str(config_file))
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""  # random init (the R-50 configs name ImageNet weights)
    if variant == "fcos":
        cfg.MODEL.META_ARCHITECTURE = "FCOS"
    cfg.MODEL.DW.BOX_REFINE = variant == "dw_refine"
    return cfg


def build_fcos(cfg):
    """detectron2's FCOS from its model-zoo config, on the DW backbone of ``cfg``.

    The backbone is built first, as ``DWFCOS`` does, so one random state gives both detectors
    the same backbone weights.
    """
    backbone = build_backbone(cfg)
    in_features = list(cfg.MODEL.DW.IN_FEATURES)
    shapes = backbone.output_shape()
    model = copy.deepcopy(_fcos_zoo_model())
    model.backbone = backbone
    model.head_in_features = in_features
    model.num_classes = cfg.MODEL.DW.NUM_CLASSES
    model.head.input_shape = [shapes[f] for f in in_features]
    model.head.conv_dims = [cfg.MODEL.FPN.OUT_CHANNELS] * cfg.MODEL.DW.NUM_CONVS
    model.head.norm = cfg.MODEL.DW.NORM
    model.pixel_mean = list(cfg.MODEL.PIXEL_MEAN)
    model.pixel_std = list(cfg.MODEL.PIXEL_STD)
    model.test_score_thresh = cfg.MODEL.FCOS.TEST_SCORE_THRESH
    return instantiate(model).to(torch.device(cfg.MODEL.DEVICE))


def build_detector(cfg):
    """FCOS (``MODEL.META_ARCHITECTURE`` "FCOS") or a registered meta-architecture (DWFCOS)."""
    if cfg.MODEL.META_ARCHITECTURE == "FCOS":
        return build_fcos(cfg)
    return build_model(cfg)


def score_of_product(variant, product):
    """The detector's own score for a threshold ``product`` on cls * ctr (FCOS: its sqrt)."""
    return math.sqrt(product) if variant == "fcos" else product


# ---------------------------------------------------------------------------------------------
# Accuracy: training and COCO evaluation with detectron2's trainer
# ---------------------------------------------------------------------------------------------


class ScoreFilteredCOCOEvaluator(COCOEvaluator):
    """COCO box AP of the detections scoring above ``min_score``, reported as ``{view: ...}``."""

    def __init__(self, dataset_name, view, min_score, **kwargs):
        super().__init__(dataset_name, tasks=("bbox",), **kwargs)
        self._view, self._min_score = view, min_score

    def process(self, inputs, outputs):
        outputs = [
            {**o, "instances": o["instances"][o["instances"].scores > self._min_score]}
            for o in outputs
        ]
        super().process(inputs, outputs)

    def evaluate(self, img_ids=None):
        # Detections kept per image (this process's images: the benchmark runs one process).
        kept = [len(p.get("instances", [])) for p in self._predictions]
        results = super().evaluate(img_ids)
        if not results:
            return results
        per_image = statistics.fmean(kept) if kept else math.nan
        return {self._view: {**results["bbox"], "dets/img": per_image}}


class BenchmarkTrainer(train_net.Trainer):
    """``train_net.Trainer`` that builds either detector, gives every detector of one seed the
    same data order and flips, skips checkpoints, and evaluates both score views."""

    @classmethod
    def build_model(cls, cfg):
        model = build_detector(cfg)
        logging.getLogger("detectron2").info(f"Model:\n{model}")
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        # Reseed after the model is built: the sampler's shuffling seed and the loader workers'
        # seeds (augmentation) then do not depend on how many random numbers the head drew.
        seed_all_rng(cfg.SEED)
        return super().build_train_loader(cfg)

    def build_hooks(self):
        # No checkpoints; evaluation runs once, after training (run_training).
        drop = (hooks.PeriodicCheckpointer, hooks.EvalHook)
        return [h for h in super().build_hooks() if not isinstance(h, drop)]

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        variant = "fcos" if cfg.MODEL.META_ARCHITECTURE == "FCOS" else "dw"
        own = fcos_default_score_thresh() if variant == "fcos" else dw_default_score_thresh()
        low = score_of_product(variant, LOW_SCORE)
        return DatasetEvaluators(
            [
                ScoreFilteredCOCOEvaluator(dataset_name, "own", own),
                ScoreFilteredCOCOEvaluator(dataset_name, "low", low),
            ]
        )


def scaled_schedule(iters):
    """KEY VALUE options of a run of ``iters`` iterations: warm-up over min(50, iters / 4)
    iterations and lr steps at 170/220 and 205/220 of the run (the demo's schedule when these
    benchmarks were first run; kept fixed so that their numbers stay reproducible)."""
    steps = tuple(sorted({round(iters * f) for f in (170 / 220, 205 / 220)} - {0, iters}))
    return [
        "SOLVER.MAX_ITER", iters,
        "SOLVER.WARMUP_ITERS", min(50, iters // 4),
        "SOLVER.STEPS", steps,
    ]  # fmt: skip


def accuracy_cfg(variant, seed, args, output_dir, extra_opts=()):
    """Config of one accuracy run: the demo config at the benchmark's size and schedule, then
    ``extra_opts`` (KEY VALUE strings)."""
    iters = args.iters
    opts = [
        "SEED", seed,
        "OUTPUT_DIR", str(output_dir),
        "SOLVER.IMS_PER_BATCH", args.batch,
        *scaled_schedule(iters),
        "INPUT.MIN_SIZE_TRAIN", (args.min_size,),
        "INPUT.MAX_SIZE_TRAIN", args.max_size,
        "INPUT.MIN_SIZE_TEST", args.min_size,
        "INPUT.MAX_SIZE_TEST", args.max_size,
        "TEST.EVAL_PERIOD", 0,
        # Scores are kept down to the "low" view's threshold; the "own" view filters further.
        "MODEL.DW.TEST_SCORE_THRESH", score_of_product("dw", LOW_SCORE),
        "MODEL.FCOS.TEST_SCORE_THRESH", score_of_product("fcos", LOW_SCORE),
    ]  # fmt: skip
    if args.device != "cpu":
        opts += ["DATALOADER.NUM_WORKERS", 4]
    opts = [str(o) for o in opts] + list(extra_opts)
    return make_cfg(SMALL_CONFIG, variant, opts, args.device)


@contextlib.contextmanager
def logs_to(path):
    """Send detectron2's logs and anything printed (pycocotools) to the file ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s"))
    names = ("detectron2", "fvcore", "d2", "dual_weighting")
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(handler)
    try:
        with open(path, "a") as f, contextlib.redirect_stdout(f):
            yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        handler.close()


def run_training(cfg, extra_hooks=()):
    """Train ``cfg`` from scratch with :class:`BenchmarkTrainer` (plus ``extra_hooks``), then
    COCO-evaluate it.

    Returns:
        dict: ``metrics`` ({view: {metric: value}}), ``train_s``, ``s_per_iter`` (median of the
        trainer's iteration times), ``eval_s``, ``losses`` (the total loss of every iteration).
    """
    cfg = cfg.clone()
    cfg.freeze()
    Path(cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    with logs_to(Path(cfg.OUTPUT_DIR) / "log.txt"):
        seed_all_rng(cfg.SEED)  # model init
        trainer = BenchmarkTrainer(cfg)
        trainer.register_hooks(list(extra_hooks))
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        # IterationTimer records iterations after its first 3 only.
        timer = trainer.storage.histories().get("time")
        iter_times = [t for t, _ in timer.values()] if timer else []
        losses = [v for v, _ in trainer.storage.history("total_loss").values()]
        start = time.perf_counter()
        metrics = BenchmarkTrainer.test(cfg, trainer.model)
        eval_s = time.perf_counter() - start
    return {
        "metrics": {view: {k: float(v) for k, v in m.items()} for view, m in metrics.items()},
        "train_s": train_s,
        "s_per_iter": statistics.median(iter_times) if iter_times else math.nan,
        "eval_s": eval_s,
        "losses": losses,
    }


def run_accuracy(args, out):
    ensure_synthetic(default_synthetic_root())
    runs = []
    total = len(args.seeds) * len(args.variants)
    for seed in args.seeds:
        for variant in args.variants:
            run_dir = Path(args.output_dir) / "accuracy" / f"{variant}_seed{seed}"
            print(f"  [{len(runs) + 1}/{total}] {VARIANTS[variant]} seed {seed} ...", end="")
            sys.stdout.flush()
            cfg = accuracy_cfg(variant, seed, args, run_dir)
            saved, reused = run_dir / "result.json", ""
            if args.resume and saved.is_file():
                record = json.loads(saved.read_text())
                if record["config"] == cfg.dump():  # the same run, finished before
                    result, reused = record["result"], " (reused)"
            if not reused:
                result = run_training(cfg)
                result.update(variant=variant, seed=seed)
                saved.write_text(json.dumps({"config": cfg.dump(), "result": result}))
            runs.append(result)
            own = result["metrics"]["own"]
            print(
                f" AP {own['AP']:.1f} AP50 {own['AP50']:.1f} | train {result['train_s']:.0f} s"
                f" ({result['s_per_iter']:.2f} s/it), eval {result['eval_s']:.0f} s{reused}",
                flush=True,
            )
    out["accuracy"] = runs
    print()
    print(format_accuracy(runs, args.variants))


# ---------------------------------------------------------------------------------------------
# Soak: a long run twice with one seed (no NaN, no memory growth, the same loss curve)
# ---------------------------------------------------------------------------------------------


def process_tree_rss_mib(pid=None):
    """Resident set size in MiB of process ``pid`` (default: this one) and its children, e.g.
    the data loader's workers."""
    pid = pid or os.getpid()
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    pending += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue  # the process ended between listing and reading
    return total / 1024


class RSSSampler(hooks.HookBase):
    """Records (iteration, RSS in MiB of the process tree) every ``period`` iterations and
    after the last one."""

    def __init__(self, period):
        self.period = period
        self.samples = []

    def after_step(self):
        done = self.trainer.iter + 1
        if done % self.period == 0 or done == self.trainer.max_iter:
            self.samples.append((done, process_tree_rss_mib()))


def soak_cfg(args, output_dir, extra_opts=()):
    """The demo model and solver at the soak's batch and image size, ``args.soak_iters`` long,
    then ``extra_opts`` (KEY VALUE strings).

    The learning rate follows the batch linearly from the demo's (batch 8); warm-up and lr steps
    are :func:`scaled_schedule`'s.
    """
    demo = make_cfg(SMALL_CONFIG, "dw")
    opts = [
        "SEED", args.soak_seed,
        "OUTPUT_DIR", str(output_dir),
        "SOLVER.IMS_PER_BATCH", args.soak_batch,
        "SOLVER.BASE_LR", demo.SOLVER.BASE_LR * args.soak_batch / demo.SOLVER.IMS_PER_BATCH,
        *scaled_schedule(args.soak_iters),
        "INPUT.MIN_SIZE_TRAIN", (args.soak_min_size,),
        "INPUT.MAX_SIZE_TRAIN", args.soak_max_size,
        "INPUT.MIN_SIZE_TEST", args.soak_min_size,
        "INPUT.MAX_SIZE_TEST", args.soak_max_size,
        "TEST.EVAL_PERIOD", 0,
    ]  # fmt: skip
    return make_cfg(SMALL_CONFIG, "dw", [str(o) for o in opts] + list(extra_opts), args.device)


def rss_growth(samples, skip_fraction=0.25):
    """RSS growth in MiB from the first sample at or after ``skip_fraction`` of the run (the
    allocator and the data loader settle in first) to the last sample."""
    last_iter = samples[-1][0]
    settled = next(rss for it, rss in samples if it >= skip_fraction * last_iter)
    return samples[-1][1] - settled


def curve_difference(a, b):
    """Largest absolute difference of two loss curves; inf if their lengths differ."""
    if len(a) != len(b):
        return math.inf
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def format_soak(runs):
    rows = []
    for k, r in enumerate(runs):
        samples = r["rss_mib"]
        rows.append(
            [
                f"run {k + 1}",
                str(len(r["losses"])),
                "yes" if all(map(math.isfinite, r["losses"])) else "NO",
                f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}",
                f"{samples[0][1]:.0f}",
                f"{max(rss for _, rss in samples):.0f}",
                f"{rss_growth(samples):+.0f}",
                f"{r['metrics']['low']['AP']:.1f}",
                f"{r['train_s'] / 60:.1f}",
            ]
        )
    header = [
        "soak", "iters", "finite", "loss first -> last", "RSS first MiB", "RSS max MiB",
        "RSS growth MiB", "AP", "train min",
    ]  # fmt: skip
    diff = curve_difference(runs[0]["losses"], runs[1]["losses"])
    return (
        format_table(header, rows)
        + "\nRSS growth: from the sample at a quarter of the run to the last (process + "
        "data-loader workers).\n"
        + f"Same seed, loss curves: largest difference {diff:.3g} "
        + ("(identical)" if diff == 0 else "(NOT identical)")
    )


def run_soak(args, out):
    ensure_synthetic(default_synthetic_root())
    runs = []
    for k in range(2):
        cfg = soak_cfg(args, Path(args.output_dir) / "soak" / f"run{k + 1}")
        print(
            f"  run {k + 1}/2: DW, {args.soak_iters} iterations, batch {args.soak_batch}, "
            f"{args.soak_min_size}x{args.soak_max_size}, seed {args.soak_seed} ...",
            flush=True,
        )
        sampler = RSSSampler(args.soak_rss_period)
        result = run_training(cfg, extra_hooks=[sampler])
        result["rss_mib"] = sampler.samples
        runs.append(result)
    out["soak"] = runs
    print(format_soak(runs), flush=True)


# ---------------------------------------------------------------------------------------------
# Aggregation and tables
# ---------------------------------------------------------------------------------------------


def mean_std(values):
    """(mean, sample standard deviation, min, max) of a list; NaNs are left out."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return (math.nan,) * 4
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, min(values), max(values)


def summarize(runs, variants, view):
    """{variant: {metric: (mean, std, min, max)}} over the seeds of ``runs`` for one view."""
    return {
        v: {
            m: mean_std([r["metrics"][view][m] for r in runs if r["variant"] == v]) for m in METRICS
        }
        for v in variants
    }


def paired_differences(runs, variant, baseline, view, metric="AP"):
    """Per seed, ``metric`` of ``variant`` minus that of ``baseline`` (seeds run by both)."""
    by_key = {(r["variant"], r["seed"]): r["metrics"][view][metric] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    return [
        by_key[(variant, s)] - by_key[(baseline, s)]
        for s in seeds
        if (variant, s) in by_key and (baseline, s) in by_key
    ]


def format_table(header, rows):
    """A plain-text table: columns right-aligned except the first."""
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]

    def line(r):
        cells = [str(r[0]).ljust(widths[0])]
        cells += [str(c).rjust(w) for c, w in zip(r[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def _pm(stats):
    mean, std, _, _ = stats
    return "n/a" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"


VIEW_TITLES = {
    "own": "each detector's own score threshold (FCOS sqrt(s*o) > 0.2, DW s*o > 0.05)",
    "low": f"both at s*o > {LOW_SCORE:g} (FCOS sqrt(s*o) > {math.sqrt(LOW_SCORE):g})",
}


def format_summary(runs, variants, view):
    """Mean ± sample std over seeds of every metric, and the range of AP."""
    summary = summarize(runs, variants, view)
    rows = []
    for v in variants:
        _, _, lo, hi = summary[v]["AP"]
        dets = mean_std(
            [r["metrics"][view].get("dets/img", math.nan) for r in runs if r["variant"] == v]
        )[0]
        rows.append(
            [
                VARIANTS[v],
                *(_pm(summary[v][m]) for m in METRICS),
                f"{lo:.1f}-{hi:.1f}",
                "n/a" if math.isnan(dets) else f"{dets:.1f}",
            ]
        )
    seeds = sorted({r["seed"] for r in runs})
    return (
        f"COCO box AP (%), mean ± sample std over seeds {seeds}, {VIEW_TITLES[view]}:\n"
        + format_table(["detector", *METRICS, "AP range", "dets/img"], rows)
    )


def format_per_seed(runs, variants, view, baseline="fcos"):
    """AP of every run, and per seed the difference of each variant to ``baseline``."""
    seeds = sorted({r["seed"] for r in runs})
    ap = {(r["variant"], r["seed"]): r["metrics"][view]["AP"] for r in runs}
    rows = [
        [VARIANTS[v], *(f"{ap[(v, s)]:.1f}" if (v, s) in ap else "-" for s in seeds), ""]
        for v in variants
    ]
    for v in variants:
        if baseline in variants and v != baseline:
            diffs = paired_differences(runs, v, baseline, view)
            mean, std, lo, hi = mean_std(diffs)
            rows.append(
                [
                    f"{VARIANTS[v]} - {VARIANTS[baseline]}",
                    *(f"{d:+.1f}" for d in diffs),
                    f"{mean:+.1f} ± {std:.1f} (range {lo:+.1f} to {hi:+.1f})",
                ]
            )
    header = ["AP by seed", *(f"seed {s}" for s in seeds), "paired mean ± std"]
    return format_table(header, rows)


def format_accuracy(runs, variants):
    """Both views' summaries and per-seed tables, and the training times."""
    parts = []
    for view in VIEW_TITLES:
        parts.append(format_summary(runs, variants, view))
        parts.append(format_per_seed(runs, variants, view))
    timing = []
    for v in variants:
        mine = [r for r in runs if r["variant"] == v]
        timing.append(
            [
                VARIANTS[v],
                f"{statistics.median(r['s_per_iter'] for r in mine):.2f}",
                f"{statistics.fmean(r['train_s'] for r in mine):.0f}",
                f"{statistics.fmean(r['eval_s'] for r in mine):.0f}",
            ]
        )
    parts.append(
        "Training runs (times are noisy when other work shares the CPU):\n"
        + format_table(["detector", "median s/it", "mean train s", "mean eval s"], timing)
    )
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Speed: training step, inference latency, peak memory
# ---------------------------------------------------------------------------------------------


def speed_settings(args):
    """name -> (config file, opts, image height, width, batch, description)."""
    return {
        "r50": (R50_CONFIG, [], 800, 1216, 2, "R-50-FPN 256 ch, 800x1216, batch 2, 80 classes"),
        "small": (
            SMALL_CONFIG,
            [],
            args.min_size,
            args.max_size,
            args.batch,
            f"R-18-FPN 128 ch (accuracy model), {args.min_size}x{args.max_size}, "
            f"batch {args.batch}, 6 classes",
        ),
    }


def synthetic_batch(num_images, height, width, num_classes, boxes_per_image, seed):
    """Random images with COCO-like random boxes (``benchmark_losses.make_inputs``)."""
    *_, gt_boxes, gt_classes = benchmark_losses.make_inputs(
        num_images, boxes_per_image, height, width, num_classes, seed, torch.float32
    )
    g = torch.Generator().manual_seed(seed)
    batch = []
    for boxes, classes in zip(gt_boxes, gt_classes):
        image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
        instances = Instances((height, width), gt_boxes=Boxes(boxes), gt_classes=classes)
        batch.append({"image": image, "instances": instances, "height": height, "width": width})
    return batch


class Device:
    """Synchronised timing and peak memory of a call, on CPU or CUDA."""

    def __init__(self, name):
        self.cuda = name.startswith("cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn):
        """Seconds of ``fn()``."""
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def time_and_peak(self, fn):
        """Seconds of ``fn()`` and its memory peak above its start in MiB (None if unmeasurable).

        CUDA: ``torch.cuda.max_memory_allocated``. CPU: tools/benchmark_losses.py's probe,
        growth of the peak resident set size (``VmHWM``) after returning freed heap pages to the
        system (``malloc_trim``) and resetting ``VmHWM`` to the current size.
        """
        gc.collect()
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            seconds = self.time(fn)
            return seconds, (torch.cuda.max_memory_allocated() - before) / 2**20
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = benchmark_losses._status_kib("VmRSS")
        except (OSError, AttributeError):
            return self.time(fn), None
        seconds = self.time(fn)
        return seconds, (benchmark_losses._status_kib("VmHWM") - before) / 1024


def build_speed_models(config_file, opts, variants, device, seed=0):
    """One model per variant, each from the same seed (identical backbones)."""
    models = {}
    for variant in variants:
        cfg = make_cfg(config_file, variant, opts, device)
        seed_all_rng(seed)
        models[variant] = (cfg, build_detector(cfg))
    return models


def measure_speed(models, batch, device, warmup, repeats):
    """Training step and inference timings of ``models`` ({variant: (cfg, model)}), interleaved.

    Returns:
        {variant: {"train_s": [...], "train_mib": [...], "infer_s": [...]}}: per timed round,
        seconds of a training step, its memory peak in MiB (None if unmeasurable) and seconds of
        inference on one image.
    """
    dev = Device(device)
    results = {v: {"train_s": [], "train_mib": [], "infer_s": []} for v in models}
    optimizers = {v: build_optimizer(cfg, model) for v, (cfg, model) in models.items()}

    def train_step(variant):
        model = models[variant][1]
        losses = model(batch)
        sum(losses.values()).backward()
        optimizers[variant].step()
        optimizers[variant].zero_grad(set_to_none=True)

    image = [{k: batch[0][k] for k in ("image", "height", "width")}]

    def infer(variant):
        with torch.no_grad():
            models[variant][1](image)

    with EventStorage():
        for _, model in models.values():
            model.train()
        for _ in range(warmup):
            for v in models:
                train_step(v)
        # Every timed step is measured alike: the memory probe (trim, reset) runs before each.
        for r in range(repeats):
            for v in models:
                seconds, mib = dev.time_and_peak(functools.partial(train_step, v))
                results[v]["train_s"].append(seconds)
                results[v]["train_mib"].append(mib)
            if r == 0:
                print(f"    first timed round: {_round_line(results, 'train_s')}", flush=True)

        for _, model in models.values():
            model.eval()
            model.test_score_thresh = 0.0  # top 1000 candidates per level go to NMS
        for _ in range(warmup):
            for v in models:
                infer(v)
        for _ in range(repeats):
            for v in models:
                results[v]["infer_s"].append(dev.time(functools.partial(infer, v)))
    return results


def _round_line(results, key):
    return ", ".join(f"{VARIANTS[v]} {r[key][-1]:.2f} s" for v, r in results.items())


def paired_ratio(times, baseline):
    """Median over rounds of ``times[i] / baseline[i]``."""
    return statistics.median(t / b for t, b in zip(times, baseline))


def peak_mib(result):
    """Largest memory growth of the timed training steps of one model; None if unmeasured."""
    mibs = [m for m in result["train_mib"] if m is not None]
    return max(mibs) if mibs else None


def format_speed(results, title, baseline="fcos"):
    """Median times and peak memory, each with its ratio to ``baseline``'s."""
    base = results.get(baseline)
    rows = []
    for v, r in results.items():
        mib, base_mib = peak_mib(r), base and peak_mib(base)
        rows.append(
            [
                VARIANTS[v],
                f"{statistics.median(r['train_s']):.3f}",
                f"{paired_ratio(r['train_s'], base['train_s']):.3f}x" if base else "-",
                f"{1e3 * statistics.median(r['infer_s']):.0f}",
                f"{paired_ratio(r['infer_s'], base['infer_s']):.3f}x" if base else "-",
                "n/a" if mib is None else f"{mib:.0f}",
                f"{mib / base_mib:.3f}x" if mib is not None and base_mib else "-",
            ]
        )
    header = ["detector", "train s/it", "ratio", "infer ms/img", "ratio", "train MiB", "ratio"]
    return f"{title}\n{format_table(header, rows)}"


def run_speed(args, out):
    out["speed"] = {}
    for name in args.speed_settings:
        config_file, opts, height, width, batch_size, desc = speed_settings(args)[name]
        models = build_speed_models(config_file, opts, args.speed_variants, args.device)
        num_classes = next(iter(models.values()))[0].MODEL.DW.NUM_CLASSES
        batch = synthetic_batch(batch_size, height, width, num_classes, args.boxes, seed=0)
        print(f"  {desc} ...", flush=True)
        results = measure_speed(models, batch, args.device, args.warmup, args.repeats)
        del models
        out["speed"][name] = {"description": desc, "results": results}
        title = (
            f"{desc}, {args.boxes} boxes/image, {args.device}, median of {args.repeats} rounds "
            f"after {args.warmup} warm-up; ratio = median of same-round ratios; "
            "inference at score threshold 0, 1 image; train MiB = largest memory growth of a "
            "training step:"
        )
        print(format_speed(results, title) + "\n", flush=True)


# ---------------------------------------------------------------------------------------------
# Losses, environment, command line
# ---------------------------------------------------------------------------------------------


def run_losses(args, out):
    command = [sys.executable, str(REPO / "tools" / "benchmark_losses.py"), *args.loss_args.split()]
    print("  $ " + " ".join(["python tools/benchmark_losses.py", *args.loss_args.split()]))
    proc = subprocess.run(command, check=True, capture_output=True, text=True)
    print(proc.stdout, flush=True)
    out["losses"] = proc.stdout


def environment(args):
    """Machine, versions and threads, as a dict."""
    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python tools/benchmark.py", *sys.argv[1:]]),
        "cpu": model,
        "cpus_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "device": args.device,
        "niceness": os.nice(0),
    }
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    return env


def _csv(kind):
    def parse(text):
        return [kind(x) for x in text.split(",") if x]

    return parse


def argument_parser():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "section",
        nargs="?",
        default="all",
        choices=("all", "accuracy", "speed", "losses", "soak"),
        help="what to run (default: all = accuracy, speed, losses; soak runs alone)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--output-dir", default=str(REPO / "output" / "benchmark"))
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse accuracy runs already finished in OUTPUT_DIR with the same config "
        "(marked 'reused'), e.g. after an interrupted run",
    )
    a = p.add_argument_group("accuracy")
    a.add_argument("--seeds", type=_csv(int), default=[0, 1, 2], help="default 0,1,2")
    a.add_argument(
        "--variants", type=_csv(str), default=["fcos", "dw"], help="of fcos,dw,dw_refine"
    )
    a.add_argument("--iters", type=int, default=120, help="training iterations (demo: 220)")
    a.add_argument("--batch", type=int, default=8, help="images per batch (also 'small' speed)")
    a.add_argument("--min-size", type=int, default=192, help="shorter image side (demo: 256)")
    a.add_argument("--max-size", type=int, default=240, help="longer side cap (demo: 320)")
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
    s.add_argument("--boxes", type=int, default=10, help="random boxes per image")
    s.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    s.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    los = p.add_argument_group("losses")
    los.add_argument(
        "--loss-args",
        default="--boxes 10,50 --repeats 3",
        help="arguments of tools/benchmark_losses.py, given as --loss-args='...' "
        "(default: %(default)s)",
    )
    k = p.add_argument_group("soak")
    k.add_argument("--soak-iters", type=int, default=2000, help="iterations of each of two runs")
    k.add_argument("--soak-batch", type=int, default=2, help="images per batch")
    k.add_argument("--soak-min-size", type=int, default=128, help="shorter image side")
    k.add_argument("--soak-max-size", type=int, default=160, help="longer side cap")
    k.add_argument("--soak-seed", type=int, default=0)
    k.add_argument("--soak-rss-period", type=int, default=100, help="iterations between samples")
    return p


def main(argv=None):
    args = argument_parser().parse_args(argv)
    # Noise from inside torch and detectron2 that says nothing about the benchmark.
    warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
    warnings.filterwarnings("ignore", message="The 'warn' method", category=DeprecationWarning)
    for name in (*args.variants, *args.speed_variants):
        if name not in VARIANTS:
            raise SystemExit(f"Unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"environment": environment(args), "args": vars(args)}
    env = out["environment"]
    print(
        f"{env['date']}  {env['command']}\n"
        f"CPU: {env['cpu']}, {env['cpus_usable']} usable cores, torch {env['torch']} "
        f"({env['torch_threads']} threads), detectron2 {env['detectron2']}, Python "
        f"{env['python']}, device {env['device']}{', ' + env['gpu'] if 'gpu' in env else ''}, "
        f"nice {env['niceness']}\n",
        flush=True,
    )
    sections = {
        "accuracy": run_accuracy,
        "speed": run_speed,
        "losses": run_losses,
        "soak": run_soak,
    }
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name, fn in sections.items():
        if args.section == name or (args.section == "all" and name != "soak"):
            print(f"== {name} ==", flush=True)
            section_start = time.perf_counter()
            fn(args, out)
            print(f"({name}: {time.perf_counter() - section_start:.0f} s)\n", flush=True)
    out["total_s"] = time.perf_counter() - start
    with open(Path(args.output_dir) / "results.json", "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"Total {out['total_s'] / 60:.1f} min; results in {args.output_dir}/results.json")
    return out


if __name__ == "__main__":
    main()

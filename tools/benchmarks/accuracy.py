"""The accuracy section: both detectors trained with detectron2's trainer on one dataset (the
generated shapes or the real tree crowns, :data:`DATASETS`), each seed alike for both, and
COCO-evaluated at two score thresholds ("views"), every ``TEST.EVAL_PERIOD`` iterations and at
the end (the AP curve)."""

import contextlib
import json
import logging
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.engine import hooks
from detectron2.evaluation import DatasetEvaluators
from detectron2.utils.env import seed_all_rng

from dual_weighting.engine import DWTrainer
from dual_weighting.evaluation import DWCOCOEvaluator
from sample_data.shapes import ensure_synthetic
from sample_data.trees import ensure_trees

from .detectors import (
    FCOS_CLASSES,
    LOW_SCORE,
    SMALL_CONFIG,
    TREES_CONFIG,
    VARIANTS,
    build_detector,
    dw_default_score_thresh,
    fcos_default_score_thresh,
    make_cfg,
    score_of_product,
)
from .report import format_accuracy, plot_ap_curves

# The datasets of the accuracy section: {name: (config file, function that prepares and
# registers the data, what the evaluation split is)}.
DATASETS = {
    "synthetic": (SMALL_CONFIG, ensure_synthetic, "the generated validation split"),
    "trees": (TREES_CONFIG, ensure_trees, "the held-out DeepForest image"),
}


class ScoreFilteredCOCOEvaluator(DWCOCOEvaluator):
    """COCO box AP of the detections scoring above ``min_score``, reported as ``{view: ...}``
    (COCOeval backend "auto": faster-coco-eval where installed, pycocotools' numbers)."""

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


@contextlib.contextmanager
def random_state_kept():
    """Restore Python's, NumPy's and torch's (CPU) global random states on exit.

    Evaluating draws from them (the test loader's worker seed from torch's, the test resize's
    size choice from NumPy's); restoring them keeps training (e.g. flips drawn in this process)
    the same with or without evaluations in between.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class BenchmarkTrainer(DWTrainer):
    """``DWTrainer`` (train_net.py's) that builds either detector, gives every detector of one
    seed the same data order and flips, skips checkpoints, and evaluates both score views.

    Every ``TEST.EVAL_PERIOD`` iterations (never if 0) detectron2's ``EvalHook`` evaluates and
    puts the metrics in the trainer's ``EventStorage``, which its writers record in
    ``metrics.json`` (the AP curve, :func:`storage_curve`); the seconds go to
    ``self.curve_eval_s``. The evaluation after the last iteration is :func:`run_training`'s.
    """

    def __init__(self, cfg):
        self.curve_eval_s = 0.0
        super().__init__(cfg)

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
        # No checkpoints. detectron2's EvalHook keeps its place (before the writers, so the
        # curve's metrics reach metrics.json) but keeps training's random state and skips the end.
        built = []
        for h in super().build_hooks():
            if isinstance(h, hooks.EvalHook) and self.cfg.TEST.EVAL_PERIOD > 0:
                built.append(
                    hooks.EvalHook(
                        self.cfg.TEST.EVAL_PERIOD, self._curve_point, eval_after_train=False
                    )
                )
            elif not isinstance(h, (hooks.PeriodicCheckpointer, hooks.EvalHook)):
                built.append(h)
        return built

    def _curve_point(self):
        start = time.perf_counter()
        with random_state_kept():
            metrics = self.test(self.cfg, self.model)
        self.curve_eval_s += time.perf_counter() - start
        return metrics

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        # Score views: detectron2's FCOS class scores sqrt(cls * ctr), DWFCOS cls * ctr.
        variant = "fcos" if cfg.MODEL.META_ARCHITECTURE in FCOS_CLASSES.values() else "dw"
        own = fcos_default_score_thresh() if variant == "fcos" else dw_default_score_thresh()
        low = score_of_product(variant, LOW_SCORE)
        return DatasetEvaluators(
            [
                ScoreFilteredCOCOEvaluator(dataset_name, "own", own),
                ScoreFilteredCOCOEvaluator(dataset_name, "low", low),
            ]
        )


def storage_curve(storage):
    """``[[iteration, {view: metrics}], ...]`` of the periodic evaluations: the values
    detectron2's ``EvalHook`` put in the trainer's ``EventStorage`` (keys ``own/AP``, ...), which
    its writers record in ``metrics.json``."""
    points = {}
    for key, history in storage.histories().items():
        view, _, metric = key.partition("/")
        if view in ("own", "low") and metric:
            for value, iteration in history.values():
                points.setdefault(iteration + 1, {}).setdefault(view, {})[metric] = value
    return [[iteration, metrics] for iteration, metrics in sorted(points.items())]


def scaled_schedule(iters, warmup_iters=None):
    """KEY VALUE options of a run of ``iters`` iterations: warm-up over ``warmup_iters``
    (default min(50, iters / 4)) iterations and lr steps at 170/220 and 205/220 of the run (the
    demo's schedule when these benchmarks were first run; kept fixed so that their numbers stay
    reproducible)."""
    steps = tuple(sorted({round(iters * f) for f in (170 / 220, 205 / 220)} - {0, iters}))
    warmup_iters = min(50, iters // 4) if warmup_iters is None else warmup_iters
    return [
        "SOLVER.MAX_ITER", iters,
        "SOLVER.WARMUP_ITERS", warmup_iters,
        "SOLVER.STEPS", steps,
    ]  # fmt: skip


def run_opts(seed, args, output_dir):
    """KEY VALUE options every training run of the benchmark shares: seed, output folder, batch,
    the scaled schedule, input sizes and evaluation period.

    ``args`` gives ``iters``, ``warmup_iters``, ``batch``, ``min_size``, ``max_size``,
    ``eval_period`` and ``device`` (the options of ``tools/benchmark.py``).
    """
    opts = [
        "SEED", seed,
        "OUTPUT_DIR", str(output_dir),
        "SOLVER.IMS_PER_BATCH", args.batch,
        *scaled_schedule(args.iters, args.warmup_iters),
        "INPUT.MIN_SIZE_TRAIN", (args.min_size,),
        "INPUT.MAX_SIZE_TRAIN", args.max_size,
        "INPUT.MIN_SIZE_TEST", args.min_size,
        "INPUT.MAX_SIZE_TEST", args.max_size,
        "TEST.EVAL_PERIOD", args.eval_period,
    ]  # fmt: skip
    if args.device != "cpu":
        opts += ["DATALOADER.NUM_WORKERS", 4]
    return [str(o) for o in opts]


def accuracy_cfg(variant, seed, args, output_dir, extra_opts=(), dataset="synthetic"):
    """Config of one accuracy run: the config of ``dataset`` (:data:`DATASETS`; the demo's for
    the generated data) with :func:`run_opts`, scores kept down to the "low" view's threshold,
    then ``extra_opts`` (KEY VALUE strings)."""
    opts = [
        *run_opts(seed, args, output_dir),
        # Scores are kept down to the "low" view's threshold; the "own" view filters further.
        "MODEL.DW.SCORE_THRESH_TEST", str(score_of_product("dw", LOW_SCORE)),
        "MODEL.FCOS.SCORE_THRESH_TEST", str(score_of_product("fcos", LOW_SCORE)),
        *extra_opts,
    ]  # fmt: skip
    return make_cfg(DATASETS[dataset][0], variant, opts, args.device)


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


def run_training(cfg, extra_hooks=(), trainer_class=None):
    """Train ``cfg`` from scratch with ``trainer_class`` (:class:`BenchmarkTrainer` or a
    subclass; plus ``extra_hooks``), then COCO-evaluate it.

    Returns:
        dict: ``metrics`` ({view: {metric: value}}), ``train_s`` (without the periodic
        evaluations), ``s_per_iter`` (median of the trainer's iteration times), ``eval_s`` (the
        last evaluation), ``curve_eval_s`` (the periodic ones), ``losses`` (the total loss of
        every iteration), ``curve`` ([iteration, metrics] of every evaluation, the last too).

    Raises:
        DivergedRun: training stopped on a FloatingPointError; it carries what was recorded.
    """
    cfg = cfg.clone()
    cfg.freeze()
    Path(cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    with logs_to(Path(cfg.OUTPUT_DIR) / "log.txt"):
        seed_all_rng(cfg.SEED)  # model init
        trainer_class = trainer_class or BenchmarkTrainer
        trainer = trainer_class(cfg)
        trainer.register_hooks(list(extra_hooks))
        start = time.perf_counter()
        try:
            trainer.train()
        except FloatingPointError as e:
            raise DivergedRun(str(e).splitlines()[0], storage_curve(trainer.storage)) from e
        train_s = time.perf_counter() - start - trainer.curve_eval_s
        # IterationTimer records iterations after its first 3 only.
        timer = trainer.storage.histories().get("time")
        iter_times = [t for t, _ in timer.values()] if timer else []
        losses = [v for v, _ in trainer.storage.history("total_loss").values()]
        start = time.perf_counter()
        metrics = trainer_class.test(cfg, trainer.model)
        eval_s = time.perf_counter() - start
    curve = [*storage_curve(trainer.storage), [cfg.SOLVER.MAX_ITER, metrics]]
    return {
        "metrics": _floats(metrics),
        "train_s": train_s,
        "s_per_iter": statistics.median(iter_times) if iter_times else math.nan,
        "eval_s": eval_s,
        "curve_eval_s": trainer.curve_eval_s,
        "losses": losses,
        "curve": [[it, _floats(m)] for it, m in curve],
    }


class DivergedRun(FloatingPointError):
    """A training run that stopped on a FloatingPointError: its first line ``reason`` and the AP
    ``curve`` recorded until then."""

    def __init__(self, reason, curve):
        super().__init__(reason)
        self.reason, self.curve = reason, curve


def diverged_result(reason):
    """The record of a run that diverged (a ``FloatingPointError`` of detectron2's check on the
    losses or of DW's on its predictions and assignment): every metric NaN (left out of the
    means), ``reason``."""
    nan = float("nan")
    metrics = dict.fromkeys(("AP", "AP50", "AP75", "APs", "APm", "APl", "dets/img"), nan)
    return {
        "metrics": {"own": dict(metrics), "low": dict(metrics)},
        "diverged": reason,
        "s_per_iter": nan,
        "train_s": nan,
        "eval_s": nan,
    }


def _floats(metrics):
    return {view: {k: float(v) for k, v in m.items()} for view, m in metrics.items()}


def run_accuracy(args, out):
    """Train and evaluate every variant of ``args.variants`` for every seed of ``args.seeds``
    on ``args.dataset`` (reusing finished runs with ``args.resume``), print the tables, set
    ``out["accuracy"]``."""
    _, prepare, split = DATASETS[args.dataset]
    prepare()
    runs = []
    total = len(args.seeds) * len(args.variants)
    for seed in args.seeds:
        for variant in args.variants:
            run_dir = Path(args.output_dir) / "accuracy" / f"{variant}_seed{seed}"
            print(f"  [{len(runs) + 1}/{total}] {VARIANTS[variant]} seed {seed} ...", end="")
            sys.stdout.flush()
            cfg = accuracy_cfg(variant, seed, args, run_dir, dataset=args.dataset)
            saved, reused = run_dir / "result.json", ""
            if args.resume and saved.is_file():
                record = json.loads(saved.read_text())
                if record["config"] == cfg.dump():  # the same run, finished before
                    result, reused = record["result"], " (reused)"
            if not reused:
                try:
                    result = run_training(cfg)
                except DivergedRun as e:
                    # A run that collapses is a result of the comparison, not the section's end.
                    result = diverged_result(e.reason)
                    result.update(curve=[[it, _floats(m)] for it, m in e.curve])
                result.update(variant=variant, seed=seed)
                saved.write_text(json.dumps({"config": cfg.dump(), "result": result}))
            runs.append(result)
            own = result["metrics"]["own"]
            if "diverged" in result:
                print(f" diverged: {result['diverged']}{reused}", flush=True)
            else:
                print(
                    f" AP {own['AP']:.1f} AP50 {own['AP50']:.1f} | train {result['train_s']:.0f}"
                    f" s ({result['s_per_iter']:.2f} s/it), eval {result['eval_s']:.0f} s{reused}",
                    flush=True,
                )
    out["accuracy"] = runs
    print()
    print(format_accuracy(runs, args.variants))
    path = Path(args.output_dir) / "accuracy_ap_curves.png"
    plot_ap_curves(runs, path, split=split)
    print(f"  plot: {path}", flush=True)

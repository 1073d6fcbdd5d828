"""The speed section: seconds of a training step (detectron2's ``SimpleTrainer.run_step``),
inference latency and peak memory of a training step, one model per variant, the models' steps
interleaved round by round."""

import functools
import itertools
import math
import statistics
import time
from pathlib import Path

import torch
from detectron2.engine import SimpleTrainer
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from .detectors import R50_CONFIG, SMALL_CONFIG, VARIANTS, build_detector, make_cfg
from .memory import peak_cuda_growth_mib, peak_rss_growth_mib
from .plots import bar_chart
from .report import format_table


def speed_settings(args):
    """name -> (config file, opts, image height, width, batch, description); "small" takes
    ``args.min_size``, ``args.max_size`` and ``args.batch``."""
    h, w, n = args.min_size, args.max_size, args.batch
    small = f"R-18-FPN 128 ch (accuracy model), {h}x{w}, batch {n}, 6 classes"
    return {
        "r50": (R50_CONFIG, [], 800, 1216, 2, "R-50-FPN 256 ch, 800x1216, batch 2, 80 classes"),
        "small": (SMALL_CONFIG, [], h, w, n, small),
    }


def synthetic_batch(num_images, height, width, num_classes, boxes_per_image, seed):
    """Random uint8 images (3, height, width) with COCO-like random boxes (sqrt(area)
    log-uniform in [12, 600] px, aspect ratio log-uniform in [1/3, 3], centres uniform, clipped
    to the image), as detectron2 dataset dicts."""
    g = torch.Generator().manual_seed(seed)

    def uniform(lo, hi, n):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    batch = []
    for _ in range(num_images):
        side = torch.exp(uniform(math.log(12), math.log(600), boxes_per_image))
        aspect = torch.exp(uniform(-math.log(3), math.log(3), boxes_per_image))
        w, h = side * aspect.sqrt(), side / aspect.sqrt()
        cx, cy = uniform(0, width, boxes_per_image), uniform(0, height, boxes_per_image)
        boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        classes = torch.randint(num_classes, (boxes_per_image,), generator=g)
        image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
        instances = Instances((height, width), gt_boxes=Boxes(boxes), gt_classes=classes)
        batch.append({"image": image, "instances": instances, "height": height, "width": width})
    return batch


class Device:
    """Synchronised timing and peak memory of a call, on CPU or CUDA."""

    def __init__(self, name):
        self.cuda = name.startswith("cuda")

    def time(self, fn):
        """Seconds of ``fn()``."""
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def time_and_peak(self, fn):
        """Seconds of ``fn()`` and its memory peak above its start in MiB (None if unmeasurable),
        by :mod:`.memory`'s probes."""
        probe = peak_cuda_growth_mib if self.cuda else peak_rss_growth_mib
        return probe(functools.partial(self.time, fn))


def build_speed_models(config_file, opts, variants, device, seed=0):
    """{variant: (cfg, model)}, each model from the same seed (identical backbones)."""
    models = {}
    for variant in variants:
        cfg = make_cfg(config_file, variant, opts, device)
        seed_all_rng(seed)
        models[variant] = (cfg, build_detector(cfg))
    return models


def measure_speed(models, batch, device, warmup, repeats):
    """Training step (``SimpleTrainer.run_step`` on ``batch``, which stops on a non-finite
    loss) and inference timings of ``models`` ({name: (cfg, model)}), interleaved in rounds.

    Returns:
        {name: {"train_s": [...], "train_mib": [...], "infer_s": [...]}}: per timed round,
        seconds of a training step, its memory peak in MiB (None if unmeasurable) and seconds
        of inference on one image.
    """
    dev = Device(device)
    trainers = {
        name: SimpleTrainer(model, itertools.repeat(batch), build_optimizer(cfg, model))
        for name, (cfg, model) in models.items()
    }
    runs = {name: {"train_s": [], "train_mib": [], "infer_s": []} for name in models}
    image = [{k: batch[0][k] for k in ("image", "height", "width")}]

    with EventStorage():
        for _ in range(warmup):
            for trainer in trainers.values():
                trainer.run_step()
        # Every timed step is measured alike: the memory probe (trim, reset) runs before each.
        for r in range(repeats):
            for name, run in runs.items():
                seconds, mib = dev.time_and_peak(trainers[name].run_step)
                run["train_s"].append(seconds)
                run["train_mib"].append(mib)
            if r == 0:
                line = ", ".join(f"{n} {run['train_s'][-1]:.2f} s" for n, run in runs.items())
                print(f"    first timed round: {line}", flush=True)

    models = {name: model for name, (_, model) in models.items()}
    for model in models.values():
        model.eval()
        model.test_score_thresh = 0.0  # top 1000 candidates per level go to NMS
    with torch.no_grad():
        for _ in range(warmup):
            for model in models.values():
                model(image)
        for _ in range(repeats):
            for name, run in runs.items():
                run["infer_s"].append(dev.time(functools.partial(models[name], image)))
    return runs


def paired_ratio(times, baseline):
    """Median over rounds of ``times[i] / baseline[i]``."""
    return statistics.median(t / b for t, b in zip(times, baseline))


def peak_mib(result):
    """Largest memory growth of the timed training steps of one model; None if unmeasured."""
    mibs = [m for m in result["train_mib"] if m is not None]
    return max(mibs) if mibs else None


def ratios(result, base):
    """(train step, inference, train memory) of one model's ``result`` to ``base``'s: medians of
    same-round ratios and the ratio of the peaks; all None without ``base``, memory None where
    either is unmeasured."""
    if base is None:
        return None, None, None
    mib, base_mib = peak_mib(result), peak_mib(base)
    times = [paired_ratio(result[k], base[k]) for k in ("train_s", "infer_s")]
    return (*times, mib / base_mib if mib is not None and base_mib else None)


def ratio_groups(speed, baseline="fcos"):
    """The ratios to ``baseline`` of :func:`format_speed`'s tables for a bar chart: {"<setting>
    <measure>": {detector: ratio}} over the settings of ``speed`` ({setting: {"results":
    measure_speed's results}}), ``baseline`` left out (its ratios are 1)."""
    groups = {}
    for name, entry in speed.items():
        results = entry["results"]
        others = {v: r for v, r in results.items() if v != baseline}
        to_base = {v: ratios(r, results.get(baseline)) for v, r in others.items()}
        for i, measure in enumerate(("train step", "inference", "train memory")):
            groups[f"{name} {measure}"] = {VARIANTS[v]: t[i] for v, t in to_base.items()}
    return groups


def format_speed(results, title, baseline="fcos"):
    """Median times and peak memory (``measure_speed``'s ``results``), each with its ratio to
    ``baseline``'s."""
    rows = []
    for v, r in results.items():
        mib = peak_mib(r)
        values = (
            f"{statistics.median(r['train_s']):.3f}",
            f"{1e3 * statistics.median(r['infer_s']):.0f}",
            "n/a" if mib is None else f"{mib:.0f}",
        )
        row = [VARIANTS[v]]
        for value, b in zip(values, ratios(r, results.get(baseline))):
            row += [value, "-" if b is None else f"{b:.3f}x"]
        rows.append(row)
    header = ["detector", "train s/it", "ratio", "infer ms/img", "ratio", "train MiB", "ratio"]
    return f"{title}\n{format_table(header, rows)}"


def run_speed(args, out):
    """Measure every setting of ``args.speed_settings`` for ``args.speed_variants``, print the
    tables, set ``out["speed"]``."""
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
    if "fcos" in args.speed_variants:
        path = Path(args.output_dir) / "speed_ratios.png"
        title = f"DW / detectron2's FCOS on {args.device}, same run as the tables "
        title += "(median of same-round ratios; below 1: DW is faster or smaller)"
        bar_chart(ratio_groups(out["speed"]), path, title, "ratio to FCOS (d2)", reference=1.0)
        print(f"  plot: {path}", flush=True)

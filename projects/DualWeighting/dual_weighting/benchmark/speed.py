"""The speed section: seconds of a training step, inference latency and peak memory of a
training step, one model per variant, the models' steps interleaved round by round."""

import functools
import statistics
import time
from pathlib import Path

import torch
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from .detectors import R50_CONFIG, SMALL_CONFIG, VARIANTS, build_detector, make_cfg
from .losses import make_inputs
from .memory import peak_cuda_growth_mib, peak_rss_growth_mib
from .plots import bar_chart
from .report import format_table


def speed_settings(args):
    """name -> (config file, opts, image height, width, batch, description); "small" takes
    ``args.min_size``, ``args.max_size`` and ``args.batch``."""
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
    """Random uint8 images (3, height, width) with COCO-like random boxes (the loss
    benchmark's, :func:`.losses.make_inputs`), as detectron2 dataset dicts."""
    *_, gt_boxes, gt_classes = make_inputs(
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
        """Seconds of ``fn()`` and its memory peak above its start in MiB (None if unmeasurable):
        ``torch.cuda.max_memory_allocated`` on CUDA, the growth of the peak resident set size on
        CPU (:mod:`.memory`)."""
        probe = peak_cuda_growth_mib if self.cuda else peak_rss_growth_mib
        return probe(functools.partial(self.time, fn))


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


def ratio_groups(speed, baseline="fcos"):
    """The ratios of :func:`format_speed`'s tables for a bar chart: {"<setting> <measure>":
    {detector: ratio to ``baseline``}} over the settings of ``speed`` ({setting: {"results":
    measure_speed's results}}), ``baseline`` left out (its ratios are 1)."""
    groups = {}
    for name, entry in speed.items():
        results = entry["results"]
        base = results[baseline]
        others = {VARIANTS[v]: r for v, r in results.items() if v != baseline}
        for measure, key in (("train step", "train_s"), ("inference", "infer_s")):
            groups[f"{name} {measure}"] = {
                v: paired_ratio(r[key], base[key]) for v, r in others.items()
            }
        base_mib = peak_mib(base)
        groups[f"{name} train memory"] = {
            v: peak_mib(r) / base_mib if peak_mib(r) is not None and base_mib else None
            for v, r in others.items()
        }
    return groups


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
        bar_chart(
            ratio_groups(out["speed"]),
            path,
            f"DW / detectron2's FCOS on {args.device}, same run as the tables "
            "(median of same-round ratios; below 1: DW is faster or smaller)",
            "ratio to FCOS (d2)",
            reference=1.0,
        )
        print(f"  plot: {path}", flush=True)

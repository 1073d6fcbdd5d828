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

from .detectors import NAMES, R50_CONFIG, SMALL_CONFIG, VARIANTS, build_detector, make_cfg
from .losses import make_inputs
from .memory import peak_cuda_growth_mib, peak_rss_growth_mib
from .plots import bar_chart
from .precision import autocast, check_precision, float32_losses, grad_scaler
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


def build_speed_models(
    config_file, opts, variants, device, seed=0, precisions=("fp32",), channels_last=False
):
    """One model per precision and variant, each from the same seed (identical backbones; the
    models of a variant are identical), in channels_last memory format if asked. FCOS computes
    its losses in float32 under autocast, as DW does (:func:`.precision.float32_losses`).

    Returns:
        {precision: {variant: (cfg, model)}}.

    Raises:
        ValueError: a precision the device cannot run (:func:`.precision.check_precision`).
    """
    models = {}
    for precision in precisions:
        check_precision(precision, device)
        models[precision] = {}
        for variant in variants:
            cfg = make_cfg(config_file, variant, opts, device)
            seed_all_rng(seed)
            model = build_detector(cfg)
            if channels_last:
                model.to(memory_format=torch.channels_last)
            if variant == "fcos" and precision != "fp32":
                float32_losses(model, device)
            models[precision][variant] = (cfg, model)
    return models


def measure_speed(models, batch, device, warmup, repeats):
    """Training step and inference timings of ``models`` ({precision: {variant: (cfg, model)}}),
    every model interleaved in the same rounds. A step in fp16 or bf16 runs as detectron2's
    AMPTrainer runs it (:mod:`.precision`), inference under the same autocast.

    Returns:
        {precision: {variant: {"train_s": [...], "train_mib": [...], "finite": [...],
        "infer_s": [...]}}}: per timed round, seconds of a training step, its memory peak in MiB
        (None if unmeasurable), whether all its losses were finite and seconds of inference on
        one image.
    """
    dev = Device(device)
    flat = {(p, v): model for p, by_variant in models.items() for v, model in by_variant.items()}
    runs = {key: {"train_s": [], "train_mib": [], "finite": [], "infer_s": []} for key in flat}
    optimizers = {key: build_optimizer(cfg, model) for key, (cfg, model) in flat.items()}
    scalers = {key: grad_scaler(key[0], device) for key in flat}

    def train_step(key, finite):
        with autocast(key[0], device):
            losses = flat[key][1](batch)
        # Kept as a tensor: reading it here would synchronise inside the timed step.
        finite.append(torch.stack([x.detach().float() for x in losses.values()]).isfinite())
        scalers[key].scale(sum(losses.values())).backward()
        scalers[key].step(optimizers[key])
        scalers[key].update()
        optimizers[key].zero_grad(set_to_none=True)

    image = [{k: batch[0][k] for k in ("image", "height", "width")}]

    def infer(key):
        with torch.no_grad(), autocast(key[0], device):
            flat[key][1](image)

    with EventStorage():
        for _, model in flat.values():
            model.train()
        for _ in range(warmup):
            for key in flat:
                train_step(key, [])
        # Every timed step is measured alike: the memory probe (trim, reset) runs before each.
        for r in range(repeats):
            for key, run in runs.items():
                step = functools.partial(train_step, key, run["finite"])
                seconds, mib = dev.time_and_peak(step)
                run["train_s"].append(seconds)
                run["train_mib"].append(mib)
            if r == 0:
                print(f"    first timed round: {_round_line(runs, 'train_s')}", flush=True)
        for run in runs.values():
            run["finite"] = [bool(f.all()) for f in run["finite"]]

        for _, model in flat.values():
            model.eval()
            model.test_score_thresh = 0.0  # top 1000 candidates per level go to NMS
        for _ in range(warmup):
            for key in flat:
                infer(key)
        for _ in range(repeats):
            for key, run in runs.items():
                run["infer_s"].append(dev.time(functools.partial(infer, key)))
    return {p: {v: runs[(p, v)] for v in by_variant} for p, by_variant in models.items()}


def label(variant, precision):
    """The detector's name, with the precision unless float32."""
    return NAMES[variant] if precision == "fp32" else f"{NAMES[variant]} {precision}"


def _round_line(runs, key):
    return ", ".join(f"{label(v, p)} {r[key][-1]:.2f} s" for (p, v), r in runs.items())


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
    return (
        paired_ratio(result["train_s"], base["train_s"]),
        paired_ratio(result["infer_s"], base["infer_s"]),
        mib / base_mib if mib is not None and base_mib else None,
    )


def ratio_groups(speed, baseline="fcos"):
    """The ratios to ``baseline`` of :func:`format_speed`'s tables for a bar chart: {"<setting>
    [<precision>] <measure>": {detector: ratio}} over the settings of ``speed`` ({setting:
    {"results": measure_speed's results}}), each precision to ``baseline`` in the same precision
    (float32 unnamed), ``baseline`` left out (its ratios are 1)."""
    groups = {}
    for name, entry in speed.items():
        for precision, results in entry["results"].items():
            prefix = name if precision == "fp32" else f"{name} {precision}"
            others = {v: r for v, r in results.items() if v != baseline}
            to_base = {v: ratios(r, results.get(baseline)) for v, r in others.items()}
            for i, measure in enumerate(("train step", "inference", "train memory")):
                groups[f"{prefix} {measure}"] = {VARIANTS[v]: t[i] for v, t in to_base.items()}
    return groups


def _times(x):
    return "-" if x is None else f"{x:.3f}x"


def format_speed(results, title, baseline="fcos"):
    """Median times and peak memory (``measure_speed``'s ``results``), each with its ratio to
    ``baseline``'s in the same precision; with a precision other than fp32, also the
    precision, the ratios to the same detector in fp32 and whether every loss was finite."""
    mixed = any(p != "fp32" for p in results)
    rows = []
    for precision, by_variant in results.items():
        for v, r in by_variant.items():
            to_base = ratios(r, by_variant.get(baseline))
            to_fp32 = ratios(r, results.get("fp32", {}).get(v))
            mib = peak_mib(r)
            values = (
                f"{statistics.median(r['train_s']):.3f}",
                f"{1e3 * statistics.median(r['infer_s']):.0f}",
                "n/a" if mib is None else f"{mib:.0f}",
            )
            row = [VARIANTS[v], precision] if mixed else [VARIANTS[v]]
            for value, b, f in zip(values, to_base, to_fp32):
                row += [value, _times(b), _times(f)] if mixed else [value, _times(b)]
            rows.append(row + (["yes" if all(r["finite"]) else "NO"] if mixed else []))
    header = ["detector", "train s/it", "ratio", "infer ms/img", "ratio", "train MiB", "ratio"]
    if mixed:
        header = ["detector", "precision"]
        for measure in ("train s/it", "infer ms/img", "train MiB"):
            header += [measure, "vs FCOS", "vs fp32"]
        header.append("losses finite")
    return f"{title}\n{format_table(header, rows)}"


def run_speed(args, out):
    """Measure every setting of ``args.speed_settings`` for ``args.speed_variants`` in every
    precision of ``args.speed_precisions``, print the tables, set ``out["speed"]``."""
    out["speed"] = {}
    for name in args.speed_settings:
        config_file, opts, height, width, batch_size, desc = speed_settings(args)[name]
        models = build_speed_models(
            config_file,
            opts,
            args.speed_variants,
            args.device,
            precisions=args.speed_precisions,
            channels_last=args.channels_last,
        )
        num_classes = next(iter(models[args.speed_precisions[0]].values()))[0].MODEL.DW.NUM_CLASSES
        batch = synthetic_batch(batch_size, height, width, num_classes, args.boxes, seed=0)
        print(f"  {desc} ...", flush=True)
        results = measure_speed(models, batch, args.device, args.warmup, args.repeats)
        del models
        out["speed"][name] = {"description": desc, "results": results}
        title = (
            f"{desc}, {args.boxes} boxes/image, {args.device}"
            f"{', channels_last' if args.channels_last else ''}, median of {args.repeats} rounds "
            f"after {args.warmup} warm-up; ratio = median of same-round ratios; "
            "inference at score threshold 0, 1 image; train MiB = largest memory growth of a "
            "training step"
            + (
                "; fp16/bf16: autocast as detectron2's AMPTrainer, vs fp32 = same detector in fp32:"
                if any(p != "fp32" for p in args.speed_precisions)
                else ":"
            )
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

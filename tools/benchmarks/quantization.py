"""The quantization section: the trained demo model exported to ONNX in float32 and in int8
(:mod:`dual_weighting.export.quantize`; static int8 calibrated on training images after the test
resize, never on the validation split), each COCO-evaluated on the generated validation split
through ONNX Runtime as ``--eval-only`` does, PyTorch eager as the reference; then latency per
image, runtimes in turn on the same images (ratio = median of same-round ratios to float32)."""

from __future__ import annotations

import functools
import itertools
import os
import statistics
import tempfile

import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from dual_weighting.checkpoint import DWCheckpointer
from dual_weighting.engine import DWTrainer
from dual_weighting.export import (
    OnnxRuntimeDetector,
    detections,
    evaluate_exported,
    export_onnx,
    sample_image,
)
from dual_weighting.export.quantize import calibration_images, write_precision
from sample_data.shapes import ensure_synthetic

from .detectors import SMALL_CONFIG, make_cfg
from .report import format_table
from .speed import Device, paired_ratio


def measure_quantization(cfg, model, precisions, num_calibration, num_images, warmup, repeats):
    """AP and latency of ``model`` exported in every precision of ``precisions``.

    Returns:
        {"ap": {runtime: {metric: value}}, "latency_s": {runtime: [s per image, per round]},
        "size_mb": {runtime: MB}}, runtimes "eager" and each precision.
    """
    dataset = cfg.DATASETS.TEST[0]
    with tempfile.TemporaryDirectory() as folder:
        fp32 = os.path.join(folder, "exported.onnx")
        export_onnx(model, sample_image(cfg), fp32)
        calibration = (
            calibration_images(cfg, num_calibration) if "int8_static" in precisions else []
        )
        runtimes, sizes = {"eager": torch.no_grad()(functools.partial(detections, model))}, {}
        for precision in precisions:
            path = os.path.join(folder, f"{precision}.onnx")
            write_precision(precision, fp32, path, calibration)
            sizes[precision] = os.path.getsize(path) / 1e6
            runtimes[precision] = OnnxRuntimeDetector(path, threads=torch.get_num_threads())
        ap = {"eager": DWTrainer.test(cfg, model)["bbox"]}
        for precision in precisions:
            ap[precision] = evaluate_exported(cfg, runtimes[precision], dataset)["bbox"]
    loader = DWTrainer.build_test_loader(cfg, dataset)
    images = [x[0]["image"].float() for x in itertools.islice(loader, num_images)]
    dev = Device("cpu")
    for _ in range(warmup):
        for run in runtimes.values():
            run(images[0])
    latency = {name: [] for name in runtimes}
    for _ in range(repeats):
        for name, run in runtimes.items():
            seconds = dev.time(lambda run=run: [run(x) for x in images])
            latency[name].append(seconds / len(images))
    return {"ap": ap, "latency_s": latency, "size_mb": sizes}


def format_quantization(result, title, baseline="fp32"):
    """AP, AP50, AP75, size and latency of each runtime, AP differences and latency ratios to
    ``baseline``."""
    ap, latency = result["ap"], result["latency_s"]
    rows = []
    for name, times in latency.items():
        metrics = ap[name]
        rows.append(
            [
                "PyTorch eager" if name == "eager" else f"ONNX Runtime {name}",
                *(f"{metrics[k]:.2f}" for k in ("AP", "AP50", "AP75")),
                f"{metrics['AP'] - ap[baseline]['AP']:+.2f}",
                f"{result['size_mb'][name]:.1f}" if name in result["size_mb"] else "-",
                f"{1e3 * statistics.median(times):.1f}",
                f"{paired_ratio(times, latency[baseline]):.2f}x",
            ]
        )
    header = ["runtime", "AP", "AP50", "AP75", "AP - fp32", "MB", "ms/img", f"vs {baseline}"]
    return f"{title}\n{format_table(header, rows)}"


def run_quantization(args, out):
    """Measure ``args.weights`` (the demo model) in every precision of
    ``args.quant_precisions``, print the table, set ``out["quantization"]``."""
    if not args.weights.is_file():
        raise FileNotFoundError(
            f"No trained model at {args.weights}: run `make demo-shapes` (it writes "
            "output/shapes_demo/model_final.pth) or pass --weights"
        )
    if args.device != "cpu":
        raise SystemExit("The quantization section measures ONNX Runtime on the CPU: --device cpu")
    ensure_synthetic()
    cfg = make_cfg(SMALL_CONFIG, "dw")
    model = build_model(cfg)
    DWCheckpointer(model, strict=True).load(str(args.weights))
    model.eval()
    model.test_release_postprocess = False  # as exported (detectron2's post-processing)
    dataset = cfg.DATASETS.TEST[0]
    num_val = len(DatasetCatalog.get(dataset))
    warmup = max(args.warmup, 1)
    precisions, num_calibration = args.quant_precisions, args.calibration_images
    result = out["quantization"] = measure_quantization(
        cfg, model, precisions, num_calibration, args.quant_images, warmup, args.repeats
    )
    title = (
        f"Demo model ({args.weights}), COCO box AP on {dataset} ({num_val} images) through each "
        f"runtime; latency: {args.quant_images} validation images a round, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} rounds after {warmup} "
        f"warm-up, ratio = median of same-round ratios; static int8 calibrated on "
        f"{args.calibration_images} training images:"
    )
    print(format_quantization(result, title) + "\n", flush=True)

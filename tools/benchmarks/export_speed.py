"""The export section: latency of the exported model (TorchScript, ONNX Runtime) against PyTorch
eager on the same images in the same run, and whether its detections equal PyTorch's.

Per setting, one random-weight DW-FCOS (test score threshold 0, so every level sends its top
1000 candidates to NMS, as the speed section infers), exported by :mod:`dual_weighting.export`
from a sample image of the setting's size; then rounds of one image through each runtime in turn,
the ratio being the median of same-round ratios to eager. ONNX Runtime runs with torch's thread
count on CPU, and with its CUDA provider on CUDA where onnxruntime-gpu provides one.
"""

from __future__ import annotations

import copy
import functools
import os
import statistics
import tempfile
import time
import warnings

import torch

from dual_weighting.export import (
    OnnxRuntimeDetector,
    build_export_model,
    detections,
    export_onnx,
    export_torchscript,
    match_detections,
)

from .detectors import R50_CONFIG, SMALL_CONFIG, make_cfg
from .report import format_table
from .speed import Device, paired_ratio

__all__ = ["export_settings", "run_export_speed"]


def export_settings():
    """name -> (config file, variant, image height, width, description)."""
    return {
        "r50": (R50_CONFIG, "dw", 800, 1216, "R-50-FPN 256 ch, 800x1216, 80 classes"),
        "r50_refine": (R50_CONFIG, "dw_refine", 800, 1216, "R-50-FPN + box refine, 800x1216"),
        "demo": (SMALL_CONFIG, "dw", 256, 320, "demo model (R-18-FPN 128 ch), 256x320, 6 classes"),
    }


def _runtimes(model, image, device, folder):
    """{name: detector} for eager PyTorch and the exported models, and the export seconds."""
    import onnxruntime

    runtimes = {"eager": functools.partial(_eager, model)}
    seconds = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        start = time.perf_counter()
        runtimes["torchscript"] = export_torchscript(model, image)
        seconds["torchscript"] = time.perf_counter() - start
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                print("    onnxruntime has no CUDA provider (onnxruntime-gpu): ONNX skipped")
                return runtimes, seconds
            providers.insert(0, "CUDAExecutionProvider")
        path = os.path.join(folder, "model.onnx")
        start = time.perf_counter()
        # The ONNX exporter traces on the CPU.
        export_onnx(copy.deepcopy(model).cpu(), image.cpu(), path)
        seconds["onnx"] = time.perf_counter() - start
    runtimes["onnx"] = OnnxRuntimeDetector(path, providers, threads=torch.get_num_threads())
    return runtimes, seconds


def _eager(model, image):
    with torch.no_grad():
        return detections(model, image)


def measure_export_speed(config_file, variant, height, width, device, warmup, repeats):
    """Latency (seconds per image, per round) of each runtime and their detections' match.

    Returns:
        {"export_s": {runtime: s}, "latency_s": {runtime: [s, ...]}, "match": {runtime: str}}
    """
    cfg = make_cfg(config_file, variant, ["MODEL.DW.SCORE_THRESH_TEST", "0.0"], device)
    model = build_export_model(cfg)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, height, width), generator=g).float().to(device)
    dev = Device(device)
    with tempfile.TemporaryDirectory() as folder:
        runtimes, export_s = _runtimes(model, image, device, folder)
        expected = runtimes["eager"](image)
        match = {
            name: str(match_detections(expected, run(image), (height, width)))
            for name, run in runtimes.items()
            if name != "eager"
        }
        for _ in range(warmup):
            for run in runtimes.values():
                run(image)
        latency = {name: [] for name in runtimes}
        for _ in range(repeats):
            for name, run in runtimes.items():
                latency[name].append(dev.time(functools.partial(run, image)))
    return {"export_s": export_s, "latency_s": latency, "match": match}


def format_export_speed(result, title):
    """Median latency per runtime, its ratio to eager, export seconds and the detections'
    match."""
    latency = result["latency_s"]
    rows = [
        [
            name,
            f"{1e3 * statistics.median(times):.0f}",
            f"{paired_ratio(times, latency['eager']):.3f}x",
            f"{result['export_s'][name]:.1f}" if name in result["export_s"] else "-",
            result["match"].get(name, "-"),
        ]
        for name, times in latency.items()
    ]
    header = ["runtime", "ms/img", "ratio to eager", "export s", "detections vs eager"]
    return f"{title}\n{format_table(header, rows)}"


def run_export_speed(args, out):
    """Measure every setting of ``args.export_settings`` on ``args.device``, print the tables,
    set ``out["export"]``."""
    out["export"] = {}
    # TorchScript's profiling executor optimises a graph after profiling its first runs: its
    # first two calls are several times slower than the rest.
    warmup = max(args.warmup, 2)
    for name in args.export_settings:
        config_file, variant, height, width, desc = export_settings()[name]
        print(f"  {desc} ...", flush=True)
        result = measure_export_speed(
            config_file, variant, height, width, args.device, warmup, args.repeats
        )
        out["export"][name] = {"description": desc, **result}
        title = (
            f"{desc}, random weights, score threshold 0, 1 image, {args.device}, "
            f"{torch.get_num_threads()} threads, median of {args.repeats} rounds after "
            f"{warmup} warm-up; ratio = median of same-round ratios:"
        )
        print(format_export_speed(result, title) + "\n", flush=True)

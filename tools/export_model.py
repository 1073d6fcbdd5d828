#!/usr/bin/env python
"""Export a DW-FCOS model to TorchScript or ONNX, check that it detects what PyTorch detects, and
optionally COCO-evaluate the exported model.

The exported model (``model.ts`` or ``model.onnx`` in --output) takes one float32 image (3, H,
W), any H and W, in INPUT.FORMAT's channel order after the config's test resize, and returns
boxes (K, 4) XYXY in its pixels, scores (K,) and classes (K,) int64. The file is then run on the
sample image and on a crop of another size and its detections compared with PyTorch's. How each
format is recorded, and why scripting is refused: docs/EXPORT.md; the logic:
``dual_weighting/export/``.

Examples:
    python tools/export_model.py --config-file configs/dw_R_18_FPN_synthetic_demo.yaml \\
        --format onnx --output output/export --run-eval \\
        --opts MODEL.WEIGHTS output/shapes_demo/model_final.pth
    python tools/export_model.py --config-file configs/dw_R_50_FPN_DCN_refine_ms_2x.yaml \\
        --format torchscript --sample-image photo.jpg --output output/export_ts \\
        --opts MODEL.WEIGHTS dw_dcn.pth MODEL.DEVICE cpu
"""

import os
import time
import warnings

import torch
from detectron2.evaluation import print_csv_format
from detectron2.utils.logger import setup_logger

from dual_weighting.engine import (
    SetupError,
    load_tool_config,
    parse_tool_args,
    register_datasets,
    tool_argument_parser,
)
from dual_weighting.export import (
    ExportError,
    OnnxRuntimeDetector,
    build_export_model,
    check_onnx_runtime,
    evaluate_exported,
    export_onnx,
    export_torchscript,
    load_torchscript,
    sample_image,
    script_model,
    verify_exported,
)
from dual_weighting.export.quantize import calibration_images, write_precision


def parse_args(argv=None):
    parser = tool_argument_parser(__doc__, dataset_flags=True)
    parser.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    parser.add_argument(
        "--export-method",
        choices=("tracing", "scripting"),
        default="tracing",
        help="tracing (TorchScript: torch.jit.trace; ONNX: torch.export); scripting is refused "
        "with the reason",
    )
    parser.add_argument(
        "--quantize",
        choices=("static", "dynamic"),
        help="with --format onnx, also write an int8 model (static: calibrated on the config's "
        "first DATASETS.TRAIN, the faster on CPU; dynamic: no calibration); --run-eval then "
        "evaluates it",
    )
    parser.add_argument(
        "--calibration-images", type=int, default=32, help="images for --quantize static"
    )
    parser.add_argument(
        "--sample-image",
        metavar="IMAGE",
        help="image to trace with and to compare on (default: a generated image)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the model")
    parser.add_argument(
        "--run-eval",
        action="store_true",
        help="COCO-evaluate the exported model on the config's first DATASETS.TEST",
    )
    return parse_tool_args(parser, argv)


def export(args, cfg, model, image):
    """Write the model file; returns its path and the exported detector, loaded from it."""
    os.makedirs(args.output, exist_ok=True)
    if args.export_method == "scripting" and args.format == "onnx":
        raise ExportError(
            "--export-method scripting makes TorchScript only; ONNX export records the model "
            "with torch.export (--export-method tracing, the default)"
        )
    if args.export_method == "scripting":
        script_model(model)  # raises with TorchScript's reason for DW-FCOS
    if args.format == "torchscript":
        path = os.path.join(args.output, "model.ts")
        export_torchscript(model, image, path)
        return path, load_torchscript(path, cfg.MODEL.DEVICE)
    check_onnx_runtime(model)
    path = os.path.join(args.output, "model.onnx")
    opset = export_onnx(model, image, path)
    print(f"ONNX opset {opset}")
    return path, OnnxRuntimeDetector(path)


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="detectron2")  # the evaluation's tables are logged
    register_datasets(args)
    try:
        cfg = load_tool_config(args.config_file, args.opts)
    except SetupError as e:
        raise SystemExit(f"tools/export_model.py: error: {e}") from None
    if args.quantize and args.format != "onnx":
        raise SystemExit("tools/export_model.py: error: --quantize needs --format onnx")
    if args.format == "onnx":
        cfg.MODEL.DEVICE = "cpu"  # the ONNX exporter traces on the CPU
    cfg.freeze()
    model = build_export_model(cfg)
    if not cfg.MODEL.WEIGHTS:
        print("MODEL.WEIGHTS is empty: exporting a randomly initialised model (seed 0).")
    image = sample_image(cfg, args.sample_image).to(cfg.MODEL.DEVICE)
    print(
        f"Exporting {args.config_file} to {args.format} by {args.export_method} on a "
        f"{image.shape[2]}x{image.shape[1]} sample image"
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Tracing warns about every Python value it fixes; the ones it meets in detectron2's
        # structures (asserts on box shapes) do not depend on the input.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            path, detector = export(args, cfg, model, image)
        except ExportError as e:
            raise SystemExit(f"Export failed: {e}") from None
    seconds = time.perf_counter() - start
    print(f"Wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB) in {seconds:.1f} s")

    matches = verify_exported(model, detector, image)
    for size, match in matches:
        print(f"  {size[1]}x{size[0]} image, {args.format} against PyTorch: {match}")
    if not all(match.equal for _, match in matches):
        raise SystemExit(
            "The exported model's detections differ from PyTorch's beyond rounding (above). "
            "Two detections whose scores or IoU lie within float rounding of each other or of a "
            "threshold can legitimately swap; try another --sample-image to tell."
        )
    if args.quantize:  # the int8 model next to the float32 one
        fp32_path, path = path, os.path.join(args.output, f"model_int8_{args.quantize}.onnx")
        static = args.quantize == "static"
        images = calibration_images(cfg, args.calibration_images) if static else []
        write_precision(f"int8_{args.quantize}", fp32_path, path, images)
        print(
            f"Wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB), int8 {args.quantize}"
            + (f", calibrated on {len(images)} images of {cfg.DATASETS.TRAIN[0]}" if images else "")
        )
        detector = OnnxRuntimeDetector(path)
    if args.run_eval:
        results = evaluate_exported(cfg, detector, output_dir=args.output, device=cfg.MODEL.DEVICE)
        print_csv_format(results)
    return path


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Run a DW-FCOS model on images or a video and draw its detections.

Detections come from detectron2's ``DefaultPredictor`` (the config's test resize, the model's
inference rules) and are drawn with detectron2's ``Visualizer``, labelled with the class names
of the config's first test dataset (``DATASETS.TEST[0]``; the generated ``dw_synthetic_*``
datasets are registered here, COCO's are detectron2's builtins). Works on a CPU: a config that
asks for CUDA on a machine without it runs on the CPU.

Examples:
    python tools/demo.py --config-file configs/dw_R_18_FPN_synthetic_demo.yaml \\
        --input datasets/dw_synthetic/val/00000*.jpg --output output/demo_pictures \\
        --opts MODEL.WEIGHTS output/demo/model_final.pth
    python tools/demo.py --config-file configs/dw_R_50_FPN_1x.yaml --video-input street.mp4 \\
        --output street_dw.mp4 --opts MODEL.WEIGHTS converted.pth
"""

from __future__ import annotations

import argparse
import glob
import os
import time

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer
from PIL import Image

from dual_weighting import add_dw_config
from dual_weighting.data import default_synthetic_root, register_synthetic


def setup_cfg(args):
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    # Candidates below the threshold are not drawn, so the model need not keep them either;
    # a threshold under the config's lets the model keep (and the picture show) more.
    cfg.MODEL.DW.TEST_SCORE_THRESH = args.confidence_threshold
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available: running on the CPU.")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def dataset_metadata(cfg):
    """Metadata (``thing_classes``) of the config's first test dataset, or empty metadata."""
    return MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused")


def expand_inputs(patterns):
    """Files named by ``patterns`` (paths or glob patterns), in order, without repeats."""
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise FileNotFoundError(f"--input {pattern!r} matches no file")
        files.extend(m for m in matches if m not in files)
    return files


def output_path(output, input_path, num_inputs):
    """Where to write the picture of ``input_path``: ``output`` itself when it names a file
    (not an existing folder, with an extension), else ``output/<input name>``."""
    if not os.path.isdir(output) and os.path.splitext(output)[1]:
        if num_inputs > 1:
            raise SystemExit(f"--output {output!r} names a file, but there are {num_inputs} inputs")
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        return output
    os.makedirs(output, exist_ok=True)
    return os.path.join(output, os.path.basename(input_path))


def describe(instances, class_names):
    """One line per detection: class, score, box (x1, y1, x2, y2) in input pixels."""
    lines = []
    for box, score, cls in zip(
        instances.pred_boxes.tensor.tolist(), instances.scores.tolist(), instances.pred_classes
    ):
        name = class_names[cls] if class_names else str(int(cls))
        lines.append(f"  {name:>12s} {score:.3f}  " + " ".join(f"{v:7.1f}" for v in box))
    return "\n".join(lines)


def run_on_image(predictor, metadata, bgr):
    """Detections (on the CPU) and the (H, W, 3) uint8 RGB picture with them drawn."""
    instances = predictor(bgr)["instances"].to("cpu")
    rgb = bgr[:, :, ::-1]
    picture = Visualizer(rgb, metadata, instance_mode=ColorMode.IMAGE)
    return instances, picture.draw_instance_predictions(instances).get_image()


def run_on_video(predictor, metadata, video_input, output):
    """Draw the detections on every frame of ``video_input``; write them to ``output`` (a file,
    or a folder that receives ``<input name>.mp4``). Returns the frame count and the path."""
    import cv2  # only the video path needs OpenCV

    capture = cv2.VideoCapture(video_input)
    if not capture.isOpened():
        raise OSError(f"OpenCV cannot open the video {video_input!r}")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    if os.path.isdir(output) or not os.path.splitext(output)[1]:
        os.makedirs(output, exist_ok=True)
        name = os.path.splitext(os.path.basename(video_input))[0] + ".mp4"
        output = os.path.join(output, name)
    writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write the video {output!r} (mp4v codec)")
    visualizer = VideoVisualizer(metadata, instance_mode=ColorMode.IMAGE)
    frames = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            instances = predictor(bgr)["instances"].to("cpu")
            drawn = visualizer.draw_instance_predictions(bgr[:, :, ::-1], instances).get_image()
            writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))
            frames += 1
    finally:
        capture.release()
        writer.release()
    return frames, output


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Examples:" + __doc__.split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input", nargs="+", metavar="IMAGE", help="image files or glob patterns (quote them)"
    )
    source.add_argument("--video-input", metavar="VIDEO", help="a video file OpenCV can read")
    parser.add_argument(
        "--output",
        help="a file (one image, or the video) or a folder for the drawn pictures; without it "
        "the detections of images are printed",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="lowest score drawn (also the model's MODEL.DW.TEST_SCORE_THRESH)",
    )
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides, KEY VALUE pairs (e.g. MODEL.WEIGHTS model_final.pth)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    register_synthetic(default_synthetic_root())
    cfg = setup_cfg(args)
    metadata = dataset_metadata(cfg)
    class_names = metadata.get("thing_classes")
    predictor = DefaultPredictor(cfg)

    if args.video_input:
        if not args.output:
            raise SystemExit("--video-input needs --output (a file or a folder)")
        start = time.perf_counter()
        frames, path = run_on_video(predictor, metadata, args.video_input, args.output)
        print(
            f"{args.video_input}: {frames} frames in {time.perf_counter() - start:.1f} s -> {path}"
        )
        return [path]

    written = []
    files = expand_inputs(args.input)
    for path in files:
        bgr = read_image(path, format="BGR")
        start = time.perf_counter()
        instances, picture = run_on_image(predictor, metadata, bgr)
        print(f"{path}: {len(instances)} detections in {time.perf_counter() - start:.2f} s")
        if args.output:
            out = output_path(args.output, path, len(files))
            Image.fromarray(picture).save(out)
            written.append(out)
        elif len(instances):
            print(describe(instances, class_names))
    return written


if __name__ == "__main__":
    main()

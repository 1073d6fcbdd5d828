#!/usr/bin/env python
"""Run a DW-FCOS model on images or a video and draw its detections.

Detections come from detectron2's ``DefaultPredictor`` (the config's test resize, the model's
inference rules) and are drawn with detectron2's ``Visualizer``, labelled with the class names
the model was trained with (``class_names.txt`` beside ``MODEL.WEIGHTS``, saved by training),
else those of the first dataset given with ``--register-coco/voc/yolo`` (the flags of
``train_net.py``), else those of the config's first test dataset (``DATASETS.TEST[0]``: the
generated ``dw_synthetic_*`` and tree-crown datasets are registered here, COCO's are
detectron2's builtins). A dataset given with the flags whose names differ from the labels' is
refused with both lists. Works on a
CPU: a config that asks for CUDA on a machine without it runs on the CPU. The logic is in
``demo/predictor.py`` (imported as ``predictor``: a script's folder is on its ``sys.path``, as in
detectron2's demo).

Examples:
    python demo/demo.py --config-file configs/dw_R_18_FPN_synthetic_demo.yaml \\
        --input datasets/dw_synthetic/val/00000*.jpg --output output/demo_pictures \\
        --opts MODEL.WEIGHTS output/shapes_demo/model_final.pth
    python demo/demo.py --config-file configs/dw_R_50_FPN_1x.yaml --video-input street.mp4 \\
        --output street_dw.mp4 --opts MODEL.WEIGHTS converted.pth
    python demo/demo.py --config-file configs/dw_R_50_FPN_1x.yaml --input photos/*.jpg \\
        --register-voc my_val=VOC/Annotations --output drawn --opts MODEL.WEIGHTS my_model.pth
"""

import time

from detectron2.data.detection_utils import read_image
from PIL import Image

from dual_weighting.engine import (
    SetupError,
    parse_tool_args,
    register_datasets,
    tool_argument_parser,
)
from predictor import (
    DetectionDemo,
    demo_cfg,
    describe_detections,
    expand_inputs,
    label_names,
    output_path,
)


def parse_args(argv=None):
    parser = tool_argument_parser(__doc__, dataset_flags=True)
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
        help="lowest score drawn (also the model's MODEL.DW.SCORE_THRESH_TEST)",
    )
    return parse_tool_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    if args.video_input and not args.output:
        raise SystemExit("--video-input needs --output (a file or a folder)")
    try:
        register_datasets(args)
        cfg = demo_cfg(args.config_file, args.opts, args.confidence_threshold)
        flagged = [
            (spec.split("=", 1)[0].strip(), f"--register-{kind}")
            for kind in ("coco", "voc", "yolo")
            for spec in getattr(args, f"register_{kind}")
        ]
        class_names = label_names(cfg.MODEL.WEIGHTS, flagged)
    except (SetupError, ValueError, OSError) as e:
        raise SystemExit(f"demo/demo.py: error: {e}") from None
    demo = DetectionDemo(cfg, class_names)

    if args.video_input:
        start = time.perf_counter()
        frames, path = demo.run_on_video(args.video_input, args.output)
        print(
            f"{args.video_input}: {frames} frames in {time.perf_counter() - start:.1f} s -> {path}"
        )
        return [path]

    written = []
    files = expand_inputs(args.input)
    for path in files:
        bgr = read_image(path, format="BGR")
        start = time.perf_counter()
        instances, picture = demo.run_on_image(bgr)
        print(f"{path}: {len(instances)} detections in {time.perf_counter() - start:.2f} s")
        if args.output:
            try:
                out = output_path(args.output, path, len(files))
            except ValueError as e:
                raise SystemExit(str(e)) from None
            Image.fromarray(picture).save(out)
            written.append(out)
        elif len(instances):
            print(describe_detections(instances, demo.class_names))
    return written


if __name__ == "__main__":
    main()

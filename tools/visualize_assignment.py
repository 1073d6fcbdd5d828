#!/usr/bin/env python
"""Draw what Dual Weighting assigns to the anchor points of training images.

The model runs on each picked record as the trainer feeds it (test resize, no flip) and
``visualize.dw_assignment_maps`` takes the DW weights from the criterion the loss uses. One PNG
per image: per ground-truth box, the image with the box and its strongly positive points (the
fewest carrying ``--strong-mass`` of its positive weight, coloured by level), and per FPN level
the center prior, the positive weight and the negative weight of the box's class.

Examples:
    # A briefly trained demo model on the generated dataset's first training images:
    python tools/visualize_assignment.py --config-file configs/dw_R_18_FPN_synthetic_demo.yaml \\
        --indices 0 1 --output output/assignment \\
        --opts MODEL.WEIGHTS output/shapes_demo/model_final.pth
    # Any COCO-format dataset, random init:
    python tools/visualize_assignment.py --config-file configs/dw_R_50_FPN_1x.yaml \\
        --register-coco mine=ann.json:images/ --dataset mine --output out/ \\
        --opts MODEL.WEIGHTS "" MODEL.DEVICE cpu
"""

import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog

from dual_weighting.engine import (
    SetupError,
    load_tool_config,
    parse_tool_args,
    register_datasets,
    tool_argument_parser,
)
from visualize import (
    compute_assignment,
    describe_assignment,
    draw_assignment,
    load_model,
    pick_boxes,
    select_records,
    to_rgb,
    training_mapper,
)


def parse_args(argv=None):
    parser = tool_argument_parser(__doc__, dataset_flags=True)
    parser.add_argument(
        "--dataset", help="registered dataset name (default: the config's first DATASETS.TRAIN)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--indices", type=int, nargs="+", default=[0], help="records of the dataset to draw"
    )
    which.add_argument(
        "--images", nargs="+", metavar="FILE_NAME", help="records to draw, by image file name"
    )
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("--max-boxes", type=int, default=4, help="boxes drawn per image")
    parser.add_argument(
        "--strong-mass",
        type=float,
        default=0.5,
        help="strongly positive points: the fewest that carry this share of the positive weight",
    )
    parser.add_argument("--seed", type=int, default=0, help="random init when MODEL.WEIGHTS is ''")
    parser.add_argument("--dpi", type=int, default=90)
    return parse_tool_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    register_datasets(args)
    try:
        cfg = load_tool_config(args.config_file, args.opts)
    except SetupError as e:
        raise SystemExit(f"tools/visualize_assignment.py: error: {e}") from None
    dataset = args.dataset or cfg.DATASETS.TRAIN[0]
    records = DatasetCatalog.get(dataset)
    try:
        indices = select_records(records, args.indices, args.images)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    class_names = MetadataCatalog.get(dataset).get("thing_classes")
    model = load_model(cfg, args.seed)
    mapper = training_mapper(cfg)
    weights = cfg.MODEL.WEIGHTS or f"random init (seed {args.seed})"
    os.makedirs(args.output, exist_ok=True)

    written = []
    for index in indices:
        record = records[index]
        mapped = mapper(record)
        gt, mass = mapped["instances"], args.strong_mass
        assignment = compute_assignment(model, mapped)  # maps, level shapes, level strides
        boxes = pick_boxes(gt.gt_boxes.tensor, args.max_boxes)
        stem = Path(record["file_name"]).stem
        print(f"{dataset}[{index}] {record['file_name']}: {len(gt)} boxes, drawing {boxes}")
        if not boxes:
            print("  no box: nothing to draw")
            continue
        print(describe_assignment(*assignment, boxes, class_names, gt.gt_classes, mass))
        image = to_rgb(mapped["image"], cfg.INPUT.FORMAT)
        title = f"DW assignment: {dataset}[{index}] ({stem}), "
        title += f"{os.path.basename(args.config_file)}, weights: {weights}"
        fig = draw_assignment(
            image, gt.gt_boxes.tensor, gt.gt_classes, class_names, *assignment, boxes, mass, title
        )
        path = os.path.join(args.output, f"{stem}_assignment.png")
        fig.savefig(path, dpi=args.dpi)
        written.append(path)
        print(f"  wrote {path}")
    return written


if __name__ == "__main__":
    main()

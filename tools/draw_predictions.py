#!/usr/bin/env python
"""Draw a model's detections beside the ground truth of registered dataset images, one row per
image (detectron2's ``DefaultPredictor`` and ``Visualizer``; crowd regions are left out of the
ground truth, they are not objects to find).

Examples:
    # The tree-crown model (configs/dw_R_18_FPN_trees.yaml) on held-out tiles:
    python tools/draw_predictions.py --config-file configs/dw_R_18_FPN_trees.yaml \\
        --dataset deepforest_trees_val --indices 5 6 --output output/trees_predictions.png \\
        --opts MODEL.WEIGHTS output/trees/model_final.pth
"""

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor
from PIL import Image

from dual_weighting.engine import (
    SetupError,
    load_yacs_config,
    parse_tool_args,
    register_datasets,
    tool_argument_parser,
)
from visualize import predictions_beside_ground_truth


def main(argv=None):
    parser = tool_argument_parser(__doc__, dataset_flags=True)
    parser.add_argument("--dataset", required=True, help="a registered dataset name")
    parser.add_argument(
        "--indices", type=int, nargs="+", default=[0], help="record indices (default: 0)"
    )
    parser.add_argument("--score-thresh", type=float, default=0.3, help="lowest score drawn")
    parser.add_argument("--output", required=True, help="the PNG to write")
    args = parse_tool_args(parser, argv)
    try:
        register_datasets(args)
        cfg = load_yacs_config(args.config_file, args.opts)
        if args.dataset not in DatasetCatalog.list():
            raise SetupError(f"Dataset {args.dataset!r} is not registered")
        records = DatasetCatalog.get(args.dataset)
        bad = [i for i in args.indices if not 0 <= i < len(records)]
        if bad:
            raise SetupError(f"--indices {bad}: {args.dataset} has {len(records)} records")
    except (SetupError, ValueError, OSError) as e:
        parser.error(str(e))
    records, metadata = [records[i] for i in args.indices], MetadataCatalog.get(args.dataset)
    picture = predictions_beside_ground_truth(
        records, DefaultPredictor(cfg), metadata, args.score_thresh
    )
    Image.fromarray(picture).save(args.output)
    print(f"Predictions (right) beside ground truth (left): {args.output}")


if __name__ == "__main__":
    main()

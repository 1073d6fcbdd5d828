#!/usr/bin/env python
"""Download the DeepForest wheel (pip, no install) and convert its annotated aerial photographs to
the tiled COCO-format dataset ``deepforest_trees_train`` / ``deepforest_trees_val`` under
``$DETECTRON2_DATASETS/deepforest_trees`` (``tools/sample_data/trees.py`` says how).

    python tools/prepare_trees.py
    python tools/prepare_trees.py --root /data/deepforest_trees \\
        --source downloads/deepforest-2.1.0-py3-none-any.whl
"""

import argparse
import json

from PIL import Image

from dual_weighting.data.trees import TREES_SPLITS, default_trees_root
from sample_data.trees import convert_trees, download_trees_source, trees_source_path
from visualize import draw_tiled_source


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", help="dataset folder (default: $DETECTRON2_DATASETS/deepforest_trees)"
    )
    parser.add_argument("--source", help="the wheel (default: ROOT/source/, downloaded if missing)")
    parser.add_argument(
        "--draw",
        metavar="PNG",
        help="also draw the held-out image's tiles put back together, with their boxes "
        "(cyan) and crowd regions (red)",
    )
    args = parser.parse_args(argv)
    root = args.root or default_trees_root()
    source = download_trees_source(args.source or trees_source_path(root))
    summary = convert_trees(source, root)
    print(json.dumps(summary, indent=1))
    if args.draw:
        val = summary["val"]
        held_out = TREES_SPLITS["val"][0].replace(".xml", ".png")
        picture = draw_tiled_source(val["json_file"], val["image_root"], held_out)
        Image.fromarray(picture).save(args.draw)
        print(f"drew {args.draw}")
    return summary


if __name__ == "__main__":
    main()

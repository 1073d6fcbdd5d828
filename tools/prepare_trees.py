#!/usr/bin/env python
"""Download the DeepForest wheel (pip, no install) and convert its annotated aerial photographs to
the tiled COCO-format dataset ``deepforest_trees_train`` / ``deepforest_trees_val`` under
``$DETECTRON2_DATASETS/deepforest_trees`` (``dual_weighting.data.trees`` says how).

    python tools/prepare_trees.py
    python tools/prepare_trees.py --root /data/deepforest_trees \\
        --source downloads/deepforest-2.1.0-py3-none-any.whl
"""

import argparse
import json

from dual_weighting.data.trees import (
    convert_trees,
    default_trees_root,
    download_trees_source,
    trees_source_path,
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", help="dataset folder (default: $DETECTRON2_DATASETS/deepforest_trees)"
    )
    parser.add_argument("--source", help="the wheel (default: ROOT/source/, downloaded if missing)")
    args = parser.parse_args(argv)
    root = args.root or default_trees_root()
    source = download_trees_source(args.source or trees_source_path(root))
    summary = convert_trees(source, root)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()

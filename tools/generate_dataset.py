#!/usr/bin/env python
"""Write the synthetic shapes dataset in COCO's layout (see tools/sample_data/shapes.py).

Example:
    python tools/generate_dataset.py --output datasets/dw_synthetic --num-train 400 --num-val 100
"""

import argparse
import time

from sample_data.shapes import generate_synthetic_coco


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="datasets/dw_synthetic", help="dataset folder")
    parser.add_argument("--num-train", type=int, default=400, help="training images")
    parser.add_argument("--num-val", type=int, default=100, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    parser.add_argument(
        "--image-size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"), help="in px"
    )
    parser.add_argument(
        "--objects-per-image",
        type=int,
        nargs=2,
        default=(2, 8),
        metavar=("MIN", "MAX"),
        help="objects tried per image (a few may not fit)",
    )
    parser.add_argument(
        "--min-visibility",
        type=float,
        default=0.5,
        help="objects less visible than this fraction are not annotated",
    )
    parser.add_argument("--image-format", choices=("jpg", "png"), default="jpg")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    # Every option but --output is a keyword argument of generate_synthetic_coco.
    kwargs = {k: v for k, v in vars(args).items() if k != "output"}
    result = generate_synthetic_coco(args.output, **kwargs)
    elapsed = time.perf_counter() - start
    for split in ("train", "val"):
        info = result[split]
        print(
            f"{split}: {info['num_images']} images in {info['image_root']}, "
            f"{info['num_annotations']} annotations in {info['json_file']}"
        )
    print(f"classes: {', '.join(c['name'] for c in result['categories'])}")
    print(f"done in {elapsed:.1f} s")


if __name__ == "__main__":
    main()

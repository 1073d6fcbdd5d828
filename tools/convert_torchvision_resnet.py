#!/usr/bin/env python
"""Convert a torchvision ResNet checkpoint to a detectron2 checkpoint for the DW backbone.

The name mapping and the output format: ``dual_weighting/checkpoint/torchvision_resnet.py``.
``.pkl`` output is detectron2's model-zoo format; ``--prefix ""`` writes short names that
detectron2 matches by suffix into any ResNet-based model.

Usage:
    python tools/convert_torchvision_resnet.py resnet50-11ad3fa6.pth R-50-torchvision.pkl
"""

import argparse
import sys

from dual_weighting.checkpoint import (
    convert_torchvision_resnet,
    load_torchvision_state_dict,
    save_detectron2_checkpoint,
)
from dual_weighting.checkpoint.torchvision_resnet import DEFAULT_PREFIX


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a torchvision ResNet checkpoint (raw state dict, or a dict with "
        "'state_dict'/'model') to a detectron2 checkpoint for MODEL.WEIGHTS."
    )
    parser.add_argument("input", help="torchvision checkpoint, e.g. resnet50-11ad3fa6.pth")
    parser.add_argument(
        "output", help="detectron2 checkpoint: .pkl (pickle of numpy arrays) or .pth/.pt"
    )
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"prepended to detectron2 names (default {DEFAULT_PREFIX!r}); '' writes short "
        "names loaded with detectron2's matching heuristics",
    )
    args = parser.parse_args(argv)
    try:
        state_dict = load_torchvision_state_dict(args.input)
        model = convert_torchvision_resnet(state_dict, args.prefix)
    except ValueError as e:
        parser.exit(1, f"error: {args.input}: {e}\n")
    save_detectron2_checkpoint(model, args.output, args.prefix)
    print(f"Wrote {len(model)} tensors to {args.output}")


if __name__ == "__main__":
    sys.exit(main())

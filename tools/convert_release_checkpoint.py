#!/usr/bin/env python
"""Convert a checkpoint of the authors' DW release (MMDetection 2.x) to a detectron2 checkpoint.

Each release file goes with one config of this project (the table, and the name mapping, are in
``dual_weighting/checkpoint/release.py``); the converted names must fit that config's model
exactly, or the tool stops and lists what is missing, unexpected or mis-shaped.

Usage:
    python tools/convert_release_checkpoint.py dw_r50_1x.pth dw_R_50_FPN_refine_1x.pth \\
        --config-file configs/dw_R_50_FPN_refine_1x.yaml
    python train_net.py --config-file configs/dw_R_50_FPN_refine_1x.yaml --eval-only \\
        MODEL.WEIGHTS dw_R_50_FPN_refine_1x.pth
"""

import argparse
import sys

from dual_weighting.checkpoint import (
    convert_for_config,
    load_release_state_dict,
    save_converted_release,
)
from dual_weighting.engine import load_yacs_config


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a DW release checkpoint (MMDetection 2.x) to a detectron2 "
        "checkpoint for the matching config.",
        epilog="Release file -> config pairs and the name mapping: see the docstring of\n"
        "dual_weighting/checkpoint/release.py (python -m pydoc dual_weighting.checkpoint.release)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input",
        help="release checkpoint, in MMDetection's format ({'meta', 'state_dict'}) or a raw "
        "state dict",
    )
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth)")
    parser.add_argument("--config-file", required=True, help="config the checkpoint is for")
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="read the input with torch.load(weights_only=False): only for trusted files whose "
        "'meta' holds objects that weights_only refuses",
    )
    parser.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[], help="config overrides, KEY VALUE pairs"
    )
    args = parser.parse_args(argv)
    # Converted on the CPU: the model is built only for its names and shapes.
    cfg = load_yacs_config(args.config_file, [*args.opts, "MODEL.DEVICE", "cpu"])
    try:
        model = convert_for_config(load_release_state_dict(args.input, args.unsafe_load), cfg)
    except ValueError as e:
        parser.exit(1, f"error: {args.input}: {e}\n")
    save_converted_release(model, args.output)
    print(f"Wrote {len(model)} tensors for {args.config_file} to {args.output}")


if __name__ == "__main__":
    sys.exit(main())

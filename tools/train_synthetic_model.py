#!/usr/bin/env python
"""Train and evaluate a small DW-FCOS from scratch on the generated shapes dataset, and draw its
predictions beside the ground truth: the job behind ``make demo`` (the target keeps its name;
``demo/demo.py``, detectron2's kind of demo, runs a trained model on any images or video).

1. Generates the shapes dataset under ``$DETECTRON2_DATASETS/dw_synthetic`` if it is absent.
2. Trains ``configs/dw_R_18_FPN_synthetic_demo.yaml`` on CPU with ``train_net.py`` (detectron2's
   trainer: ETA logging, checkpoints, ``metrics.json``), resuming if a run was interrupted, and
   evaluates on the validation split (COCO AP table).
3. Writes ``predictions.png``: validation images with ground truth (left) and predictions
   (right).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor
from PIL import Image

from dual_weighting.data import default_synthetic_root
from dual_weighting.engine import load_yacs_config
from sample_data.shapes import ensure_synthetic
from visualize import predictions_beside_ground_truth

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "dw_R_18_FPN_synthetic_demo.yaml"


def last_bbox_metrics(output_dir):
    """The last COCO box metrics that detectron2 wrote to ``metrics.json``."""
    metrics = {}
    for line in (Path(output_dir) / "metrics.json").read_text().splitlines():
        record = json.loads(line)
        if "bbox/AP" in record:
            metrics = {k[5:]: v for k, v in record.items() if k.startswith("bbox/")}
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=str(REPO / "output" / "demo"))
    parser.add_argument("--num-images", type=int, default=4, help="images in predictions.png")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE")
    args = parser.parse_args(argv)

    root = default_synthetic_root()
    print(f"Dataset: {root} (generated if absent)", flush=True)
    ensure_synthetic(root)

    overrides = ["OUTPUT_DIR", args.output_dir, *args.opts]
    subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", str(CONFIG), "--resume",
         *overrides],
        check=True,
    )  # fmt: skip

    weights = str(Path(args.output_dir) / "model_final.pth")
    cfg = load_yacs_config(str(CONFIG), [*overrides, "MODEL.WEIGHTS", weights])
    val_name = cfg.DATASETS.TEST[0]
    picture = predictions_beside_ground_truth(
        DatasetCatalog.get(val_name)[: args.num_images],
        DefaultPredictor(cfg),
        MetadataCatalog.get(val_name),
    )
    png = Path(args.output_dir) / "predictions.png"
    Image.fromarray(picture).save(png)

    metrics = last_bbox_metrics(args.output_dir)
    print("\nDW-FCOS R-18-FPN on the generated validation split (COCO box AP, %):")
    print("  ".join(f"{k}={metrics[k]:.1f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")))
    print(f"Predictions (right) beside ground truth (left): {png}")


if __name__ == "__main__":
    main()

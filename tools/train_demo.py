#!/usr/bin/env python
"""Fine-tune the ImageNet-initialised DW-FCOS (EfficientNet-Lite0-FPN) on the tree-crown
photographs, evaluate it on the held-out image and draw its predictions beside the ground truth:
the job behind ``make demo``. With ``--config-file configs/dw_R_18_FPN_synthetic_demo.yaml`` (``make
demo-shapes``) it trains the small from-scratch model on the generated shapes instead, generating
them first.

Training runs ``train_net.py`` (resuming an interrupted run); ``predictions.png`` shows the
held-out tiles with the most objects. Needs ``pretrained/tf_efficientnet_lite0.pth`` and the tree
crowns (``make trees``); ``make demo`` makes both first.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor
from PIL import Image

from dual_weighting.data import register_trees
from dual_weighting.engine import load_yacs_config
from sample_data.shapes import ensure_synthetic
from visualize import predictions_beside_ground_truth

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "trees" / "dw_fcos_Lite0_FPN.yaml"
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=str(CONFIG))
    parser.add_argument("--output-dir", default=str(REPO / "output" / "demo"))
    parser.add_argument(
        "--num-images", type=int, default=2, help="tiles in predictions.png, most crowns first"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    overrides = ["OUTPUT_DIR", args.output_dir, *args.opts]
    datasets = load_yacs_config(args.config_file, overrides).DATASETS
    if any(n.startswith("dw_synthetic_") for n in (*datasets.TRAIN, *datasets.TEST)):
        print("Generating the shapes dataset if absent", flush=True)
        ensure_synthetic()
    subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", args.config_file,
         "--resume", *overrides],
        check=True,
        cwd=REPO,
    )  # fmt: skip

    register_trees()
    weights = str(Path(args.output_dir) / "model_final.pth")
    cfg = load_yacs_config(args.config_file, [*overrides, "MODEL.WEIGHTS", weights])
    val_name = cfg.DATASETS.TEST[0]
    # The held-out tiles with the most objects: edge tiles are mostly padding.
    records = sorted(DatasetCatalog.get(val_name), key=lambda r: -len(r["annotations"]))
    predictor, metadata = DefaultPredictor(cfg), MetadataCatalog.get(val_name)
    picture = predictions_beside_ground_truth(records[: args.num_images], predictor, metadata)
    png = Path(args.output_dir) / "predictions.png"
    Image.fromarray(picture).save(png)

    metrics = {}  # the last COCO box metrics of metrics.json
    for line in (Path(args.output_dir) / "metrics.json").read_text().splitlines():
        record = json.loads(line)
        if "bbox/AP" in record:
            metrics = {k[5:]: v for k, v in record.items() if k.startswith("bbox/")}
    print(f"\n{Path(args.config_file).name} on {val_name} (COCO box AP, %):")
    print("  ".join(f"{k}={metrics[k]:.1f}" for k in METRICS))
    print(f"Predictions (right) beside ground truth (left): {png}")
    print(f"Wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

"""`make demo`'s job (tools/train_demo.py) as a user runs it, made short: it fine-tunes the
pretrained DW-FCOS on the tree crowns, evaluates on the held-out image, prints the COCO numbers
and draws predictions beside ground truth; run again, it resumes instead of training anew."""

import re

import numpy as np
import pytest
from PIL import Image
from train_demo import METRICS, main

SHORT = [
    "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "()", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96", "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip


@pytest.mark.slow
def test_demo_trains_evaluates_draws_and_resumes(tmp_path, capsys):
    main(["--output-dir", str(tmp_path), "--num-images", "2", *SHORT])
    printed = capsys.readouterr().out
    numbers = re.search(r"  ".join(rf"{m}=(\S+)" for m in METRICS), printed)
    assert numbers, printed
    assert all(0.0 <= float(v) <= 100.0 for v in numbers.groups())
    picture = np.asarray(Image.open(tmp_path / "predictions.png"))
    # Two held-out 400 px tiles, ground truth and predictions side by side, 8 px gaps.
    assert picture.shape == (2 * (400 + 8), 400 + 8 + 400, 3)
    checkpoint_time = (tmp_path / "model_final.pth").stat().st_mtime
    main(["--output-dir", str(tmp_path), "--num-images", "1", *SHORT])
    assert (tmp_path / "model_final.pth").stat().st_mtime == checkpoint_time

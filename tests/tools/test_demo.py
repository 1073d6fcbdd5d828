"""``demo/demo.py`` run as users run it on tiny generated images, and its predictor
(``demo/predictor.py``, imported as ``predictor`` as demo.py does): videos and where drawings are
written."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import DEMO_CONFIG, REPO
from PIL import Image

from dual_weighting.data import CLASS_NAMES
from dual_weighting.engine import SetupError
from predictor import DetectionDemo, demo_cfg, output_path, video_output_path

CONFIG = str(DEMO_CONFIG)
# Small inputs: the generated 64 x 96 images are fed at their own size.
SMALL = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]
# A few detections at threshold 0 (random init scores ~0.01): drawing 100 labels is slow.
FEW = ["TEST.DETECTIONS_PER_IMAGE", "3"]


@pytest.fixture(scope="module")
def val_images(tiny_shapes):
    """Folder of one generated 64 x 96 validation image, ``000001.jpg``."""
    return Path(tiny_shapes["val"]["image_root"])


def run_demo(*args):
    """``demo/demo.py --config-file CONFIG ARGS --confidence-threshold 0 --opts SMALL FEW``."""
    proc = subprocess.run(
        [sys.executable, "demo/demo.py", "--config-file", CONFIG, *args,
         "--confidence-threshold", "0", "--opts", *SMALL, *FEW],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_demo_draws_detections_at_the_input_size(val_images, tmp_path):
    image = val_images / "000001.jpg"
    out = tmp_path / "drawn.png"
    printed = run_demo("--input", str(image), "--output", str(out))
    assert printed.startswith(f"{image}: 3 detections in ")
    source, drawn = Image.open(image).convert("RGB"), Image.open(out)
    assert drawn.size == source.size
    # Boxes and labels were drawn over the image.
    assert np.abs(np.asarray(drawn, np.int16)[..., :3] - np.asarray(source, np.int16)).mean() > 5


def test_demo_prints_detections_with_class_names(val_images):
    lines = run_demo("--input", str(val_images / "*.jpg")).splitlines()
    assert "detections" in lines[0]
    assert lines[1:] and all(line.split()[0] in CLASS_NAMES for line in lines[1:])


def test_demo_video(tmp_path):
    cv2 = pytest.importorskip("cv2")
    video = str(tmp_path / "tiny.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (96, 64))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()

    demo = DetectionDemo(demo_cfg(CONFIG, [*SMALL, *FEW], confidence_threshold=0.0))
    count, path = demo.run_on_video(video, str(tmp_path / "out"))
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert path == str(tmp_path / "out" / "tiny.mp4")
    assert count == len(frames) == 3 and frames[0].shape == (64, 96, 3)


def test_demo_output_is_the_named_file_or_a_file_per_input_in_the_folder(tmp_path):
    assert output_path(str(tmp_path / "a.png"), "x/in.jpg", 1) == str(tmp_path / "a.png")
    assert output_path(str(tmp_path / "pics"), "x/in.jpg", 2) == str(tmp_path / "pics" / "in.jpg")
    assert (tmp_path / "pics").is_dir()
    with pytest.raises(ValueError, match="names a file, but there are 2 inputs"):
        output_path(str(tmp_path / "a.png"), "x/in.jpg", 2)

    assert video_output_path(str(tmp_path / "v.mp4"), "x/clip.avi") == str(tmp_path / "v.mp4")
    assert video_output_path(str(tmp_path / "videos"), "x/clip.avi") == str(
        tmp_path / "videos" / "clip.mp4"
    )
    assert (tmp_path / "videos").is_dir()


def test_lazy_config_is_refused_with_its_yaml_twin_named():
    lazy = str(REPO / "configs" / "lazy" / "dw_R_18_FPN_synthetic_demo.py")
    with pytest.raises(SetupError, match=r"LazyConfig.*dw_R_18_FPN_synthetic_demo\.yaml"):
        demo_cfg(lazy)

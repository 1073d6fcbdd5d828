"""The release's test-time resize (INPUT.RELEASE_RESIZE_TEST): mmcv's output size, OpenCV's
bilinear interpolation, and DWTrainer's test loader using them."""

import contextlib
import itertools

import cv2
import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.transforms import ResizeShortestEdge, ResizeTransform
from PIL import Image

from dual_weighting import add_dw_config
from dual_weighting.data import (
    OpenCVResizeTransform,
    ReleaseResizeShortestEdge,
    build_test_augmentation,
    build_train_augmentation,
    release_resize_shape,
)
from dual_weighting.engine import DWTrainer


@pytest.mark.parametrize(
    "size,release,detectron2",
    [
        # COCO's usual 640 x 480: 640 * 800 / 480 = 1066.67 -> 1067 in both.
        ((480, 640), (800, 1067), (800, 1067)),
        ((1000, 1000), (800, 800), (800, 800)),
        # Longer side capped: mmcv scales once by min(1333 / 62, 800 / 3) = 21.5, and
        # 3 * 21.5 + 0.5 = 65; detectron2 scales by 800 / 3, then by 1333 / 16533.3, and its
        # 64.49999... rounds to 64.
        ((3, 62), (65, 1333), (64, 1333)),
        ((6, 124), (65, 1333), (64, 1333)),
    ],
)
def test_release_resize_size_differs_from_detectron2s_where_mmcv_rounds(size, release, detectron2):
    assert release_resize_shape(*size, 800, 1333) == release
    assert ResizeShortestEdge.get_output_shape(*size, 800, 1333) == detectron2


def exact_bilinear(image, new_h, new_w):
    """Float bilinear resize with half-pixel centres and edge clamping (no antialiasing), the
    sampling of OpenCV's INTER_LINEAR, per channel."""
    h, w = image.shape[:2]

    def taps(new, old):
        src = np.clip((np.arange(new) + 0.5) * old / new - 0.5, 0, old - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, old - 1)
        return lo, hi, src - lo

    y0, y1, fy = taps(new_h, h)
    x0, x1, fx = taps(new_w, w)
    img = image.astype(np.float64)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


@pytest.mark.parametrize("new_size", [(91, 67), (13, 9)], ids=["up", "down"])
def test_resize_is_opencv_bilinear_not_pil(new_size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    ours = OpenCVResizeTransform(40, 30, *new_size).apply_image(image)
    assert ours.shape == (*new_size, 3) and ours.dtype == np.uint8
    # OpenCV's fixed-point arithmetic stays within one grey level of exact bilinear.
    assert np.abs(ours - exact_bilinear(image, *new_size)).max() <= 1.0
    pil = ResizeTransform(40, 30, *new_size).apply_image(image)
    gap = np.abs(ours.astype(int) - pil).max()
    # Upscaling: PIL rounds between its two passes (1 level apart); downscaling: PIL averages
    # over the whole footprint (antialiasing), far from 2-tap bilinear on noise.
    assert gap == 1 if new_size[0] > 40 else gap > 20
    # A single-channel image keeps its channel axis, as detectron2's transform does.
    gray = OpenCVResizeTransform(40, 30, *new_size).apply_image(image[:, :, :1])
    np.testing.assert_array_equal(gray[:, :, 0], ours[:, :, 0])


def test_release_resize_refuses_bad_sizes_and_caps_the_longer_side():
    with pytest.raises(ValueError, match=r"positive sizes, got shorter side \(0, 0\)"):
        ReleaseResizeShortestEdge(0, 1333)
    with pytest.raises(ValueError, match="'range' takes \\(min, max\\) sizes"):
        ReleaseResizeShortestEdge((480, 640, 800), 1333, "range")
    with pytest.raises(ValueError, match="sample_style must be"):
        ReleaseResizeShortestEdge(800, 1333, "value")
    transform = ReleaseResizeShortestEdge(800, 1333).get_transform(np.zeros((6, 124, 3), np.uint8))
    assert (transform.new_h, transform.new_w) == (65, 1333)
    with pytest.raises(ValueError, match="expected an image of"):
        transform.apply_image(np.zeros((7, 124, 3), np.uint8))


def _cfg(release):
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.INPUT.RELEASE_RESIZE_TEST = release
    cfg.INPUT.FORMAT = "RGB"  # as in Base-DW.yaml
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


@contextlib.contextmanager
def one_image_dataset(tmp_path, name, shape, seed, annotations=None):
    """A registered dataset of one random image of ``shape`` (saved as PNG), removed on exit.

    Yields:
        (H, W, 3) uint8, the image.
    """
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / f"{name}.png"
    Image.fromarray(image).save(path)
    record = {"file_name": str(path), "height": shape[0], "width": shape[1], "image_id": 0}
    if annotations is not None:
        record["annotations"] = annotations
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).thing_classes = ["thing"]
    try:
        yield image
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_trainer_test_loader_follows_the_option(tmp_path):
    name = "dw_test_release_resize"
    with one_image_dataset(tmp_path, name, (6, 124, 3), seed=1) as image:
        images = {}
        for release in (True, False):
            cfg = _cfg(release)
            assert type(build_test_augmentation(cfg)[0]) is (
                ReleaseResizeShortestEdge if release else ResizeShortestEdge
            )
            (batch,) = itertools.islice(DWTrainer.build_test_loader(cfg, name), 1)
            assert (batch[0]["height"], batch[0]["width"]) == (6, 124)
            images[release] = batch[0]["image"].permute(1, 2, 0).numpy()
    # mmcv's imrescale: its size rule, then cv2.resize(img, (w, h), INTER_LINEAR).
    expected = cv2.resize(image, (1333, 65), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(images[True], expected)
    assert images[False].shape == (64, 1333, 3)


def test_training_sizes_are_drawn_as_detectron2_and_mmdetection_draw_them():
    image = np.zeros((480, 640, 3), np.uint8)
    np.random.seed(0)
    ranged = ReleaseResizeShortestEdge((480, 960), 1333, "range")
    shorts = {ranged.get_transform(image).new_h for _ in range(3000)}
    # Every integer shorter side from 480 to 960 inclusive (a 640-wide image stays under 1333).
    assert shorts == set(range(480, 961))
    chosen = ReleaseResizeShortestEdge((640, 800), 1333, "choice")
    assert {chosen.get_transform(image).new_h for _ in range(200)} == {640, 800}
    # The same attributes as detectron2's augmentation, so that configs can swap the two.
    theirs = ResizeShortestEdge((480, 960), 1333, "range")
    for key in ("short_edge_length", "max_size", "sample_style", "is_range"):
        assert getattr(ranged, key) == getattr(theirs, key), key


def test_training_boxes_scale_in_float32_as_mmdetection():
    transform = ReleaseResizeShortestEdge(800, 1333).get_transform(np.zeros((480, 640), np.uint8))
    assert (transform.new_h, transform.new_w) == (800, 1067)
    boxes = np.array([[10.3, 20.7, 333.1, 479.9], [0.0, 0.0, 640.0, 480.0]])
    # MMDetection: float32 boxes times its float32 scale_factor (w, h, w, h) = new / old.
    factor = np.array([1067 / 640, 800 / 480, 1067 / 640, 800 / 480], dtype=np.float32)
    expected = boxes.astype(np.float32) * factor
    got = transform.apply_box(boxes)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    # detectron2's float64 product, rounded once to float32, differs in the last bit for most
    # coordinates here, so the test tells the two apart.
    corners = np.random.default_rng(0).uniform(0, 240, (100, 4))
    many = np.concatenate([corners[:, :2], corners[:, :2] + corners[:, 2:]], axis=1)
    release = many.astype(np.float32) * factor
    np.testing.assert_array_equal(transform.apply_box(many), release)
    theirs = ResizeTransform(480, 640, 800, 1067).apply_box(many).astype(np.float32)
    assert (theirs != release).sum() > 100


def test_trainer_train_loader_follows_the_option(tmp_path):
    name = "dw_train_release_resize"
    box = [10.3, 20.7, 30.1, 25.9]  # XYWH
    annotations = [{"bbox": box, "bbox_mode": 1, "category_id": 0}]
    with one_image_dataset(tmp_path, name, (60, 80, 3), seed=2, annotations=annotations) as image:
        cfg = _cfg(False)
        cfg.merge_from_list([
            "DATASETS.TRAIN", f"('{name}',)", "SOLVER.IMS_PER_BATCH", "1",
            "INPUT.MIN_SIZE_TRAIN", "(90,)", "INPUT.MAX_SIZE_TRAIN", "1333",
            "INPUT.RANDOM_FLIP", "none", "INPUT.RELEASE_RESIZE_TRAIN", "True",
        ])  # fmt: skip
        augs = build_train_augmentation(cfg)
        assert [type(a) for a in augs] == [ReleaseResizeShortestEdge]
        (batch,) = itertools.islice(DWTrainer.build_train_loader(cfg), 1)
        cfg.INPUT.CROP.ENABLED = True
        with pytest.raises(ValueError, match="no random crop"):
            build_train_augmentation(cfg)
        cfg.INPUT.RELEASE_RESIZE_TRAIN = False
        assert type(build_train_augmentation(cfg)[0]) is ResizeShortestEdge
    expected = cv2.resize(image, (120, 90), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(batch[0]["image"].permute(1, 2, 0).numpy(), expected)
    x, y, w, h = box
    scale = np.float32(120 / 80), np.float32(90 / 60)
    xyxy = np.array([x, y, x + w, y + h], dtype=np.float32) * np.array(scale * 2, np.float32)
    np.testing.assert_array_equal(batch[0]["instances"].gt_boxes.tensor[0].numpy(), xyxy)

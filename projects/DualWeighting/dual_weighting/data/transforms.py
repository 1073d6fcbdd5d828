"""The release's resize (MMDetection 2.x ``Resize(keep_ratio=True)``) as a detectron2
augmentation: OpenCV's ``INTER_LINEAR`` instead of PIL's bilinear, mmcv's output size, and boxes
scaled by float32 factors (docs/RELEASE_DIFFERENCES.md).
"""

import cv2
import numpy as np
from detectron2.data import detection_utils
from detectron2.data.transforms import Augmentation, ResizeTransform

__all__ = [
    "OpenCVResizeTransform",
    "ReleaseResizeShortestEdge",
    "build_test_augmentation",
    "build_train_augmentation",
    "release_resize_shape",
]


def release_resize_shape(height, width, short, max_size):
    """(new_height, new_width) of mmcv's ``rescale_size`` for ``img_scale=(max_size, short)``."""
    scale = min(max_size / max(height, width), short / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


class OpenCVResizeTransform(ResizeTransform):
    """detectron2's ``ResizeTransform`` (same coordinates, inverse and sizes) whose image resize
    is OpenCV's bilinear ``INTER_LINEAR``, as mmcv's ``imresize`` does, for any dtype."""

    def __init__(self, h, w, new_h, new_w):
        super().__init__(h, w, new_h, new_w)

    def apply_image(self, img, interp=None):
        """(H, W) or (H, W, C) image -> (new_h, new_w[, C]), same dtype."""
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"expected an image of {(self.h, self.w)}, got {img.shape[:2]}")
        out = cv2.resize(
            np.ascontiguousarray(img), (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR
        )
        # OpenCV drops a trailing channel axis of length 1.
        return out.reshape(self.new_h, self.new_w, *img.shape[2:])

    def apply_coords(self, coords):
        """(N, 2) x, y -> float32, times ``float32(new / old)`` per axis in float32, as
        MMDetection's ``Resize`` scales its float32 boxes by its ``scale_factor``."""
        coords = np.asarray(coords, dtype=np.float32).copy()
        coords[:, 0] *= np.float32(self.new_w / self.w)
        coords[:, 1] *= np.float32(self.new_h / self.h)
        return coords


class ReleaseResizeShortestEdge(Augmentation):
    """The release's resize (:func:`release_resize_shape`, :class:`OpenCVResizeTransform`), with
    the arguments and attributes of detectron2's ``ResizeShortestEdge``."""

    def __init__(self, short_edge_length, max_size, sample_style="range"):
        """``sample_style`` ``"range"`` draws the shorter side among the integers from
        ``short_edge_length[0]`` to ``[1]``, ``"choice"`` one of them; pixels."""
        super().__init__()
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        short_edge_length = tuple(int(s) for s in short_edge_length)
        if sample_style not in ("range", "choice"):
            raise ValueError(f"sample_style must be 'range' or 'choice', got {sample_style!r}")
        if sample_style == "range" and len(short_edge_length) != 2:
            raise ValueError(
                f"sample_style 'range' takes (min, max) sizes, got {short_edge_length}"
            )
        if min(short_edge_length) <= 0 or max_size <= 0:
            raise ValueError(
                f"The release's resize needs positive sizes, got shorter side "
                f"{short_edge_length} and max_size {max_size} (INPUT.MIN_SIZE_* / MAX_SIZE_*)"
            )
        is_range = sample_style == "range"
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        if self.is_range:
            short = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            short = np.random.choice(self.short_edge_length)
        return OpenCVResizeTransform(h, w, *release_resize_shape(h, w, short, self.max_size))


def build_test_augmentation(cfg):
    """The test-time augmentation of ``cfg``: the release's resize when
    ``INPUT.RELEASE_RESIZE_TEST`` is on, else detectron2's (``ResizeShortestEdge``, PIL)."""
    if cfg.INPUT.RELEASE_RESIZE_TEST:
        return [ReleaseResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
    return detection_utils.build_augmentation(cfg, is_train=False)


def build_train_augmentation(cfg):
    """detectron2's training augmentations of ``cfg``, the resize the release's with
    ``INPUT.RELEASE_RESIZE_TRAIN`` (which refuses ``INPUT.CROP.ENABLED``: the release has none)."""
    augmentations = detection_utils.build_augmentation(cfg, is_train=True)
    if not cfg.INPUT.RELEASE_RESIZE_TRAIN:
        return augmentations
    if cfg.INPUT.CROP.ENABLED:
        raise ValueError(
            "INPUT.RELEASE_RESIZE_TRAIN reproduces the release's pipeline, which has no random "
            "crop: turn INPUT.CROP.ENABLED off, or INPUT.RELEASE_RESIZE_TRAIN"
        )
    augmentations[0] = ReleaseResizeShortestEdge(
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    )
    return augmentations

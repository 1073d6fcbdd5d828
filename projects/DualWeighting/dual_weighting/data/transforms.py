"""The release's test-time resize (MMDetection 2.x ``Resize(keep_ratio=True)`` through mmcv), as a
detectron2 augmentation, for evaluating converted release checkpoints exactly.

detectron2's ``ResizeShortestEdge`` and the release agree on the target (shorter side to
``short``, longer side at most ``max_size``) but differ in two measurable ways
(docs/RELEASE_DIFFERENCES.md):

- interpolation: detectron2 resizes uint8 images with PIL's bilinear filter, the release with
  OpenCV's ``INTER_LINEAR`` (fixed-point, half-pixel centres, no antialiasing): upscaled COCO
  images differ by 1 grey level in about 20% of their values;
- output size: detectron2 rescales twice when the longer side is capped and rounds the result,
  mmcv takes ``scale = min(max_size / long, short / short_side)`` once and rounds
  ``int(side * scale + 0.5)``; 476 of the 2.56 million sizes up to 1600 x 1600 get a size one
  pixel apart (none with a 640-pixel longer side, COCO's usual).
"""

import cv2
import numpy as np
from detectron2.data import detection_utils
from detectron2.data.transforms import Augmentation, ResizeTransform

__all__ = [
    "OpenCVResizeTransform",
    "ReleaseResizeShortestEdge",
    "build_test_augmentation",
    "release_resize_shape",
]


def release_resize_shape(height, width, short, max_size):
    """mmcv's ``rescale_size`` for ``img_scale=(max_size, short)``, ``keep_ratio=True``.

    Returns:
        (new_height, new_width) in pixels.
    """
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


class ReleaseResizeShortestEdge(Augmentation):
    """Resize to the shorter side ``short`` with the longer side at most ``max_size``, as the
    release's test pipeline: mmcv's output size (:func:`release_resize_shape`) and OpenCV's
    bilinear resize (:class:`OpenCVResizeTransform`)."""

    def __init__(self, short, max_size):
        """
        Args:
            short: target of the shorter side, pixels (``INPUT.MIN_SIZE_TEST``).
            max_size: cap of the longer side, pixels (``INPUT.MAX_SIZE_TEST``).
        """
        super().__init__()
        if short <= 0 or max_size <= 0:
            raise ValueError(
                f"The release's resize needs positive sizes, got INPUT.MIN_SIZE_TEST={short} "
                f"and INPUT.MAX_SIZE_TEST={max_size}"
            )
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        return OpenCVResizeTransform(h, w, *release_resize_shape(h, w, self.short, self.max_size))


def build_test_augmentation(cfg):
    """The test-time augmentation of ``cfg``: the release's resize when
    ``INPUT.RELEASE_TEST_RESIZE`` is on, else detectron2's (``ResizeShortestEdge``, PIL)."""
    if cfg.INPUT.RELEASE_TEST_RESIZE:
        return [ReleaseResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
    return detection_utils.build_augmentation(cfg, is_train=False)

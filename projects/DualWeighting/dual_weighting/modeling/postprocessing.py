"""Post-processing of the authors' release, beside detectron2's ``detector_postprocess``.

detectron2 runs the NMS on boxes of the resized image and then rescales them to the original
image, clips them again and drops empty ones (``detector_postprocess``). The release rescales
first, by the float32 factors MMDetection stores, and runs the NMS on original-image
coordinates, without a second clip, keeping empty boxes. The anisotropic rescale changes IoUs,
so the order decides which boxes survive the NMS.
"""

import numpy as np
import torch
from detectron2.structures import Boxes, Instances

__all__ = ["release_rescale"]


def release_rescale(results: Instances, output_height: int, output_width: int) -> Instances:
    """``results`` of the resized image with its boxes divided by the release's resize factors,
    ``float32(new_w / old_w)`` and ``float32(new_h / old_h)`` (mmcv's ``imresize`` scales, which
    MMDetection stores as a float32 ``scale_factor``).

    Args:
        results: Instances of ``image_size = (new_h, new_w)`` with ``pred_boxes`` (R, 4) XYXY in
            its pixels, ``scores`` (R,) and ``pred_classes`` (R,).
        output_height, output_width: the original image's size (old_h, old_w).

    Returns:
        Instances of ``image_size = (output_height, output_width)``, same fields, boxes in
        original-image pixels (float32), not clipped again.
    """
    (new_h, new_w), (old_h, old_w) = results.image_size, (output_height, output_width)
    w_scale, h_scale = np.float32(new_w / old_w), np.float32(new_h / old_h)
    boxes = results.pred_boxes.tensor
    factors = torch.tensor([w_scale, h_scale, w_scale, h_scale], dtype=torch.float32)
    rescaled = Instances((int(old_h), int(old_w)))
    rescaled.pred_boxes = Boxes(boxes / factors.to(boxes))
    rescaled.scores = results.scores
    rescaled.pred_classes = results.pred_classes
    return rescaled

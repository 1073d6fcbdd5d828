"""Post-processing of the authors' release. detectron2 rescales boxes to the original image
after the NMS, clips them again and drops empty ones (``detector_postprocess``); the release
rescales first, by MMDetection's float32 factors, and keeps them. The anisotropic rescale changes
IoUs, so the order decides which boxes survive the NMS.
"""

import numpy as np
import torch
from detectron2.structures import Boxes, Instances

__all__ = ["release_rescale"]


def release_rescale(results: Instances, output_height: int, output_width: int) -> Instances:
    """``results`` (Instances of the resized image (new_h, new_w) with ``pred_boxes`` (R, 4),
    ``scores`` and ``pred_classes``) as Instances of ``(output_height, output_width)``, the
    boxes divided by ``float32(new_w / old_w)`` and ``float32(new_h / old_h)`` (MMDetection's
    ``scale_factor``), not clipped again.
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

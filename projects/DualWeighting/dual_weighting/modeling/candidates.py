"""DW's candidates from a detectron2 anchor generator: where each candidate sits, the stride of
its level, and the box each one predicts. Shared by every detector that trains with
:class:`~.criterion.DWCriterion` (DWFCOS, DWLossFCOS, DWRetinaNet, DWRPN).

Shapes: N images, L levels, P candidates over all levels (finest level first, each level in
its anchor generator's order).
"""

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes

__all__ = ["candidate_centers", "decode_per_candidate"]


def candidate_centers(anchors: list[Boxes], strides: list[int]):
    """Centres of the anchors of all levels and the stride of each one's level.

    Args:
        anchors: L Boxes (P_l, 4), XYXY pixels of the padded input (an anchor generator's
            output; FCOS' anchor points are squares centred on the points).
        strides: L level strides, pixels (the anchor generator's ``strides``).

    Returns:
        points: (P, 2) float, (x, y) pixels.
        point_strides: (P,) float, pixels.
    """
    if len(anchors) != len(strides):
        raise ValueError(f"{len(anchors)} levels of anchors but {len(strides)} strides")
    points = torch.cat([a.get_centers() for a in anchors]).float()
    point_strides = torch.cat(
        [points.new_full((len(a),), float(s)) for a, s in zip(anchors, strides)]
    )
    return points, point_strides


def decode_per_candidate(
    box2box_transform: Box2BoxTransform, deltas: torch.Tensor, anchors: torch.Tensor
) -> torch.Tensor:
    """Every image's predicted boxes from its deltas against the same anchors.

    Args:
        box2box_transform: the detector's transform (``apply_deltas``).
        deltas: (N, P, 4) predicted deltas.
        anchors: (P, 4) XYXY pixels.

    Returns:
        (N, P, 4) XYXY pixels, with gradients to ``deltas``.
    """
    num_images, num_candidates = deltas.shape[:2]
    return box2box_transform.apply_deltas(
        deltas.reshape(-1, 4), anchors.repeat(num_images, 1)
    ).view(num_images, num_candidates, 4)

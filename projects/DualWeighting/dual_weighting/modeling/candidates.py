"""DW's candidates from a detectron2 anchor generator, for every detector trained with
:class:`~.criterion.DWCriterion`. Shapes: N images, L levels, P candidates over all levels
(finest first, each level in its anchor generator's order).
"""

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes

__all__ = ["candidate_centers", "decode_per_candidate"]


def candidate_centers(anchors: list[Boxes], strides: list[int]):
    """``(points, point_strides)``: (P, 2) float centres (x, y) of the L Boxes ``anchors``
    (P_l, 4) and (P,) float strides of their level, from the L ``strides``; pixels."""
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
    """(N, P, 4) XYXY boxes decoded from (N, P, 4) ``deltas`` against the same (P, 4)
    ``anchors`` by ``box2box_transform``, with gradients to ``deltas``."""
    num_images, num_candidates = deltas.shape[:2]
    return box2box_transform.apply_deltas(
        deltas.reshape(-1, 4), anchors.repeat(num_images, 1)
    ).view(num_images, num_candidates, 4)

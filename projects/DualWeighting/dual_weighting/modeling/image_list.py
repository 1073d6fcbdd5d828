"""The inference batch of DW-FCOS and the check of its input pixels."""

import torch
from detectron2.structures import ImageList

from ..layers import BatchPadding

__all__ = ["DWImageList", "check_finite_images"]


class DWImageList(ImageList):
    """detectron2's :class:`ImageList` of an inference batch with, computed once by
    :meth:`DWFCOS.preprocess_image`, ``padding`` (the batch's
    :class:`~dual_weighting.layers.BatchPadding`) and ``output_sizes``, N (height, width) each
    input asks its detections in (its ``height`` and ``width``, else the resized size).
    """

    def __init__(self, images: ImageList, padding: BatchPadding, output_sizes):
        super().__init__(images.tensor, images.image_sizes)
        self.padding = padding
        self.output_sizes = [tuple(int(v) for v in size) for size in output_sizes]


def check_finite_images(batched_inputs: list[dict]):
    """Raise a ValueError naming each floating-point ``image`` of ``batched_inputs`` with a
    non-finite pixel (integer images are finite)."""
    floats = [
        (i, x["image"]) for i, x in enumerate(batched_inputs) if x["image"].is_floating_point()
    ]
    if not floats:
        return
    # One host read for the batch.
    finite = torch.stack([torch.isfinite(image).all() for _, image in floats]).tolist()
    bad = []
    for (i, _), ok in zip(floats, finite):
        if not ok:
            source = batched_inputs[i].get("file_name")
            bad.append(f"batched_inputs[{i}]" + (f" ({source})" if source else ""))
    if bad:
        raise ValueError(
            f"DWFCOS got input images with infinite or NaN pixels: {', '.join(bad)}. "
            "Pixel values must be finite."
        )

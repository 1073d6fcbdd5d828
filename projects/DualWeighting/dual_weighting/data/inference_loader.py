"""The inference loader (evaluation): detectron2's test loader, with batches of one image size where
the data allows.

detectron2 pads the images of a batch to the largest one. With the padding masked
(``MODEL.DW.MASK_PADDING_TEST``) the detections do not change, but the padded cells still cost
their convolutions; images visited in order of aspect ratio and size fill most batches with
images of one resized size, which need no padding at all.
"""

import logging

from detectron2.data import build_detection_test_loader
from detectron2.data.samplers import InferenceSampler

__all__ = ["SizeOrderedInferenceSampler", "build_dw_test_loader"]

logger = logging.getLogger(__name__)


class SizeOrderedInferenceSampler(InferenceSampler):
    """detectron2's :class:`InferenceSampler` (every index exactly once over all workers, each
    worker a contiguous share) visiting the images in order of aspect ratio (height / width),
    then height, then index. Images of one aspect ratio are resized to one size by a shortest-edge
    resize, so consecutive ones batch without padding.

    Args:
        sizes: (height, width) of each image of the dataset, in dataset order.
    """

    def __init__(self, sizes: list[tuple[int, int]]):
        super().__init__(len(sizes))
        order = sorted(range(len(sizes)), key=lambda i: (sizes[i][0] / sizes[i][1], sizes[i][0], i))
        self._local_indices = [order[i] for i in self._local_indices]

    @classmethod
    def from_dataset_dicts(cls, dataset_dicts: list[dict]) -> "SizeOrderedInferenceSampler":
        """The sampler of detectron2 dataset dicts, ordered by their ``height`` and ``width``;
        a ValueError names the first dict without them."""
        for i, d in enumerate(dataset_dicts):
            if not d.get("height") or not d.get("width"):
                raise ValueError(
                    f"Dataset dict {i} ({d.get('file_name', 'no file_name')}) has no height and "
                    "width to order the test images by"
                )
        return cls([(d["height"], d["width"]) for d in dataset_dicts])


def build_dw_test_loader(dataset, *, mapper, batch_size=1, num_workers=0, **kwargs):
    """:func:`detectron2.data.build_detection_test_loader` of a list of dataset dicts. With more
    than one image a batch, the images are visited by :class:`SizeOrderedInferenceSampler` when
    every dict has its ``height`` and ``width`` (detectron2's COCO loader sets them), else in
    dataset order, with a warning. The evaluators key results by image id, so the order changes
    no number."""
    sampler = None
    if batch_size > 1:
        try:
            sampler = SizeOrderedInferenceSampler.from_dataset_dicts(dataset)
        except ValueError as e:
            logger.warning(f"Test images in dataset order, batches may mix sizes: {e}")
    return build_detection_test_loader(
        dataset,
        mapper=mapper,
        sampler=sampler,
        batch_size=batch_size,
        num_workers=num_workers,
        **kwargs,
    )

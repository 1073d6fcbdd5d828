"""The evaluation loader: detectron2's test loader with batches of one image size where the data
allows, so that they need no padding (which costs time even when masked)."""

import logging

from detectron2.data import build_detection_test_loader
from detectron2.data.samplers import InferenceSampler

__all__ = ["SizeOrderedInferenceSampler", "build_dw_test_loader"]

logger = logging.getLogger(__name__)


class SizeOrderedInferenceSampler(InferenceSampler):
    """detectron2's :class:`InferenceSampler` visiting the images, of (height, width) ``sizes``,
    by aspect ratio, then height, then index: a shortest-edge resize makes them one size."""

    def __init__(self, sizes: list[tuple[int, int]]):
        super().__init__(len(sizes))
        order = sorted(range(len(sizes)), key=lambda i: (sizes[i][0] / sizes[i][1], sizes[i][0], i))
        self._local_indices = [order[i] for i in self._local_indices]

    @classmethod
    def from_dataset_dicts(cls, dataset_dicts: list[dict]) -> "SizeOrderedInferenceSampler":
        """The sampler of dataset dicts by size; a ValueError names the first without one."""
        for i, d in enumerate(dataset_dicts):
            if not d.get("height") or not d.get("width"):
                raise ValueError(
                    f"Dataset dict {i} ({d.get('file_name', 'no file_name')}) has no height and "
                    "width to order the test images by"
                )
        return cls([(d["height"], d["width"]) for d in dataset_dicts])


def build_dw_test_loader(dataset, *, mapper, batch_size=1, num_workers=0, **kwargs):
    """:func:`detectron2.data.build_detection_test_loader` of dataset dicts, by
    :class:`SizeOrderedInferenceSampler` with more than one image a batch when every dict has a
    size (else in order, with a warning); results are keyed by image id, so no number changes."""
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

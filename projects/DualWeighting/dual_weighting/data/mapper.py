"""detectron2's ``DatasetMapper``, naming the image file when it cannot be read.

detectron2 reads each image with PIL when the data loader first maps its record; a truncated or
corrupt file stops training there with PIL's ``OSError: image file is truncated``, which names
no file. VOC and YOLO data are checked when registered (:func:`.voc.image_size`); COCO-format
data is read only here.
"""

from detectron2.data import DatasetMapper

__all__ = ["DWDatasetMapper"]


class DWDatasetMapper(DatasetMapper):
    """detectron2's :class:`DatasetMapper` (same arguments and config); an image that cannot be
    read raises an OSError naming its ``file_name`` (PIL's message kept)."""

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except OSError as e:
            raise OSError(f"{dataset_dict['file_name']}: cannot read the image ({e})") from e

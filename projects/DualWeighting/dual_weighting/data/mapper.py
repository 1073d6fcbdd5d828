"""detectron2's ``DatasetMapper``, naming the image file when it cannot be read (PIL's error
names none; COCO-format images, unlike VOC and YOLO ones, are first read here)."""

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

"""COCO for DW-FCOS: detectron2's ``configs/common/data/coco.py`` with the release's input (RGB,
shorter side 800, boxes only), the size-ordered test loader and the chosen COCOeval."""

from detectron2.config import LazyCall as L

from dual_weighting.data import DWDatasetMapper, build_dw_test_loader
from dual_weighting.engine.lazy import model_zoo
from dual_weighting.evaluation import DWCOCOEvaluator

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
# detectron2's DatasetMapper that names an image file it cannot read (as train_net.py's yacs runs).
dataloader.train.mapper._target_ = dataloader.test.mapper._target_ = DWDatasetMapper
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
# Shorter side 800 (one size), longer side at most 1333, and the horizontal flip.
dataloader.train.mapper.augmentations[0].short_edge_length = [800]
# detectron2's test loader, which orders the images by size when batching (build_dw_test_loader).
dataloader.test._target_ = build_dw_test_loader
# One a batch: the published numbers' path bit for bit (TEST.IMS_PER_BATCH). More is faster
# with the same detections to rounding (model.test_mask_padding computes each image of a batch
# as if alone).
dataloader.test.batch_size = 1
dataloader.evaluator = L(DWCOCOEvaluator)(
    dataset_name="${..test.dataset.names}",
    tasks=["bbox"],
    output_dir="${...train.output_dir}/inference",
    # COCOeval implementation (TEST.COCO_EVAL): faster-coco-eval where installed.
    backend="auto",
)

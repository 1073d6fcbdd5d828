"""detectron2's ``DefaultTrainer`` for DW-FCOS: COCO box evaluation, CPU workers, strict
evaluation loading, batched evaluation with a fast COCOeval, the release's test-time resize on
request."""

import os
import weakref

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import (
    MetadataCatalog,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
)
from detectron2.utils import comm

from ..checkpoint import DWCheckpointer
from ..data import (
    DWDatasetMapper,
    build_dw_test_loader,
    build_test_augmentation,
    build_train_augmentation,
    save_class_names,
)
from ..evaluation import DWCOCOEvaluator
from ..modeling.criterion import set_config_style


def create_ddp_model_on(model, device, **ddp_kwargs):
    """detectron2's ``create_ddp_model``, with ``device_ids=None`` for a CPU model (gloo)."""
    if torch.device(device).type == "cpu":
        ddp_kwargs["device_ids"] = None
    return create_ddp_model(model, **ddp_kwargs)


def save_training_class_names(output_dir, dataset_names):
    """From the main process, save the class names of the first training dataset beside the
    run's checkpoints (:func:`~..data.save_class_names`), once the training data is loaded."""
    if not comm.is_main_process() or not dataset_names:
        return
    names = MetadataCatalog.get(dataset_names[0]).get("thing_classes")
    if names:
        save_class_names(output_dir, names)


class DWTrainer(DefaultTrainer):
    """detectron2's DefaultTrainer with COCO box evaluation, also on CPU (gloo) workers; the
    class names of its training data are saved in ``OUTPUT_DIR`` (``class_names.txt``)."""

    def __init__(self, cfg):
        if cfg.MODEL.DEVICE != "cpu" or comm.get_world_size() == 1:
            super().__init__(cfg)
            save_training_class_names(cfg.OUTPUT_DIR, cfg.DATASETS.TRAIN)
            return
        # Several CPU workers: DefaultTrainer's construction, in its order, with the DDP wrapper
        # a CPU model needs (detectron2's hard-codes GPU device ids).
        TrainerBase.__init__(self)
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model_on(model, "cpu", broadcast_buffers=False)
        trainer = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())
        save_training_class_names(cfg.OUTPUT_DIR, cfg.DATASETS.TRAIN)

    @classmethod
    def build_model(cls, cfg):
        """detectron2's model of ``cfg``, its DW criteria in the "yacs" config style."""
        model = super().build_model(cfg)
        set_config_style(model, "yacs")
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's training loader with :class:`..data.DWDatasetMapper` and
        :func:`..data.build_train_augmentation`."""
        if not cfg.INPUT.RELEASE_RESIZE_TRAIN:
            return build_detection_train_loader(cfg, mapper=DWDatasetMapper(cfg, is_train=True))
        mapper = DWDatasetMapper(cfg, is_train=True, augmentations=build_train_augmentation(cfg))
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """:func:`..data.build_dw_test_loader` with ``TEST.IMS_PER_BATCH`` images a batch and
        :func:`..data.build_test_augmentation`."""
        mapper = DWDatasetMapper(cfg, is_train=False, augmentations=build_test_augmentation(cfg))
        return build_dw_test_loader(
            get_detection_dataset_dicts([dataset_name], filter_empty=False),
            mapper=mapper,
            batch_size=cfg.TEST.IMS_PER_BATCH,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        return DWCOCOEvaluator(
            dataset_name, tasks=("bbox",), output_dir=output_folder, backend=cfg.TEST.COCO_EVAL
        )

    @classmethod
    def evaluate_checkpoint(cls, cfg, weights, resume=False):
        """COCO-evaluate ``weights`` (a path or URL) on ``cfg.DATASETS.TEST``, loaded strictly:
        missing weights raise a ``KeyError`` listing them."""
        model = cls.build_model(cfg)
        DWCheckpointer(model, save_dir=cfg.OUTPUT_DIR, strict=True).resume_or_load(
            weights, resume=resume
        )
        return cls.test(cfg, model)

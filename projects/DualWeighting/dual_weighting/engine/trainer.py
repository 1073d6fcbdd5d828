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
    """detectron2's ``create_ddp_model`` for a model on ``device``. detectron2 passes
    ``device_ids=[local rank]``, which DistributedDataParallel rejects for a CPU model: CPU
    (gloo) workers need ``device_ids=None``."""
    if torch.device(device).type == "cpu":
        ddp_kwargs["device_ids"] = None
    return create_ddp_model(model, **ddp_kwargs)


def save_training_class_names(output_dir, dataset_names):
    """From the main process, save the class names of the first of the training datasets
    ``dataset_names`` beside the run's checkpoints (``class_names.txt``,
    :func:`~..data.save_class_names`), for evaluation and the demo to check theirs against;
    nothing when its metadata has none. Call it once the training data is loaded (a COCO json's
    names are known only then)."""
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
        """detectron2's model of ``cfg``, whose DW criteria name yacs keys when training
        collapses (:func:`~..modeling.criterion.set_config_style`)."""
        model = super().build_model(cfg)
        set_config_style(model, "yacs")
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's training loader, whose mapper names an image it cannot read
        (:class:`..data.DWDatasetMapper`); its resize is the release's when
        ``INPUT.RELEASE_RESIZE_TRAIN`` is on (:func:`..data.build_train_augmentation`)."""
        if not cfg.INPUT.RELEASE_RESIZE_TRAIN:
            return build_detection_train_loader(cfg, mapper=DWDatasetMapper(cfg, is_train=True))
        mapper = DWDatasetMapper(cfg, is_train=True, augmentations=build_train_augmentation(cfg))
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """detectron2's test loader with ``TEST.IMS_PER_BATCH`` images a batch, ordered
        by size when more than one (:func:`..data.build_dw_test_loader`); it resizes as the
        release does when ``INPUT.RELEASE_RESIZE_TEST`` is on
        (:func:`..data.build_test_augmentation`)."""
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
            dataset_name,
            tasks=("bbox",),
            output_dir=output_folder,
            backend=cfg.TEST.COCO_EVAL,
        )

    @classmethod
    def evaluate_checkpoint(cls, cfg, weights, resume=False):
        """COCO-evaluate ``weights`` (a path or URL) on ``cfg.DATASETS.TEST``.

        Loading is strict: evaluating a checkpoint that leaves weights at their init is always a
        mistake, so missing weights raise a ``KeyError`` listing them.
        """
        model = cls.build_model(cfg)
        DWCheckpointer(model, save_dir=cfg.OUTPUT_DIR, strict=True).resume_or_load(
            weights, resume=resume
        )
        return cls.test(cfg, model)

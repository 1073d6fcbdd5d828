"""Training and evaluation from LazyConfigs (``.py`` configs, or a run's saved ``config.yaml``),
with the interface of detectron2's ``tools/lazyconfig_train_net.py``: the config's ``model``,
``dataloader``, ``optimizer``, ``lr_multiplier`` and ``train`` are built with ``instantiate``;
``key=value`` overrides; checkpoints, ``metrics.json``, TensorBoard, ETA logging and periodic
evaluation through detectron2's trainer and hooks. It trains any detectron2 LazyConfig model,
DW-FCOS or not, on CUDA or on CPU (gloo) workers.
"""

import logging
import warnings

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.solver import LRMultiplier
from detectron2.utils import comm

from ..checkpoint import DWCheckpointer
from ..layers import check_maskable
from ..modeling.criterion import set_config_style
from .checks import check_lazy_overrides, require_kind
from .run_log import setup_dw_logger
from .trainer import create_ddp_model_on, save_training_class_names

with warnings.catch_warnings():  # detectron2.model_zoo imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    from detectron2 import model_zoo

__all__ = [
    "do_test",
    "do_train",
    "lazy_main",
    "load_lazy_config",
    "model_zoo",
    "setup_lazy_cfg",
]

logger = logging.getLogger(__name__)


def load_lazy_config(config_file, overrides=()):
    """``LazyConfig.load(config_file)`` with the ``key=value`` ``overrides`` applied, each
    checked first (:func:`.checks.check_lazy_overrides`: a misspelt key is an error, not a new
    key that nothing reads).

    Raises:
        SetupError: ``config_file`` is a yacs yaml, or an override is malformed or unknown.
    """
    require_kind(config_file, "lazy", "the LazyConfig loader")
    cfg = LazyConfig.load(config_file)
    check_lazy_overrides(cfg, overrides, config_file)
    return LazyConfig.apply_overrides(cfg, list(overrides))


def setup_lazy_cfg(args):
    """The config of ``args.config_file`` and ``args.opts``, then detectron2's ``default_setup``
    (output folder, logging, this package's loggers included, the config saved as
    ``config.yaml``, ``train.seed``)."""
    cfg = load_lazy_config(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_dw_logger(cfg.train.output_dir)
    return cfg


def do_test(cfg, model):
    """Run ``model`` over ``cfg.dataloader.test`` and evaluate with ``cfg.dataloader.evaluator``.

    Returns:
        dict: the evaluator's results ({"bbox": {"AP": ...}} for COCO), logged in detectron2's
        csv format; empty when the config has no evaluator.
    """
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    print_csv_format(results)
    return results


def _hooks(cfg, model, optimizer, checkpointer):
    """Timing, the lr schedule, then (main process only) checkpoints, evaluation and the writers
    of metrics.json, TensorBoard and the ETA log."""
    train = cfg.train
    schedule = LRMultiplier(
        optimizer, multiplier=instantiate(cfg.lr_multiplier), max_iter=train.max_iter
    )
    main = comm.is_main_process()
    return [
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=schedule),
        hooks.PeriodicCheckpointer(checkpointer, **train.checkpointer) if main else None,
        # Every worker evaluates: inference is split over them and gathered by the evaluator.
        hooks.EvalHook(train.eval_period, lambda: do_test(cfg, model)),
        hooks.PeriodicWriter(
            default_writers(train.output_dir, train.max_iter), period=train.log_period
        )
        if main
        else None,
    ]


def build_lazy_model(cfg):
    """``cfg.model`` instantiated on ``cfg.train.device``, its DW criteria naming LazyConfig
    keys when training collapses (:func:`~..modeling.criterion.set_config_style`). A DW-FCOS
    that will batch test images with its padding masked (``model.test_mask_padding`` and
    ``dataloader.test.batch_size`` > 1) is checked now (:func:`~..layers.check_maskable`), not at
    the first evaluation."""
    model = instantiate(cfg.model)
    set_config_style(model, "lazy")
    batch_size = cfg.dataloader.get("test", {}).get("batch_size", 1)
    if getattr(model, "test_mask_padding", False) and batch_size > 1:
        check_maskable(backbone=model.backbone, head=model.head)
    return model.to(cfg.train.device)


def do_train(args, cfg):
    """Train ``cfg.model`` from ``cfg.train.init_checkpoint`` (or, with ``args.resume``, from the
    last checkpoint in ``cfg.train.output_dir``, with its iteration, optimizer and schedule) for
    ``cfg.train.max_iter`` iterations, on ``cfg.train.device``; the class names of the training
    data are saved in the output folder (``class_names.txt``)."""
    train = cfg.train
    model = build_lazy_model(cfg)
    logger.info(f"Model:\n{model}")
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    data = instantiate(cfg.dataloader.train)
    names = cfg.dataloader.train.dataset.get("names")
    save_training_class_names(train.output_dir, [names] if isinstance(names, str) else names)
    model = create_ddp_model_on(model, train.device, **train.ddp)
    trainer_class = AMPTrainer if train.amp.enabled else SimpleTrainer
    trainer = trainer_class(model, data, optimizer)
    checkpointer = DWCheckpointer(model, train.output_dir, trainer=trainer)
    trainer.register_hooks(_hooks(cfg, model, optimizer, checkpointer))
    checkpointer.resume_or_load(train.init_checkpoint, resume=args.resume)
    resumed = args.resume and checkpointer.has_checkpoint()
    # The checkpoint holds the last iteration done; training goes on with the next.
    trainer.train(trainer.iter + 1 if resumed else 0, train.max_iter)


def lazy_main(args):
    """``train_net.py``'s work for a LazyConfig in one process: set up, then evaluate
    ``train.init_checkpoint`` (``--eval-only``) or train."""
    cfg = setup_lazy_cfg(args)
    if not args.eval_only:
        return do_train(args, cfg)
    model = build_lazy_model(cfg)
    model = create_ddp_model_on(model, cfg.train.device)
    # Strict: evaluating a checkpoint that leaves weights at their init is always a mistake.
    DWCheckpointer(model, cfg.train.output_dir, strict=True).resume_or_load(
        cfg.train.init_checkpoint, resume=args.resume
    )
    return do_test(cfg, model)

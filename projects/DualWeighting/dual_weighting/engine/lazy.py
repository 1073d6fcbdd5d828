"""Training and evaluation from LazyConfigs as detectron2's ``tools/lazyconfig_train_net.py``
does it, for any detectron2 LazyConfig model, on CUDA or CPU (gloo) workers."""

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

__all__ = ["do_test", "do_train", "lazy_main", "load_lazy_config", "model_zoo", "setup_lazy_cfg"]

logger = logging.getLogger(__name__)


def load_lazy_config(config_file, overrides=()):
    """``LazyConfig.load(config_file)`` with the ``key=value`` ``overrides`` applied; a
    SetupError for a yacs yaml or a malformed or unknown override."""
    require_kind(config_file, "lazy", "the LazyConfig loader")
    cfg = LazyConfig.load(config_file)
    check_lazy_overrides(cfg, overrides, config_file)
    return LazyConfig.apply_overrides(cfg, list(overrides))


def setup_lazy_cfg(args):
    """The config of ``args.config_file`` and ``args.opts``, then detectron2's ``default_setup``
    and this package's logger."""
    cfg = load_lazy_config(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_dw_logger(cfg.train.output_dir)
    return cfg


def do_test(cfg, model):
    """The results of ``cfg.dataloader.evaluator`` for ``model`` over ``cfg.dataloader.test``,
    logged in detectron2's csv format; {} without an evaluator."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    print_csv_format(results)
    return results


def _hooks(cfg, model, optimizer, checkpointer):
    """detectron2's training hooks; checkpoints and writers in the main process only."""
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
    """``cfg.model`` on ``cfg.train.device``, its DW criteria in the "lazy" config style, checked
    by :func:`~..layers.check_maskable` now if it will mask batched test images."""
    model = instantiate(cfg.model)
    set_config_style(model, "lazy")
    batch_size = cfg.dataloader.get("test", {}).get("batch_size", 1)
    if getattr(model, "test_mask_padding", False) and batch_size > 1:
        check_maskable(backbone=model.backbone, head=model.head)
    return model.to(cfg.train.device)


def do_train(args, cfg):
    """Train ``cfg.model`` from ``cfg.train.init_checkpoint`` (or ``args.resume``), saving the
    training data's class names in the output folder."""
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

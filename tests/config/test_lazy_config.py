"""Every yaml model's LazyConfig twin in configs/lazy/ builds the same model (names, shapes,
frozen parameters, outputs for the same weights and input), the same solver and schedule, and
reads the same data; the twins load, build and survive LazyConfig.save."""

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetMapper
from detectron2.engine import DefaultTrainer
from detectron2.utils.events import EventStorage
from helpers import CONFIGS, THIN, YAMLS, assert_same_architecture, images, instances, thin_model
from omegaconf import ListConfig

from dual_weighting import DWCriterion
from dual_weighting.data import (
    build_dw_test_loader,
    build_test_augmentation,
    build_train_augmentation,
)
from dual_weighting.engine import load_lazy_config, load_yacs_config
from dual_weighting.evaluation import DWCOCOEvaluator

TWINS = [(p, CONFIGS / "lazy" / f"{p.stem}.py") for p in YAMLS]
IDS = [p.stem for p in YAMLS]

# The thinning of helpers.thin_cfg (THIN and THIN_BOTTLENECK), in LazyConfig keys.
LAZY_THIN = [
    "model.backbone.out_channels=64",
    "model.backbone.bottom_up.stem_out_channels=16",
    "model.num_classes=3",
]
LAZY_THIN_BOTTLENECK = [
    "model.backbone.bottom_up.res2_out_channels=32",
    "model.backbone.bottom_up.width_per_group=8",
]


def test_every_yaml_model_has_a_lazy_twin_and_back():
    assert all(py.is_file() for _, py in TWINS), [py.name for _, py in TWINS if not py.is_file()]
    # Besides the twins: the base and the recipes that put DW into detectron2's own configs.
    leaves = {p.stem for p in (CONFIGS / "lazy").glob("*.py")}
    assert leaves - set(IDS) == {
        "base_dw",
        "dw_in_fcos_R_50_FPN_1x",
        "dw_in_fcos_regnetx_4gf_FPN_1x",
    }


def thin_lazy(py, tmp_path):
    """The LazyConfig thinned like :func:`thin_model`, after a LazyConfig.save / load round
    trip (what a run saves as config.yaml must build the same)."""
    depth = LazyConfig.load(str(py)).model.backbone.bottom_up.depth
    cfg = load_lazy_config(str(py), LAZY_THIN + (LAZY_THIN_BOTTLENECK if depth >= 50 else []))
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))
    return LazyConfig.load(str(tmp_path / "config.yaml"))


@pytest.mark.parametrize("yaml, py", TWINS, ids=IDS)
def test_twins_build_the_same_model(yaml, py, tmp_path):
    yacs_model = thin_model(yaml)
    lazy_model = instantiate(thin_lazy(py, tmp_path).model)

    assert_same_architecture(lazy_model, yacs_model)
    yacs_state = yacs_model.state_dict()
    assert {k: v.shape for k, v in lazy_model.state_dict().items()} == {
        k: v.shape for k, v in yacs_state.items()
    }
    for name in (
        "head_in_features",
        "num_classes",
        "test_score_thresh",
        "test_topk_candidates",
        "test_nms_thresh",
        "max_detections_per_image",
        "test_mask_padding",
        "test_release_postprocess",
    ):
        assert getattr(lazy_model, name) == getattr(yacs_model, name), name
    for name in DWCriterion.defaults():
        assert getattr(lazy_model.criterion, name) == getattr(yacs_model.criterion, name), name
    assert lazy_model.head.strides == yacs_model.head.strides == [8, 16, 32, 64, 128]
    assert torch.equal(lazy_model.pixel_mean, yacs_model.pixel_mean)
    assert torch.equal(lazy_model.pixel_std, yacs_model.pixel_std)

    # The constant initialisations (prior probability, box bias) before any copying.
    for name in ("cls_logits", "box"):
        yacs_bias = getattr(yacs_model.head, name).bias
        assert torch.equal(getattr(lazy_model.head, name).bias, yacs_bias), name

    # The same weights give the same detections (all of them: threshold 0) and the same losses.
    lazy_model.load_state_dict(yacs_state)
    outputs = []
    for model in (yacs_model, lazy_model):
        model.eval().test_score_thresh = 0.0
        with torch.no_grad():
            outputs.append([out["instances"] for out in model([{"image": images()[0]}])])
    (yacs_out,), (lazy_out,) = outputs
    assert len(yacs_out) > 0
    assert torch.equal(lazy_out.pred_boxes.tensor, yacs_out.pred_boxes.tensor)
    assert torch.equal(lazy_out.scores, yacs_out.scores)
    assert torch.equal(lazy_out.pred_classes, yacs_out.pred_classes)
    batch = [{"image": images()[0], "instances": instances((64, 80), 2)}]
    losses = []
    for model in (yacs_model, lazy_model):
        with EventStorage():
            losses.append(model.train()(batch))
    assert losses[0] == losses[1] and losses[0]["loss_cls_pos"] > 0


def solver_of(optimizer, model):
    """Per parameter name: the lr, decay and momentum settings of its group."""
    names = {id(p): n for n, p in model.named_parameters()}
    keys = ("lr", "weight_decay", "momentum", "nesterov", "dampening")
    return {
        names[id(p)]: tuple(group[k] for k in keys)
        for group in optimizer.param_groups
        for p in group["params"]
    }


@pytest.mark.parametrize("yaml, py", TWINS, ids=IDS)
def test_twins_have_the_same_solver_and_schedule(yaml, py, tmp_path):
    cfg, full = load_yacs_config(str(yaml), THIN), load_yacs_config(str(yaml))
    lazy = thin_lazy(py, tmp_path)
    yacs_model, lazy_model = thin_model(yaml), instantiate(lazy.model)
    yacs_optimizer = DefaultTrainer.build_optimizer(cfg, yacs_model)
    lazy.optimizer.params.model = lazy_model
    lazy_optimizer = instantiate(lazy.optimizer)
    assert type(lazy_optimizer) is type(yacs_optimizer) is torch.optim.SGD
    solver = solver_of(yacs_optimizer, yacs_model)
    assert solver_of(lazy_optimizer, lazy_model) == solver
    # Norm parameters (GroupNorm of the head, FrozenStatsBN/BN of the backbone) are not decayed.
    decay = {n: s[1] for n, s in solver.items()}
    assert decay["head.cls_tower.0.norm.weight"] == 0.0 and decay["head.cls_logits.weight"] == 1e-4

    max_iter, steps = cfg.SOLVER.MAX_ITER, list(cfg.SOLVER.STEPS)
    assert lazy.train.max_iter == max_iter
    yacs_multiplier = DefaultTrainer.build_lr_scheduler(cfg, yacs_optimizer)._multiplier
    lazy_multiplier = instantiate(lazy.lr_multiplier)
    warmup = cfg.SOLVER.WARMUP_ITERS
    iterations = [0, 1, warmup // 2, warmup - 1, warmup, warmup + 1, max_iter - 1]
    iterations += [s + d for s in steps for d in (-1, 0, 1)]
    for it in iterations:
        assert lazy_multiplier(it / max_iter) == pytest.approx(yacs_multiplier(it / max_iter)), it
    # Hand values: warm-up from 0.001, full lr after it, x0.1 at each step.
    assert lazy_multiplier(0.0) == pytest.approx(0.001)
    assert lazy_multiplier(warmup / max_iter) == pytest.approx(1.0)
    for k, step in enumerate(steps, start=1):
        assert lazy_multiplier(step / max_iter) == pytest.approx(0.1**k)

    assert lazy.dataloader.train.total_batch_size == cfg.SOLVER.IMS_PER_BATCH
    assert lazy.train.checkpointer.period == cfg.SOLVER.CHECKPOINT_PERIOD
    assert lazy.train.eval_period == cfg.TEST.EVAL_PERIOD
    assert lazy.train.amp.enabled == cfg.SOLVER.AMP.ENABLED
    assert lazy.train.device == full.MODEL.DEVICE
    assert lazy.train.init_checkpoint == full.MODEL.WEIGHTS
    assert lazy.train.get("seed", -1) == cfg.SEED


def describe(augmentations):
    """Type and settings of each augmentation, lists made tuples."""
    described = []
    for aug in augmentations:
        settings = {
            k: tuple(v) if isinstance(v, (list, tuple, ListConfig)) else v
            for k, v in vars(aug).items()
            if not k.startswith("_")
        }
        if len(set(settings.get("short_edge_length", (0, 1)))) == 1:
            # One size (detectron2's test resize): "range" and "choice" sample the same.
            del settings["sample_style"], settings["is_range"]
        described.append((type(aug), settings))
    return described


def mapper_settings(mapper):
    keys = ("is_train", "image_format", "use_instance_mask", "use_keypoint", "recompute_boxes")
    return [getattr(mapper, k) for k in keys] + [
        mapper.proposal_topk,
        describe(mapper.augmentations.augs),
    ]


@pytest.mark.parametrize("yaml, py", TWINS, ids=IDS)
def test_twins_read_the_same_data(yaml, py):
    cfg = load_yacs_config(str(yaml))
    lazy = LazyConfig.load(str(py))
    # The augmentations DWTrainer's training loader uses (the release's resize where configured).
    train_mapper = DatasetMapper(cfg, is_train=True, augmentations=build_train_augmentation(cfg))
    assert mapper_settings(instantiate(lazy.dataloader.train.mapper)) == mapper_settings(
        train_mapper
    )
    # The augmentations DWTrainer's test loader uses (the release's resize where configured).
    test_mapper = DatasetMapper(cfg, is_train=False, augmentations=build_test_augmentation(cfg))
    lazy_test = instantiate(lazy.dataloader.test.mapper)
    assert mapper_settings(lazy_test) == mapper_settings(test_mapper)

    train, test = lazy.dataloader.train, lazy.dataloader.test
    assert (train.dataset.names,) == cfg.DATASETS.TRAIN
    assert (test.dataset.names,) == cfg.DATASETS.TEST
    assert train.dataset.get("filter_empty", True) == cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    assert test.dataset.filter_empty is False
    assert train.num_workers == test.num_workers == cfg.DATALOADER.NUM_WORKERS
    assert test.batch_size == cfg.TEST.IMS_PER_BATCH == 1
    assert test._target_ is build_dw_test_loader  # DWTrainer.build_test_loader's

    evaluator = lazy.dataloader.evaluator
    assert evaluator._target_ is DWCOCOEvaluator
    assert evaluator.dataset_name == cfg.DATASETS.TEST[0]
    assert list(evaluator.tasks) == ["bbox"] and evaluator.backend == cfg.TEST.COCO_EVAL
    assert evaluator.output_dir == f"{lazy.train.output_dir}/inference"

"""DW inside detectron2's own LazyConfigs (configs/lazy/dw_in_fcos_*.py): the model is the only
change to detectron2's FCOS config, the head sits on another detectron2 backbone (RegNetX-4GF),
and both recipes train a few steps on generated data and evaluate."""

import argparse
import json
import math

import pytest
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.backbone import RegNet
from helpers import CONFIGS
from omegaconf import OmegaConf

from dual_weighting import DWFCOS, DWCriterion, DWHead
from dual_weighting.data import register_coco_from_spec
from dual_weighting.engine import do_train, load_lazy_config
from dual_weighting.engine.lazy import model_zoo

LAZY = CONFIGS / "lazy"
R50 = LAZY / "dw_in_fcos_R_50_FPN_1x.py"
REGNET = LAZY / "dw_in_fcos_regnetx_4gf_FPN_1x.py"


def plain(node):
    return OmegaConf.to_container(node, resolve=True)


def test_only_the_model_changes_in_detectron2s_fcos_config():
    fcos = model_zoo.get_config("COCO-Detection/fcos_R_50_FPN_1x.py")
    recipe = LazyConfig.load(str(R50))
    for key in ("dataloader", "optimizer", "lr_multiplier", "train"):
        assert plain(recipe[key]) == plain(fcos[key]), key
    assert plain(recipe.model.backbone) == plain(fcos.model.backbone)
    for key in ("head_in_features", "num_classes", "pixel_mean", "pixel_std"):
        assert recipe.model[key] == fcos.model[key], key
    # Everything else of the model is DW's: its meta-architecture, head and criterion, at their
    # defaults (the criterion's written out, so that they can be overridden).
    assert recipe.model._target_ is DWFCOS and recipe.model.head._target_ is DWHead
    assert set(recipe.model) - set(fcos.model) == {"criterion"}
    criterion = recipe.model.criterion
    assert criterion.pop("_target_") is DWCriterion and dict(criterion) == DWCriterion.defaults()
    assert set(recipe.model.head) == {"_target_", "input_shape", "num_classes"}


def test_regnet_recipe_changes_only_the_bottom_up():
    r50, regnet = LazyConfig.load(str(R50)), LazyConfig.load(str(REGNET))
    assert plain(regnet.dataloader) == plain(r50.dataloader)
    assert plain(regnet.lr_multiplier) == plain(r50.lr_multiplier)
    assert plain(regnet.model.head) == plain(r50.model.head)
    assert regnet.model.backbone.bottom_up._target_ is RegNet
    assert regnet.model.backbone.bottom_up.norm == "FrozenBN"
    assert regnet.train.init_checkpoint.endswith("RegNetX-4.0GF_dds_8gpu.pyth")


@pytest.fixture(scope="module")
def datasets(shapes_dataset):
    root = shapes_dataset
    return [
        register_coco_from_spec(f"recipe_{s}={root}/annotations/instances_{s}.json:{root}/{s}")
        for s in ("train", "val")
    ]


@pytest.mark.parametrize("path", [R50, REGNET], ids=lambda p: p.stem)
def test_recipe_trains_a_few_steps_and_evaluates(path, datasets, tmp_path):
    train_name, val_name = datasets
    cfg = load_lazy_config(
        str(path),
        [
            f"dataloader.train.dataset.names={train_name}",
            f"dataloader.test.dataset.names={val_name}",
            "dataloader.train.mapper.augmentations.0.short_edge_length=[128]",
            "dataloader.train.mapper.augmentations.0.max_size=160",
            "dataloader.test.mapper.augmentations.0.short_edge_length=128",
            "dataloader.test.mapper.augmentations.0.max_size=160",
            "dataloader.train.total_batch_size=2",
            "dataloader.train.num_workers=0",
            "dataloader.test.num_workers=0",
            "model.num_classes=6",
            "train.device=cpu",
            "train.init_checkpoint=''",
            "train.max_iter=3",
            "train.eval_period=0",
            f"train.output_dir={tmp_path}",
        ],
    )
    assert isinstance(instantiate(cfg.model), DWFCOS)
    do_train(argparse.Namespace(resume=False), cfg)
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    (last,) = [r for r in records if "total_loss" in r]
    assert last["iteration"] == 2
    assert {"loss_cls_pos", "loss_loc", "loss_cls_neg"} <= set(last)
    assert all(math.isfinite(last[k]) for k in ("loss_cls_pos", "loss_loc", "loss_cls_neg"))
    assert any("bbox/AP" in r for r in records)  # evaluated after the last iteration
    assert (tmp_path / "model_final.pth").is_file()

"""A collapsed training names the keys to change in the config style of the run: yacs keys for a
model the yacs trainer builds, LazyConfig keys for one the LazyConfig engine builds."""

import pytest
import torch
from detectron2.config import LazyConfig
from detectron2.utils.events import EventStorage
from helpers import CONFIGS, DEMO_CONFIG, load_cfg, two_box_batch
from omegaconf import OmegaConf

from dual_weighting import DWCriterion
from dual_weighting.engine import DWTrainer
from dual_weighting.engine.lazy import build_lazy_model
from dual_weighting.modeling.criterion import set_config_style

LAZY_DEMO = CONFIGS / "lazy" / "dw_R_18_FPN_synthetic_demo.py"


def collapse(model):
    """A training step of ``model`` whose classifier has collapsed: float32 sigmoid(-200) is 0,
    so every joint score and positive weight is 0."""
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(-200.0)
    model.train()
    with EventStorage(start_iter=12):
        model(two_box_batch())


def test_a_yacs_run_names_yacs_keys():
    cfg = load_cfg(DEMO_CONFIG)
    torch.manual_seed(0)
    model = DWTrainer.build_model(cfg)
    with pytest.raises(FloatingPointError) as e:
        collapse(model)
    message = str(e.value)
    assert "DW-FCOS training collapsed at iteration=12" in message
    assert message.endswith(
        "lower SOLVER.BASE_LR or lengthen the warm-up (SOLVER.WARMUP_ITERS), "
        "or set MODEL.DW.BOUNDED_NEG_LOSS True"
    )
    # The keys exist in the config.
    assert cfg.SOLVER.BASE_LR > 0 and cfg.SOLVER.WARMUP_ITERS > 0
    assert cfg.MODEL.DW.BOUNDED_NEG_LOSS is False


def test_a_run_with_the_bounded_negative_loss_is_not_told_to_set_it():
    cfg = load_cfg(DEMO_CONFIG, "MODEL.DW.BOUNDED_NEG_LOSS", "True")
    torch.manual_seed(0)
    model = DWTrainer.build_model(cfg)
    with pytest.raises(FloatingPointError) as e:
        collapse(model)
    assert str(e.value).endswith(
        "lower SOLVER.BASE_LR or lengthen the warm-up (SOLVER.WARMUP_ITERS)"
    )


def test_a_lazy_run_names_lazy_keys():
    cfg = LazyConfig.load(str(LAZY_DEMO))
    torch.manual_seed(0)
    model = build_lazy_model(cfg)
    with pytest.raises(FloatingPointError) as e:
        collapse(model)
    message = str(e.value)
    assert "DW-FCOS training collapsed at iteration=12" in message
    assert message.endswith(
        "lower optimizer.lr or lengthen the warm-up (lr_multiplier.warmup_length), "
        "or set the criterion's bounded_neg_loss=True"
    )
    assert "SOLVER" not in message and "MODEL.DW" not in message
    for key in ("optimizer.lr", "lr_multiplier.warmup_length"):
        assert OmegaConf.select(cfg, key) is not None, key
    assert OmegaConf.select(cfg, "model.criterion.bounded_neg_loss") is False


def test_every_criterion_of_a_model_is_told_and_a_lone_one_names_no_keys():
    model = torch.nn.ModuleDict({"a": DWCriterion(), "b": torch.nn.Sequential(DWCriterion())})
    set_config_style(model, "lazy")
    assert [c.config_style for c in (model["a"], model["b"][0])] == ["lazy", "lazy"]
    assert DWCriterion().config_style is None

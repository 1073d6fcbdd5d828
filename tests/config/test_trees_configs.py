"""The detectors of configs/trees/ on the ImageNet EfficientNet-Lite0-FPN: each yacs config and
its LazyConfig twin build the same model, and each trains a step and detects."""

import pytest
import torch
from detectron2.config import instantiate
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from helpers import REPO, assert_same_architecture, instances, load_cfg

from dual_weighting.engine.lazy import load_lazy_config
from dual_weighting.modeling import TimmBackbone

YACS = REPO / "configs" / "trees"
LAZY = REPO / "configs" / "lazy" / "trees"
DETECTORS = {
    "dw_fcos_Lite0_FPN": "DWFCOS",
    "fcos_Lite0_FPN": "FCOS",
    "fcos_dw_loss_Lite0_FPN": "DWLossFCOS",
    "retinanet_Lite0_FPN": "RetinaNet",
    "dw_retinanet_Lite0_FPN": "DWRetinaNet",
    "faster_rcnn_Lite0_FPN": "RPN",
    "dw_rpn_faster_rcnn_Lite0_FPN": "DWRPN",
}


def test_every_trees_config_is_listed():
    assert sorted(p.stem for p in YACS.glob("*_Lite0_FPN.yaml")) == sorted(DETECTORS)
    assert sorted(p.stem for p in LAZY.glob("*_Lite0_FPN.py")) == sorted(DETECTORS)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_yacs_and_lazyconfig_twins_build_the_same_detector(name):
    cfg = load_cfg(YACS / f"{name}.yaml")
    lazy = load_lazy_config(str(LAZY / f"{name}.py"))
    assert cfg.MODEL.WEIGHTS == ""  # load_cfg clears it; the file names the converted weights
    assert lazy.train.init_checkpoint == "pretrained/tf_efficientnet_lite0.pth"
    # The same solver: detectron2's RetinaNet lr scaled to batch 8 for both RetinaNets, 0.01 else.
    expected_lr = 0.005 if "retinanet" in name else 0.01
    assert cfg.SOLVER.BASE_LR == lazy.optimizer.lr == expected_lr
    assert cfg.SOLVER.MAX_ITER == lazy.train.max_iter
    torch.manual_seed(0)
    yacs_model = build_model(cfg)
    torch.manual_seed(0)
    lazy_model = instantiate(lazy.model)
    # Both build the detector (ConfigurableFCOS is detectron2's FCOS built from yacs).
    detector = DETECTORS[name]
    for model in (yacs_model, lazy_model):
        classes = {type(m).__name__ for m in model.modules()} | {
            c.__name__ for c in type(model).__mro__
        }
        assert detector in classes
        assert isinstance(model.backbone.bottom_up, TimmBackbone)
    assert_same_architecture(yacs_model.backbone, lazy_model.backbone)
    for attribute in ("head", "proposal_generator", "roi_heads"):
        if hasattr(yacs_model, attribute):
            assert_same_architecture(getattr(yacs_model, attribute), getattr(lazy_model, attribute))
    assert yacs_model.pixel_mean.flatten().tolist() == lazy_model.pixel_mean.flatten().tolist()
    assert yacs_model.pixel_std.flatten().tolist() == [128.0] * 3
    assert cfg.INPUT.FORMAT == "RGB"
    assert lazy.dataloader.train.mapper.image_format == "RGB"


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_trains_a_step_and_detects(name):
    torch.manual_seed(0)
    model = build_model(load_cfg(YACS / f"{name}.yaml"))
    ground_truth = instances((96, 128), 2)
    ground_truth.gt_classes = torch.zeros(2, dtype=torch.long)  # one class: tree
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    with EventStorage():
        losses = model([{"image": image, "instances": ground_truth}] * 2)
    assert losses and all(torch.isfinite(v) for v in losses.values())
    total = sum(losses.values())
    total.backward()
    assert model.backbone.bottom_up.body.blocks[2][0].conv_pw.weight.grad is not None
    # The frozen stages get no gradient.
    assert model.backbone.bottom_up.body.conv_stem.weight.grad is None
    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": image, "height": 48, "width": 64}])
    assert output["instances"].image_size == (48, 64)

"""A dataset with more classes than the model predicts stops ``train_net.py`` before training, for
every detector and both config styles, naming the dataset, its classes and the key to set."""

import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY
from helpers import CONFIGS

from dual_weighting.engine import SetupError, check_command_line, default_dw_argument_parser
from dual_weighting.engine.dataset_checks import YACS_NUM_CLASSES
from dual_weighting.engine.lazy import model_zoo

# The key each detector's class count is set by, written out by hand.
COCO = CONFIGS / "COCO-Detection"
YACS_KEYS = {
    CONFIGS / "dw_R_50_FPN_1x.yaml": "MODEL.DW.NUM_CLASSES",
    COCO / "dw_retinanet_R_50_FPN_1x.yaml": "MODEL.RETINANET.NUM_CLASSES",
    COCO / "fcos_dw_loss_R_50_FPN_1x.yaml": "MODEL.FCOS.NUM_CLASSES",
    COCO / "dw_rpn_faster_rcnn_R_50_FPN_1x.yaml": "MODEL.ROI_HEADS.NUM_CLASSES",
}
LAZY = CONFIGS / "lazy" / "COCO-Detection"
LAZY_KEYS = {
    CONFIGS / "lazy" / "dw_R_50_FPN_1x.py": "model.num_classes",
    LAZY / "dw_retinanet_R_50_FPN_1x.py": "model.num_classes",
    LAZY / "fcos_dw_loss_R_50_FPN_1x.py": "model.num_classes",
    LAZY / "dw_rpn_faster_rcnn_R_50_FPN_1x.py": "model.roi_heads.num_classes",
    # detectron2's own FCOS.
    model_zoo.get_config_file("COCO-Detection/fcos_R_50_FPN_1x.py"): "model.num_classes",
}
ALL_CONFIGS = sorted(
    p
    for p in [*CONFIGS.rglob("*.yaml"), *CONFIGS.glob("lazy/*.py"), *LAZY.glob("*.py")]
    if not p.name.startswith("Base-")
)


@pytest.fixture(scope="module")
def many_classes():
    """A registered dataset of 200 classes (no images: only its metadata is read)."""
    name = "test_num_classes_200"
    if name not in DatasetCatalog:
        DatasetCatalog.register(name, lambda: [])
        MetadataCatalog.get(name).thing_classes = [f"c{k}" for k in range(200)]
    return name


def check(config, dataset, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if str(config).endswith(".py"):
        opts = ["train.device=cpu", f"dataloader.test.dataset.names={dataset}"]
    else:
        opts = ["MODEL.DEVICE", "cpu", "DATASETS.TEST", f'("{dataset}",)']
    argv = ["--config-file", str(config), "--eval-only", *opts]
    check_command_line(default_dw_argument_parser().parse_args(argv))


@pytest.mark.parametrize("config,key", [*YACS_KEYS.items(), *LAZY_KEYS.items()])
def test_too_many_classes_names_the_key_of_each_detector(config, key, many_classes, monkeypatch):
    with pytest.raises(SetupError, match=rf"has 200 classes \(c0, c1, .*but the model predicts "
                       rf"{key} = 80: set {key} 200"):  # fmt: skip
        check(config, many_classes, monkeypatch)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_every_config_is_checked(config, many_classes, monkeypatch):
    with pytest.raises(SetupError, match="has 200 classes"):
        check(config, many_classes, monkeypatch)


def test_every_registered_detector_of_the_package_has_its_key():
    ours = [name for name, cls in META_ARCH_REGISTRY if cls.__module__.startswith("dual_weighting")]
    assert {"DWFCOS", "DWRetinaNet", "DWLossFCOS"} <= set(ours)
    assert set(ours) <= set(YACS_NUM_CLASSES)

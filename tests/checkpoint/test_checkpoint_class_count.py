"""A checkpoint trained for another number of classes is refused at evaluation with that said,
the classifier's output counts and the keys that set them, not as "weights are missing"."""

import pytest
import torch
from detectron2.modeling import build_model
from helpers import CONFIGS, load_cfg

from dual_weighting.checkpoint import DWCheckpointer

TREES = CONFIGS / "trees"


@pytest.mark.parametrize(
    "config, classes_key, outputs",
    [
        # DWHead's cls_logits: one output a class.
        ("dw_fcos_Lite0_FPN.yaml", "MODEL.DW.NUM_CLASSES", (3, 5)),
        # RetinaNet's cls_score: 9 anchors a location, an output per anchor and class.
        ("retinanet_Lite0_FPN.yaml", "MODEL.RETINANET.NUM_CLASSES", (27, 45)),
        # Fast R-CNN's cls_score: the classes and the background.
        ("faster_rcnn_Lite0_FPN.yaml", "MODEL.ROI_HEADS.NUM_CLASSES", (4, 6)),
    ],
)
def test_other_class_count_is_named(tmp_path, config, classes_key, outputs):
    trained = build_model(load_cfg(TREES / config, classes_key, 3))
    torch.save({"model": trained.state_dict()}, tmp_path / "model.pth")
    model = build_model(load_cfg(TREES / config, classes_key, 5))
    with pytest.raises(KeyError) as error:
        DWCheckpointer(model, strict=True).load(str(tmp_path / "model.pth"))
    message = str(error.value)
    assert "trained for another number of classes" in message
    assert f"has {outputs[0]} outputs, this model's {outputs[1]}" in message
    assert classes_key in message
    assert "missing" not in message


def test_other_widths_are_listed_with_their_shapes(tmp_path):
    trained = build_model(load_cfg(TREES / "dw_fcos_Lite0_FPN.yaml", "MODEL.FPN.OUT_CHANNELS", 64))
    torch.save({"model": trained.state_dict()}, tmp_path / "model.pth")
    model = build_model(load_cfg(TREES / "dw_fcos_Lite0_FPN.yaml"))
    with pytest.raises(KeyError, match=r"backbone.fpn_lateral3.weight \(64, 40, 1, 1\) in the"):
        DWCheckpointer(model, strict=True).load(str(tmp_path / "model.pth"))

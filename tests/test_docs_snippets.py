"""Every Python snippet of README.md and docs/ runs as written. The README's criterion snippet
names its inputs without making them; the test gives them (two images, four candidates)."""

import re

import pytest
import torch
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from helpers import REPO

from dual_weighting import DWFCOS, DWCriterion, DWRetinaNet

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets():
    return [
        pytest.param(code, id=f"{path.name}:{text[: m.start()].count(chr(10)) + 1}")
        for path in DOCUMENTS
        for text in [path.read_text()]
        for m in SNIPPET.finditer(text)
        for code in [m.group(1)]
    ]


def criterion_inputs():
    """What the README's criterion snippet names: 4 candidates on two levels, 2 images."""
    return {
        "points": torch.tensor([[4.0, 4.0], [12.0, 4.0], [8.0, 8.0], [24.0, 8.0]]),
        "strides": torch.tensor([8.0, 8.0, 16.0, 16.0]),
        "cls_logits": torch.zeros(2, 4, 3),
        "quality_logits": torch.zeros(2, 4),
        "pred_boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(2, 4, 1),
        "gt_boxes": [torch.tensor([[0.0, 0.0, 16.0, 12.0]]), torch.zeros(0, 4)],
        "gt_classes": [torch.tensor([1]), torch.zeros(0, dtype=torch.long)],
    }


def test_the_documents_have_the_snippets_this_file_checks():
    assert len(snippets()) == 4


@pytest.mark.parametrize("code", snippets())
def test_snippet_runs_as_written(code):
    namespace = criterion_inputs() if "criterion(" in code else {}
    exec(compile(code, "<snippet>", "exec"), namespace)
    if "losses" in namespace:
        losses = namespace["losses"]
        assert set(losses) == {"loss_cls_pos", "loss_loc", "loss_cls_neg"}
        assert all(torch.isfinite(v) for v in losses.values())
        return
    model = namespace["model"]
    if "DWRetinaNet" in code:
        assert type(model) is DWRetinaNet and isinstance(model, RetinaNet)
        assert isinstance(model.criterion, DWCriterion)
    elif "DWHead(" in code:
        assert isinstance(model, DWFCOS) and model.num_classes == 20
        # Trained by hand, it runs inside an EventStorage, as the text beside it says.
        image = {"image": torch.zeros(3, 64, 64), "instances": _one_box()}
        with EventStorage():
            assert set(model([image])) == {"loss_cls_pos", "loss_loc", "loss_cls_neg"}
    else:
        assert isinstance(model, torch.nn.Module)


def _one_box():
    instances = Instances((64, 64))
    instances.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 40.0, 40.0]]))
    instances.gt_classes = torch.tensor([3])
    return instances

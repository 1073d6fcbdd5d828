"""Assignment pictures: the pure maps (hand-computed values, agreement with ``dw_losses``), the
model run that gives them (the losses the model trains with), record selection, and
``tools/visualize_assignment.py`` run as users run it on a tiny generated dataset."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.events import EventStorage
from helpers import DEMO_CONFIG, REPO
from helpers import fcos_dw_losses as dw_losses
from PIL import Image

from dual_weighting import DWCriterion
from dual_weighting.data import register_coco_from_spec
from dual_weighting.engine import load_tool_config
from dual_weighting.modeling.assignment import decode_ltrb
from visualize import (
    compute_assignment,
    dw_assignment_maps,
    load_model,
    select_records,
    split_levels,
    strong_positives,
    training_mapper,
)

CONFIG = str(DEMO_CONFIG)
# Small inputs: the generated 64 x 96 images are fed at their own size.
SMALL = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]
DATASET = "test_visualize_assignment_tiny_train"


@pytest.fixture(scope="module")
def tiny(tiny_shapes):
    """``NAME=JSON:IMAGE_ROOT`` of two 64 x 96 training images, for ``--register-coco``."""
    train = tiny_shapes["train"]
    yield f"{DATASET}={train['json_file']}:{train['image_root']}"
    for catalog in (DatasetCatalog, MetadataCatalog):
        if DATASET in catalog.list():
            catalog.remove(DATASET)


def test_tool_writes_one_png_per_image(tiny, tmp_path):
    proc = subprocess.run(
        [sys.executable, "tools/visualize_assignment.py", "--config-file", CONFIG,
         "--register-coco", tiny, "--dataset", DATASET, "--indices", "0", "1",
         "--max-boxes", "1", "--dpi", "50", "--output", str(tmp_path), "--opts", *SMALL],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [line.split("wrote ")[1] for line in proc.stdout.splitlines() if "  wrote " in line]
    assert [Path(p).name for p in written] == ["000001_assignment.png", "000002_assignment.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(p).name for p in written]
    for path in written:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and min(picture.size) > 150
    assert "candidate/strong points per level: P3" in proc.stdout


def test_model_maps_reproduce_the_training_losses(tiny):
    """The picture's forward pass and maps give exactly the losses the model trains with.

    FrozenBN (and the head's GroupNorm) behave the same in train and eval mode.
    """
    register_coco_from_spec(tiny)
    cfg = load_tool_config(CONFIG, [*SMALL, "MODEL.RESNETS.NORM", "FrozenBN"])
    model = load_model(cfg)
    mapped = training_mapper(cfg)(DatasetCatalog.get(DATASET)[0])
    maps, shapes, strides = compute_assignment(model, mapped)

    model.train()
    with EventStorage(), torch.no_grad():
        losses = model([mapped])
    expected = _losses_from_maps(maps, len(mapped["instances"]))
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-5, atol=1e-7)
    assert [tuple(s) for s in shapes][0] == (8, 12) and strides == [8, 16, 32, 64, 128]


def test_records_are_selected_by_index_or_file_name_and_bad_ones_named():
    records = [{"file_name": "/data/train/000001.jpg"}, {"file_name": "/data/train/000002.jpg"}]
    assert select_records(records, [1, 0]) == [1, 0]
    assert select_records(records, [0], ["000002.jpg", "train/000001.jpg"]) == [1, 0]
    with pytest.raises(ValueError, match=r"--indices \[2\]: the dataset has 2 records"):
        select_records(records, [2])
    with pytest.raises(ValueError, match="no record of the dataset has the image '000003.jpg'"):
        select_records(records, [0], ["000003.jpg"])


# ------------------------------------------------------------------------ assignment maps


def _losses_from_maps(maps, num_boxes):
    """The three DW losses of one image, written from the maps with the spec's formulas."""
    inside = maps["inside"]
    w_pos, p_cls, p_loc = maps["pos_weight"][inside], maps["p_cls"][inside], maps["p_loc"][inside]
    ones = torch.ones_like(p_cls)
    scores, w_neg = maps["scores"], maps["neg_weight"]
    neg = (
        w_neg
        * scores**2
        * F.binary_cross_entropy(scores, torch.zeros_like(scores), reduction="none")
    ).sum()
    return {
        "loss_cls_pos": 0.25
        * (w_pos * F.binary_cross_entropy(p_cls, ones, reduction="none")).sum()
        / max(num_boxes, 1),
        "loss_loc": 0.25
        * (w_pos * F.binary_cross_entropy(p_loc, ones, reduction="none")).sum()
        / max(num_boxes, 1),
        "loss_cls_neg": neg / (1 - w_neg).sum().clamp(min=1),
    }


def _grid(height, width, stride):
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack(((xs.reshape(-1) + 0.5) * stride, (ys.reshape(-1) + 0.5) * stride), dim=1)


def maps_of(points, strides, cls_logits, ctr_logits, ltrb, boxes, classes):
    """The maps of one image's FCOS-style predictions (distances from the points), from the
    release criterion's own assignment."""
    assignment = DWCriterion().assign(
        points, strides, cls_logits[None], ctr_logits[None],
        decode_ltrb(points, ltrb)[None], [boxes], [classes],
    )  # fmt: skip
    return dw_assignment_maps(assignment, classes)


def test_maps_equal_hand_computed_values():
    # One 3 x 3 level of stride 8; box (0, 0, 16, 16) of class 1 holds the four points at
    # x, y in {4, 12}, each half a stride from the centre (8, 8) along both axes.
    points = _grid(3, 3, 8).double()
    strides = torch.full((9,), 8.0, dtype=torch.float64)
    cls_logits = torch.zeros(9, 2, dtype=torch.float64)
    cls_logits[[0, 1, 3, 4], 1] = torch.tensor([2.0, 1.0, 0.0, -1.0], dtype=torch.float64)
    ctr_logits = torch.zeros(9, dtype=torch.float64)  # objectness 0.5
    ltrb = torch.ones(9, 4, dtype=torch.float64)
    ltrb[0] = torch.tensor([4.0, 4, 12, 12])  # (0, 0, 16, 16): IoU 1
    ltrb[1] = torch.tensor([12.0, 4, 4, 4])  # (0, 0, 16, 8): IoU 0.5
    ltrb[3] = torch.tensor([4.0, 8, 12, 4])  # (0, 4, 16, 16): IoU 0.75
    ltrb[4] = torch.tensor([2.0, 2, 2, 2])  # (10, 10, 14, 14): IoU 1/16
    boxes = torch.tensor([[0.0, 0, 16, 16]], dtype=torch.float64)
    maps = maps_of(points, strides, cls_logits, ctr_logits, ltrb, boxes, torch.tensor([1]))

    bag = [0, 1, 3, 4]
    assert maps["inside"][0].nonzero().flatten().tolist() == bag
    prior = math.exp(-(0.5**2) / (2 * 1.11**2)) ** 2
    ious = [1.0, 0.5, 0.75, 1 / 16]  # the box encloses every prediction: GIoU = IoU
    p_cls = [0.5 / (1 + math.exp(-x)) for x in (2.0, 1.0, 0.0, -1.0)]
    p_loc = [math.exp(-5 * (1 - u)) for u in ious]
    v = [c * loc for c, loc in zip(p_cls, p_loc)]
    denominator = sum(math.exp(3 * x) * x * prior for x in v)
    w_pos = [math.exp(5 * x) * x * prior / denominator for x in v]
    # t = (1 - u^2) / 0.75 = (0, 1, 7/12, 1.33); min 0, max capped at 1; u < 0.5 gives 1.
    w_neg = [1e-12 / (1 + 1e-12), 1.0, (7 / 12 + 1e-12) / (1 + 1e-12), 1.0]

    def check(key, values):
        expected = torch.zeros(9, dtype=torch.float64)
        expected[bag] = torch.tensor(values, dtype=torch.float64)
        torch.testing.assert_close(maps[key][0], expected, rtol=1e-12, atol=1e-15)

    check("prior", [prior] * 4)
    check("iou", ious)
    check("p_cls", p_cls)
    check("p_loc", p_loc)
    check("pos_weight", w_pos)
    expected_neg = torch.ones(9, 2, dtype=torch.float64)
    expected_neg[bag, 1] = torch.tensor(w_neg, dtype=torch.float64)
    torch.testing.assert_close(maps["neg_weight"], expected_neg, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(maps["neg_weight_of_class"][0], expected_neg[:, 1])
    # The highest v (point 0) carries the most weight and is the only strong positive at 50%.
    assert strong_positives(maps["pos_weight"], 0.5)[0].nonzero().flatten().tolist() == [0]


def test_maps_agree_with_dw_losses():
    """Two levels, three boxes (two of one class, overlapping), predictions near box 0 so that
    some IoUs exceed 0.5: the losses written from the maps equal ``dw_losses``."""
    torch.manual_seed(0)
    points = torch.cat([_grid(8, 10, 8), _grid(4, 5, 16)])
    strides = torch.cat([torch.full((80,), 8.0), torch.full((20,), 16.0)])
    boxes = torch.tensor([[6.0, 5, 50, 40], [20, 10, 70, 60], [30, 30, 75, 62]])
    classes = torch.tensor([2, 2, 0])
    num_classes = 3
    x, y = points.unbind(1)
    exact = torch.stack((x - 6, y - 5, 50 - x, 40 - y), dim=1).clamp(min=0.5)
    ltrb = exact * torch.empty(100, 4).uniform_(0.8, 1.25)
    cls_logits = torch.randn(100, num_classes)
    ctr_logits = torch.randn(100)

    maps = maps_of(points, strides, cls_logits, ctr_logits, ltrb, boxes, classes)
    losses = dw_losses(
        points, strides, cls_logits[None], ctr_logits[None], ltrb[None], [boxes], [classes]
    )
    for key, value in _losses_from_maps(maps, len(boxes)).items():
        torch.testing.assert_close(losses[key], value, rtol=1e-6, atol=1e-8)
    # Non-trivial: lowered negative weights, boxes of one class sharing their class column.
    assert (maps["neg_weight"][:, 2] < 0.5).any()
    assert torch.equal(maps["neg_weight_of_class"][0], maps["neg_weight_of_class"][1])
    assert (maps["pos_weight"] > 0).sum() == maps["inside"].sum()


def test_strong_positives_and_split_levels():
    weights = torch.tensor([[0.2, 0.5, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0]])
    assert strong_positives(weights, 0.5).tolist() == [[False, True, False, False], [False] * 4]
    assert strong_positives(weights, 0.6)[0].tolist() == [False, True, False, True]
    assert strong_positives(weights, 1.0)[0].tolist() == [True, True, False, True]
    with pytest.raises(ValueError):
        strong_positives(weights, 0.0)

    values = torch.arange(2 * 8).reshape(2, 8)
    p3, p4 = split_levels(values, [(2, 3), (1, 2)])
    assert p3.shape == (2, 2, 3) and p4.shape == (2, 1, 2)
    assert p3[1, 1].tolist() == [11, 12, 13] and p4[0, 0].tolist() == [6, 7]
    with pytest.raises(ValueError):
        split_levels(values, [(2, 3)])

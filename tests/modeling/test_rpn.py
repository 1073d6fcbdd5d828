"""DW-RPN (dual_weighting.modeling.DWRPN): detectron2's RPN trained with DW's losses, one class.

Hand-made and random cases of the losses (against a slow float64 reference of docs/DW_SPEC.md
written here), training on a fixed batch, awkward ground truth, detectron2's proposals kept, the
Faster R-CNN configs (yacs and LazyConfig), the proposal recall of the benchmarks, and
NormRPNHead (detectron2's RPN head with a norm) against functional ops.
"""

import math

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage
from dw_reference import reference_dw_losses, reference_dw_sums_of_scores
from helpers import REPO, assert_same_architecture
from torch import nn

from dual_weighting import DWRPN, DWCriterion, NormRPNHead
from dual_weighting.engine import load_yacs_config

CONFIGS = REPO / "configs"
YAML = CONFIGS / "COCO-Detection" / "dw_rpn_faster_rcnn_R_50_FPN_1x.yaml"
LAZY = CONFIGS / "lazy" / "COCO-Detection" / "dw_rpn_faster_rcnn_R_50_FPN_1x.py"
LOSS_WEIGHT = {"loss_rpn_cls": 0.7, "loss_rpn_loc": 1.3}
BOX_WEIGHTS = (2.0, 2.0, 1.0, 1.0)


def make_rpn(head, sizes, aspect_ratios, strides, **kwargs):
    in_features = [f"p{i}" for i in range(len(strides))]
    return DWRPN(
        in_features=in_features,
        head=head,
        anchor_generator=DefaultAnchorGenerator(
            sizes=sizes, aspect_ratios=aspect_ratios, strides=strides, offset=0.0
        ),
        box2box_transform=Box2BoxTransform(weights=BOX_WEIGHTS),
        pre_nms_topk=(200, 100),
        post_nms_topk=(50, 50),
        **kwargs,
    )


class FixedHead(nn.Module):
    """An RPN head that returns given predictions: L logits (N, A, H, W), L deltas (N, 4A, H, W)."""

    def __init__(self, logits, deltas):
        super().__init__()
        self.logits = nn.ParameterList(logits)
        self.deltas = nn.ParameterList(deltas)

    def forward(self, features):
        return list(self.logits), list(self.deltas)


# A FixedHead has no objectness conv to initialise.
FIXED = {"objectness_prior_prob": None}


def instances(size, boxes):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.zeros(len(inst.gt_boxes), dtype=torch.long)
    return inst


def run(rpn, image_size, feature_shapes, gt_boxes, training=True):
    """The RPN on N images of ``image_size`` with zero features of (H_l, W_l) ``feature_shapes``
    (the heads here are fixed, or read them); returns (proposals, losses, storage)."""
    n = len(gt_boxes)
    images = ImageList(torch.zeros(n, 3, *image_size), [image_size] * n)
    features = {f"p{i}": torch.zeros(n, 8, *hw) for i, hw in enumerate(feature_shapes)}
    gt = [instances(image_size, b) for b in gt_boxes]
    with EventStorage() as storage:
        proposals, losses = rpn.train(training)(images, features, gt if training else None)
    return proposals, losses, storage


# --- A slow reference: docs/DW_SPEC.md, one box at a time, in float64. ---------------------------


def reference_anchors(stride, sizes, aspect_ratios, height, width):
    """(H * W * A, 4) anchors of a level in detectron2's order (row, column, then cell anchor,
    sizes outer and ratios inner), centred on (j * stride, i * stride)."""
    cells = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = math.sqrt(size * size / ratio)
            cells.append((w, ratio * w))
    anchors = [
        (j * stride - w / 2, i * stride - h / 2, j * stride + w / 2, i * stride + h / 2)
        for i in range(height)
        for j in range(width)
        for w, h in cells
    ]
    return torch.tensor(anchors, dtype=torch.float64)


def reference_decode(deltas, anchors):
    """detectron2's Box2BoxTransform(BOX_WEIGHTS) on (P, 4) deltas and anchors."""
    wx, wy, ww, wh = BOX_WEIGHTS
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = anchors[:, 0] + widths / 2, anchors[:, 1] + heights / 2
    clamp = math.log(1000.0 / 16)
    x = cx + deltas[:, 0] / wx * widths
    y = cy + deltas[:, 1] / wy * heights
    w = torch.exp((deltas[:, 2] / ww).clamp(max=clamp)) * widths
    h = torch.exp((deltas[:, 3] / wh).clamp(max=clamp)) * heights
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=1)


def reference_rpn_losses(levels, gt_boxes, loss_weight):
    """DW-RPN's two losses: the spec's losses (dw_reference.py) of the anchors' objectness, one
    class, and decoded proposals, under RPN's names and weights.

    Args:
        levels: per level ``(stride, sizes, aspect_ratios, logits (N, A, H, W), deltas
            (N, 4A, H, W))``, predictions in float64.
        gt_boxes: per image, a list of XYXY boxes.
    """
    anchors, strides, scores, pred = [], [], [], []
    for stride, sizes, ratios, logits, deltas in levels:
        n, a, h, w = logits.shape
        anchors.append(reference_anchors(stride, sizes, ratios, h, w))
        strides.append(torch.full((h * w * a,), float(stride), dtype=torch.float64))
        scores.append(torch.sigmoid(logits.permute(0, 2, 3, 1).reshape(n, -1, 1)))
        level_deltas = deltas.reshape(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
        pred.append(torch.stack([reference_decode(d, anchors[-1]) for d in level_deltas]))
    anchors = torch.cat(anchors)
    boxes = [torch.tensor(b, dtype=torch.float64).reshape(-1, 4) for b in gt_boxes]
    dw = reference_dw_losses(
        (anchors[:, :2] + anchors[:, 2:]) / 2,
        torch.cat(strides),
        torch.cat(scores, 1),
        torch.cat(pred, 1),
        boxes,
        [torch.zeros(len(b), dtype=torch.long) for b in boxes],
        sums=reference_dw_sums_of_scores,
    )
    return {
        "loss_rpn_cls": loss_weight["loss_rpn_cls"] * (dw["loss_cls_pos"] + dw["loss_cls_neg"]),
        "loss_rpn_loc": loss_weight["loss_rpn_loc"] * dw["loss_loc"],
    }


# Two levels (strides 8 and 16) of a 64 x 80 image, two sizes and three aspect ratios on each.
LEVELS = [(8, [12, 20], [0.5, 1.0, 2.0], (8, 10)), (16, [32, 48], [0.5, 1.0, 2.0], (4, 5))]
# Image 0: two overlapping boxes (some anchors in both), one partly outside the image, one of
# zero area; image 1: none; image 2: a box wholly outside the image and two ordinary ones.
GT_BOXES = [
    [(8.0, 6.0, 30.0, 28.0), (14.0, 10.0, 44.0, 36.0), (-20.0, 30.0, 18.0, 70.0), (50, 9, 50, 30)],
    [],
    [(100.0, 80.0, 140.0, 120.0), (20.0, 20.0, 60.0, 44.0), (44.0, 4.0, 76.0, 60.0)],
]


def random_predictions(num_images, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits, deltas = [], []
    for _, sizes, ratios, (h, w) in LEVELS:
        a = len(sizes) * len(ratios)
        logits.append(torch.randn(num_images, a, h, w, generator=g) * 1.5 - 1)
        deltas.append(torch.randn(num_images, 4 * a, h, w, generator=g) * 0.3)
    return logits, deltas


def level_rpn(head, **kwargs):
    return make_rpn(
        head,
        sizes=[sizes for _, sizes, _, _ in LEVELS],
        aspect_ratios=[ratios for _, _, ratios, _ in LEVELS],
        strides=[s for s, _, _, _ in LEVELS],
        **kwargs,
    )


def test_losses_equal_the_slow_reference():
    logits, deltas = random_predictions(len(GT_BOXES))
    rpn = level_rpn(FixedHead(logits, deltas), loss_weight=LOSS_WEIGHT, **FIXED)
    _, losses, storage = run(rpn, (64, 80), [hw for *_, hw in LEVELS], GT_BOXES)
    levels = [
        (s, sizes, ratios, x.double(), d.double())
        for (s, sizes, ratios, _), x, d in zip(LEVELS, logits, deltas)
    ]
    reference = reference_rpn_losses(levels, GT_BOXES, LOSS_WEIGHT)
    assert set(losses) == set(reference)
    for name, value in losses.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value.double(), reference[name], rtol=2e-5, atol=1e-7)

    # The case is not trivial: some anchors are good positives (a negative weight below 1),
    # some in two bags, and the assignment's pairs are the inside pairs.
    inputs = rpn.criterion_inputs(
        rpn.anchor_generator([torch.zeros(1, 1, *hw) for *_, hw in LEVELS]),
        [x.permute(0, 2, 3, 1).flatten(1) for x in logits],
        [
            d.view(len(GT_BOXES), -1, 4, *d.shape[-2:]).permute(0, 3, 4, 1, 2).flatten(1, -2)
            for d in deltas
        ],
    )
    boxes = [torch.tensor(b).reshape(-1, 4) for b in GT_BOXES]
    classes = [torch.zeros(len(b), dtype=torch.long) for b in boxes]
    assignment = rpn.criterion.assign(*inputs, boxes, classes)
    assert (assignment.neg_weight < 0.5).sum() >= 3
    pairs = torch.stack([assignment.image, assignment.point])
    assert pairs.unique(dim=1).shape[1] < pairs.shape[1]
    assert storage.latest()["rpn/num_candidates"][0] == len(assignment.image) / 3


def test_hand_made_anchor_assignment_of_one_box():
    """A 16 x 16 image, one level of stride 8 (2 x 2 cells, centres 0 and 8), square anchors of
    sides 8 and 12, zero predictions (every score 1/2, every proposal its anchor), one box
    (2, 2, 14, 14). Only the two anchors centred at (8, 8) are inside it: A = (4, 4, 12, 12),
    IoU 4/9 = GIoU, and B = the box itself, IoU 1. Their center prior is 1."""
    logits, deltas = [torch.zeros(1, 2, 2, 2)], [torch.zeros(1, 8, 2, 2)]
    rpn = make_rpn(
        FixedHead(logits, deltas),
        [[8, 12]],
        [[1.0]],
        [8],
        loss_weight={"loss_rpn_cls": 0.5},
        **FIXED,
    )
    _, losses, _ = run(rpn, (16, 16), [(2, 2)], [[(2.0, 2.0, 14.0, 14.0)]])

    anchors = rpn.anchor_generator([torch.zeros(1, 1, 2, 2)])
    inputs = rpn.criterion_inputs(anchors, [logits[0].flatten(1)], [torch.zeros(1, 8, 4)])
    points, strides, cls_logits, quality, pred_boxes = inputs
    assert points[6:].tolist() == [[8.0, 8.0], [8.0, 8.0]] and strides.tolist() == [8.0] * 8
    assert cls_logits.shape == (1, 8, 1) and quality is None
    assert pred_boxes[0, 6:].tolist() == [[4.0, 4.0, 12.0, 12.0], [2.0, 2.0, 14.0, 14.0]]
    a = rpn.criterion.assign(*inputs, [torch.tensor([[2.0, 2, 14, 14]])], [torch.tensor([0])])
    assert a.point.tolist() == [6, 7] and a.box.tolist() == [0, 0]
    assert a.prior.tolist() == [1.0, 1.0]
    torch.testing.assert_close(a.iou, torch.tensor([4 / 9, 1.0]))
    torch.testing.assert_close(a.p_loc, torch.tensor([math.exp(-25 / 9), 1.0]))
    # t(A) = (1 - 16/81) / 0.75 > 1, t(B) = 0: t1 = 0, t2 = 1; A has IoU < 0.5 so stays 1, and
    # B is (0 + 1e-12) / (1 + 1e-12): no longer a negative. Every other anchor stays at 1.
    expected_neg = torch.ones(1, 8, 1)
    expected_neg[0, 7, 0] = 1e-12
    torch.testing.assert_close(a.neg_weight, expected_neg, rtol=1e-5, atol=1e-16)

    v_a, v_b = 0.5 * math.exp(-25 / 9), 0.5
    den = math.exp(3 * v_a) * v_a + math.exp(3 * v_b) * v_b
    w_a, w_b = math.exp(5 * v_a) * v_a / den, math.exp(5 * v_b) * v_b / den
    torch.testing.assert_close(a.pos_weight, torch.tensor([w_a, w_b]))
    log2 = math.log(2)
    # One box; the negative normaliser sum(1 - w_neg) = 1 - 1e-12 is clamped to 1; the seven
    # anchors left as full negatives each add q^2 BCE(q, 0) = log(2) / 4.
    pos_cls, pos_loc, neg = 0.25 * (w_a + w_b) * log2, 0.25 * w_a * 25 / 9, 7 * log2 / 4
    torch.testing.assert_close(losses["loss_rpn_cls"], torch.tensor(0.5 * (pos_cls + neg)))
    torch.testing.assert_close(losses["loss_rpn_loc"], torch.tensor(pos_loc))  # weight 1


def trainable_rpn(seed=0):
    torch.manual_seed(seed)
    head = StandardRPNHead(in_channels=8, num_anchors=6)
    return level_rpn(head, loss_weight=LOSS_WEIGHT)


def fixed_features(num_images, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        f"p{i}": torch.randn(num_images, 8, *hw, generator=g) for i, (*_, hw) in enumerate(LEVELS)
    }


def train_steps(rpn, gt_boxes, steps, lr=0.05, image_size=(64, 80)):
    n = len(gt_boxes)
    images = ImageList(torch.zeros(n, 3, *image_size), [image_size] * n)
    features = fixed_features(n)
    gt = [instances(image_size, b) for b in gt_boxes]
    optimizer = torch.optim.SGD(rpn.parameters(), lr=lr, momentum=0.9)
    history = []
    with EventStorage():
        for _ in range(steps):
            _, losses = rpn.train()(images, features, gt)
            assert all(torch.isfinite(v) for v in losses.values()), losses
            optimizer.zero_grad()
            sum(losses.values()).backward()
            assert all(torch.isfinite(p.grad).all() for p in rpn.parameters())
            optimizer.step()
            history.append({k: v.item() for k, v in losses.items()})
    return history


def test_losses_decrease_on_a_fixed_batch():
    # A large step: the positives' scores start at the prior, 0.02, where the sigmoid is flat.
    history = train_steps(trainable_rpn(), GT_BOXES, steps=12, lr=1.0)
    for name in ("loss_rpn_cls", "loss_rpn_loc"):
        assert history[-1][name] < 0.85 * history[0][name], [h[name] for h in history]


def test_gradients_reach_every_head_parameter_each_loss_its_own_branch():
    rpn = trainable_rpn()
    n = len(GT_BOXES)
    images = ImageList(torch.zeros(n, 3, 64, 80), [(64, 80)] * n)
    gt = [instances((64, 80), b) for b in GT_BOXES]
    with EventStorage():
        _, losses = rpn.train()(images, fixed_features(n), gt)
    names, params = zip(*rpn.rpn_head.named_parameters())
    grads = {}
    for name in ("loss_rpn_cls", "loss_rpn_loc"):
        g = torch.autograd.grad(losses[name], params, retain_graph=True, allow_unused=True)
        grads[name] = {
            n: torch.zeros_like(p) if x is None else x for n, p, x in zip(names, params, g)
        }
    total = {n: grads["loss_rpn_cls"][n] + grads["loss_rpn_loc"][n] for n in grads["loss_rpn_cls"]}
    assert all(g.abs().sum() > 0 for g in total.values()), [
        n for n, g in total.items() if not g.any()
    ]
    # The weights carry no gradient: objectness learns from loss_rpn_cls only, the deltas from
    # loss_rpn_loc only; both reach the shared conv.
    cls, loc = grads["loss_rpn_cls"], grads["loss_rpn_loc"]
    assert cls["objectness_logits.weight"].any() and not cls["anchor_deltas.weight"].any()
    assert loc["anchor_deltas.weight"].any() and not loc["objectness_logits.weight"].any()
    assert cls["conv.weight"].any() and loc["conv.weight"].any()


def test_objectness_starts_at_dws_prior_or_detectron2s():
    assert torch.allclose(trainable_rpn().rpn_head.objectness_logits.bias, torch.tensor(-3.8918))
    torch.manual_seed(0)
    head = StandardRPNHead(in_channels=8, num_anchors=6)
    assert not level_rpn(head, objectness_prior_prob=None).rpn_head.objectness_logits.bias.any()
    with pytest.raises(ValueError, match="objectness_logits"):
        level_rpn(FixedHead(*random_predictions(1)))


def test_a_stopped_dw_rpn_without_a_norm_in_its_head_is_told_to_put_one_there():
    gt = [[[10.0, 8.0, 50.0, 40.0]]]
    shapes = [hw for *_, hw in LEVELS]
    heads = {
        "detectron2's": (StandardRPNHead, {}),
        "NormRPNHead without a norm": (NormRPNHead, {"norm": ""}),
        "NormRPNHead with BatchNorm": (NormRPNHead, {"norm": "BN"}),
    }
    messages = {}
    for name, (head_class, kwargs) in heads.items():
        rpn = level_rpn(head_class(in_channels=8, num_anchors=6, **kwargs))
        # On zero features every objectness logit is about this bias: sigmoid(-200) is 0 in
        # float32, every positive weight underflows, and the criterion stops the run.
        nn.init.constant_(rpn.rpn_head.objectness_logits.bias, -200.0)
        for style in (None, "yacs", "lazy"):
            rpn.criterion.config_style = style
            with pytest.raises(FloatingPointError, match="DW-RPN training collapsed") as error:
                run(rpn, (64, 80), shapes, gt)
            messages[name, style] = str(error.value)
    for style, fix in (
        (None, "give the RPN a NormRPNHead"),
        ("yacs", 'set MODEL.RPN.HEAD_NAME "NormRPNHead"'),
        ("lazy", "make model.proposal_generator.head a NormRPNHead"),
    ):
        for name in ("detectron2's", "NormRPNHead without a norm"):
            assert messages[name, style].endswith(f"the features below it: {fix}"), name
        assert "NormRPNHead" not in messages["NormRPNHead with BatchNorm", style]
    # A normalised head keeps the criterion's own advice, unchanged.
    assert "SOLVER.BASE_LR" in messages["NormRPNHead with BatchNorm", "yacs"]


def test_empty_and_crowded_images_train():
    # No box anywhere: only the negative loss, normalised by 1.
    history = train_steps(trainable_rpn(), [[], []], steps=2)
    assert all(h["loss_rpn_loc"] == 0 and h["loss_rpn_cls"] > 0 for h in history)
    # 300 small boxes, many anchors inside several of them.
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(300, 2, generator=g) * torch.tensor([70.0, 54])
    crowded = torch.cat([corners, corners + 6 + 10 * torch.rand(300, 2, generator=g)], 1)
    history = train_steps(trainable_rpn(), [crowded.tolist(), []], steps=2)
    assert all(h["loss_rpn_loc"] > 0 for h in history)


def test_boxes_outside_the_image_and_of_zero_area():
    """As DW-FCOS: such boxes reach the criterion unchanged (detectron2's mapper clips and drops
    empty boxes before a model sees them); a box that contains no anchor centre (zero area, or
    wholly outside the image) has an empty bag and only counts in the number of boxes."""
    good = [(20.0, 20.0, 60.0, 44.0)]
    awkward = [
        (30.0, 30.0, 30.0, 50.0),
        (10, 10, 40, 10),
        (100.0, 80, 140, 120),
        (-50, -40, -5, -2),
    ]
    partly_outside = [(-20.0, 30.0, 18.0, 90.0)]
    logits, deltas = random_predictions(1)
    rpn = level_rpn(FixedHead(logits, deltas), **FIXED)
    shapes = [hw for *_, hw in LEVELS]
    alone = run(rpn, (64, 80), shapes, [good])[1]
    with_awkward = run(rpn, (64, 80), shapes, [good + awkward])[1]
    torch.testing.assert_close(with_awkward["loss_rpn_loc"], alone["loss_rpn_loc"] / 5)
    assert with_awkward["loss_rpn_cls"] < alone["loss_rpn_cls"]
    history = train_steps(trainable_rpn(), [good + awkward + partly_outside, awkward], steps=2)
    assert all(h["loss_rpn_loc"] > 0 for h in history)


def test_proposals_are_detectron2s_in_training_and_at_inference():
    logits, deltas = random_predictions(len(GT_BOXES))
    head = FixedHead(logits, deltas)
    dw = level_rpn(head, **FIXED)
    d2 = RPN(
        in_features=dw.in_features,
        head=head,
        anchor_generator=dw.anchor_generator,
        anchor_matcher=None,
        box2box_transform=dw.box2box_transform,
        batch_size_per_image=0,
        positive_fraction=0.0,
        pre_nms_topk=(200, 100),
        post_nms_topk=(50, 50),
    )
    shapes = [hw for *_, hw in LEVELS]
    for training in (True, False):
        # detectron2's RPN is run without ground truth (its losses are not at stake here).
        d2.training = training
        images = ImageList(torch.zeros(3, 3, 64, 80), [(64, 80)] * 3)
        features = {f"p{i}": torch.zeros(3, 8, *hw) for i, hw in enumerate(shapes)}
        with torch.no_grad():
            expected = d2.predict_proposals(
                d2.anchor_generator(list(features.values())),
                [x.permute(0, 2, 3, 1).flatten(1) for x in logits],
                [
                    d.view(3, -1, 4, *d.shape[-2:]).permute(0, 3, 4, 1, 2).flatten(1, -2)
                    for d in deltas
                ],
                images.image_sizes,
            )
        proposals, losses, _ = run(dw, (64, 80), shapes, GT_BOXES, training=training)
        assert bool(losses) == training
        for p, e in zip(proposals, expected):
            assert len(p) == len(e) > 0
            assert torch.equal(p.proposal_boxes.tensor, e.proposal_boxes.tensor)
            assert torch.equal(p.objectness_logits, e.objectness_logits)


# --- The Faster R-CNN configs. ---------------------------------------------------------------

THIN = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_HEADS.NUM_CLASSES", "3",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64",
]  # fmt: skip


def rcnn_batch():
    g = torch.Generator().manual_seed(0)
    boxes = [[(4.0, 6.0, 40.0, 50.0), (30.0, 10.0, 90.0, 60.0)], []]
    batch = []
    for b in boxes:
        inst = instances((64, 96), b)
        inst.gt_classes = torch.arange(len(b))
        batch.append({"image": torch.rand(3, 64, 96, generator=g) * 255, "instances": inst})
    return batch


def test_faster_rcnn_from_yacs_trains_and_infers_with_dw_rpn():
    cfg = load_yacs_config(str(YAML), THIN)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.proposal_generator, DWRPN)
    with EventStorage():
        losses = model.train()(rcnn_batch())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad.any() for p in model.proposal_generator.rpn_head.parameters())
    with torch.no_grad():
        (out,) = model.eval()([{"image": rcnn_batch()[0]["image"], "height": 32, "width": 48}])
    assert out["instances"].image_size == (32, 48)


def test_yacs_and_lazy_configs_build_the_same_faster_rcnn():
    yacs_model = build_model(load_yacs_config(str(YAML), ["MODEL.DEVICE", "cpu"]))
    lazy_model = instantiate(LazyConfig.load(str(LAZY)).model)

    assert_same_architecture(lazy_model, yacs_model)
    yacs_rpn, lazy_rpn = yacs_model.proposal_generator, lazy_model.proposal_generator
    assert type(lazy_rpn) is type(yacs_rpn) is DWRPN
    for name in DWCriterion.defaults():
        assert getattr(lazy_rpn.criterion, name) == getattr(yacs_rpn.criterion, name), name
    for name in ("in_features", "pre_nms_topk", "post_nms_topk", "nms_thresh", "loss_weight"):
        assert getattr(lazy_rpn, name) == getattr(yacs_rpn, name), name
    assert tuple(lazy_rpn.box2box_transform.weights) == tuple(yacs_rpn.box2box_transform.weights)
    assert lazy_rpn.anchor_generator.strides == yacs_rpn.anchor_generator.strides
    for a, b in zip(lazy_rpn.anchor_generator.cell_anchors, yacs_rpn.anchor_generator.cell_anchors):
        assert torch.equal(a, b)
    bias = lazy_rpn.rpn_head.objectness_logits.bias
    assert torch.equal(bias, yacs_rpn.rpn_head.objectness_logits.bias) and bias[0] < -3
    assert not lazy_model.roi_heads.mask_on and not yacs_model.roi_heads.mask_on
    assert torch.equal(lazy_model.pixel_mean, yacs_model.pixel_mean)
    assert lazy_model.input_format == yacs_model.input_format == "BGR"


# ---------------------------------------------------------------------------------------------
# NormRPNHead
# ---------------------------------------------------------------------------------------------


def random_affine(head):
    """Random conv biases and norm affine parameters, so that a test sees where each goes."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in head.parameters():
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g))
    return head


def test_norm_rpn_head_is_conv_group_norm_relu_then_detectron2s_1x1_convs():
    torch.manual_seed(0)
    head = random_affine(NormRPNHead(in_channels=64, num_anchors=3, norm="GN"))
    features = [torch.randn(2, 64, 6, 5), torch.randn(2, 64, 3, 3)]
    logits, deltas = head(features)
    conv, norm = head.conv, head.conv.norm
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 32
    for x, got_logits, got_deltas in zip(features, logits, deltas):
        hidden = torch.relu(
            torch.nn.functional.group_norm(
                torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1),
                32, norm.weight, norm.bias, eps=1e-5,
            )
        )  # fmt: skip
        expected_logits = torch.nn.functional.conv2d(
            hidden, head.objectness_logits.weight, head.objectness_logits.bias
        )
        expected_deltas = torch.nn.functional.conv2d(
            hidden, head.anchor_deltas.weight, head.anchor_deltas.bias
        )
        assert got_logits.shape == (2, 3, *x.shape[2:]) and got_deltas.shape == (
            2,
            12,
            *x.shape[2:],
        )
        torch.testing.assert_close(got_logits, expected_logits)
        torch.testing.assert_close(got_deltas, expected_deltas)


def test_norm_rpn_head_sends_less_gradient_to_larger_features_unlike_standard_rpn_head():
    # Why the trees DW-RPN uses it: at its initial conv bias 0, the normalised head's outputs do
    # not change when the FPN's features grow, and the gradient it sends them shrinks as 1 / scale;
    # detectron2's head scales its hidden state with them and sends the same gradient.
    x = torch.randn(2, 64, 5, 5)

    def outputs_and_input_gradient(head, scale):
        features = (scale * x).requires_grad_()
        logits, deltas = head([features])
        (logits[0].square().sum() + deltas[0].square().sum()).backward()
        return logits[0].detach(), features.grad

    torch.manual_seed(0)
    norm_head = NormRPNHead(in_channels=64, num_anchors=3, norm="GN")
    torch.manual_seed(0)
    standard_head = StandardRPNHead(in_channels=64, num_anchors=3)
    norm_logits, norm_grad = outputs_and_input_gradient(norm_head, 1.0)
    norm_logits_100, norm_grad_100 = outputs_and_input_gradient(norm_head, 100.0)
    torch.testing.assert_close(norm_logits_100, norm_logits, rtol=1e-4, atol=1e-5)
    # GroupNorm's eps makes the 1 / scale law approximate where a group's variance is small.
    torch.testing.assert_close(norm_grad_100.norm() * 100, norm_grad.norm(), rtol=1e-2, atol=0)
    standard_logits, standard_grad = outputs_and_input_gradient(standard_head, 1.0)
    standard_logits_100, standard_grad_100 = outputs_and_input_gradient(standard_head, 100.0)
    bias = standard_head.objectness_logits.bias[None, :, None, None].detach()
    torch.testing.assert_close(standard_logits_100 - bias, 100 * (standard_logits - bias))
    assert standard_grad_100.norm() > 10 * standard_grad.norm()


def test_norm_rpn_head_without_norm_is_standard_rpn_head():
    torch.manual_seed(0)
    plain = NormRPNHead(in_channels=16, num_anchors=3, norm="", conv_dims=[16, 8])
    torch.manual_seed(0)
    standard = StandardRPNHead(in_channels=16, num_anchors=3, conv_dims=[16, 8])
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in standard.state_dict().items()
    }
    x = [torch.randn(1, 16, 4, 4)]
    for a, b in zip(plain(x), standard(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_trees_dw_rpn_uses_group_norm_head_and_faster_rcnn_detectron2s():
    trees = CONFIGS / "trees"
    dw = build_model(
        load_yacs_config(str(trees / "dw_rpn_faster_rcnn_Lite0_FPN.yaml"), ["MODEL.WEIGHTS", ""])
    )
    original = build_model(
        load_yacs_config(str(trees / "faster_rcnn_Lite0_FPN.yaml"), ["MODEL.WEIGHTS", ""])
    )
    assert type(dw.proposal_generator.rpn_head) is NormRPNHead
    assert isinstance(dw.proposal_generator.rpn_head.conv.norm, nn.GroupNorm)
    assert type(original.proposal_generator.rpn_head) is StandardRPNHead

"""DWLossFCOS: detectron2's own FCOS (head, anchor points, inference) trained with the DW
criterion. The candidates by hand, the decoded boxes against detectron2's rule written out, a
short training on a fixed batch, awkward ground truth, and the yacs / LazyConfig twins."""

import pytest
import torch
from detectron2.config import instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from helpers import REPO, TwoLevels, assert_same_architecture
from torch import nn

from benchmarks.detectors import SMALL_CONFIG, build_detector, make_cfg
from dual_weighting import DWCriterion
from dual_weighting.engine import load_lazy_config, load_yacs_config
from dual_weighting.modeling import DWLossFCOS

CONFIGS = REPO / "configs"
YAML = CONFIGS / "COCO-Detection" / "fcos_dw_loss_R_50_FPN_1x.yaml"
LAZY = CONFIGS / "lazy" / "COCO-Detection" / "fcos_dw_loss_R_50_FPN_1x.py"
C = 3


def tiny_model(criterion=None):
    torch.manual_seed(0)
    backbone = TwoLevels()
    head = FCOSHead(
        input_shape=[ShapeSpec(channels=32)] * 2, conv_dims=[32, 32], num_classes=C, norm="GN"
    )
    return DWLossFCOS(
        backbone=backbone,
        head=head,
        head_in_features=["p3", "p4"],
        num_classes=C,
        criterion=criterion,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[255.0, 255.0, 255.0],
    )


def instances(boxes, classes, size=(32, 48)):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def image(size=(32, 48), seed=0):
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed)) * 255


def predictions_of(model, batch):
    images = model.preprocess_image(batch)
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    return features, model.head(features)


def test_candidates_are_detectron2s_anchor_points_inside_the_box_and_boxes_its_decoding():
    model = tiny_model()
    features, predictions = predictions_of(model, [{"image": image()}])
    points, strides, _, _, pred_boxes = model.criterion_inputs(features, predictions)
    # 32 x 48 input: p3 is 4 x 6 points at ((j + 0.5) 8, (i + 0.5) 8) (detectron2's FCOS builds
    # its DefaultAnchorGenerator with the default offset 0.5), p4 2 x 3 at stride 16.
    assert points.shape == (24 + 6, 2)
    assert points[:24].tolist() == [[8 * j + 4.0, 8 * i + 4.0] for i in range(4) for j in range(6)]
    assert points[24:].tolist() == [
        [16 * j + 8.0, 16 * i + 8.0] for i in range(2) for j in range(3)
    ]
    assert strides.tolist() == [8.0] * 24 + [16.0] * 6
    # detectron2's normalised distances, made valid by a ReLU: (x - l s, y - t s, x + r s, ...).
    deltas = torch.cat([d.permute(0, 2, 3, 1).reshape(1, -1, 4) for d in predictions[1]], dim=1)
    deltas = deltas.clamp(min=0)
    assert (deltas == 0).any() and (deltas > 0).any()  # both sides of the ReLU are exercised
    s = strides[:, None]
    expected = torch.cat((points - deltas[0, :, :2] * s, points + deltas[0, :, 2:] * s), dim=1)
    torch.testing.assert_close(pred_boxes[0], expected)

    # Box (6, 2, 22, 14) holds, strictly inside, p3's points x in {12, 20}, y in {4, 12} (cells
    # 1, 2, 7, 8; x = 4 and x = 28 are outside) and p4's (8, 8) (cell 24 + 0; (24, 8) is not).
    assignment = model.criterion.assign(
        *model.criterion_inputs(features, predictions),
        [torch.tensor([[6.0, 2.0, 22.0, 14.0]])],
        [torch.tensor([2])],
    )
    assert assignment.point.tolist() == [1, 2, 7, 8, 24]
    assert assignment.neg_weight.shape == (1, 30, C)


def test_training_steps_lower_the_losses_and_reach_every_head_parameter():
    model = tiny_model().train()
    batch = [
        {"image": image(seed=1), "instances": instances([[4, 4, 28, 20], [20, 8, 44, 30]], [0, 2])},
        {"image": image(seed=2), "instances": instances([[0, 0, 30, 30]], [1])},
    ]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals = []
    with EventStorage():
        for step in range(12):
            losses = model(batch)
            assert set(losses) == {"loss_cls_pos", "loss_loc", "loss_cls_neg"}
            total = sum(losses.values())
            assert torch.isfinite(total)
            optimizer.zero_grad()
            total.backward()
            if step == 0:
                no_grad = [n for n, p in model.head.named_parameters() if not p.grad.abs().sum()]
                assert no_grad == [], no_grad  # the centerness branch through the joint score
            optimizer.step()
            totals.append(total.item())
    assert totals[-1] < 0.8 * totals[0], totals


@pytest.mark.parametrize(
    "boxes, classes",
    [
        ([], []),  # no boxes
        ([[40, 24, 60, 40], [-10, -10, 6, 6]], [0, 1]),  # partly and mostly outside the image
        ([[10, 10, 10, 20], [12, 12, 30, 12]], [0, 1]),  # zero width, zero height
        ([[x, y, x + 9, y + 7] for x in range(0, 40, 3) for y in range(0, 24, 3)], [0] * 112),
    ],
    ids=["empty", "outside", "zero_area", "crowded"],
)
def test_awkward_ground_truth_trains_with_finite_losses_and_gradients(boxes, classes):
    """What DWFCOS gives them (tests/engine/test_robustness.py): finite losses and gradients; a box
    holding no anchor point has no candidates, so only the negative loss sees it."""
    model = tiny_model().train()
    with EventStorage():
        losses = model([{"image": image(), "instances": instances(boxes, classes)}])
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if not boxes:
        assert losses["loss_cls_pos"] == 0 and losses["loss_loc"] == 0


def test_a_stopped_run_names_dwlossfcos_not_detectron2s_fcos():
    model = tiny_model().train()
    with torch.no_grad():
        model.head.cls_score.bias.fill_(float("nan"))
    batch = [{"image": image(), "instances": instances([[4, 4, 28, 20]], [0])}]
    with EventStorage(start_iter=7), pytest.raises(FloatingPointError) as error:
        model(batch)
    assert str(error.value) == "DWLossFCOS predictions became infinite or NaN at iteration=7"


def test_inference_is_detectron2s_fcos():
    model = tiny_model().eval()
    assert DWLossFCOS.forward_inference is FCOS.forward_inference
    with torch.no_grad():
        (out,) = model([{"image": image(), "height": 64, "width": 96}])
    result = out["instances"]
    assert result.image_size == (64, 96)
    # detectron2's score sqrt(cls * ctr) above its threshold 0.2.
    assert len(result) == 0 or result.scores.min() > 0.2


def test_focal_loss_arguments_are_refused():
    with pytest.raises(TypeError, match="focal_loss_alpha"):
        DWLossFCOS(
            backbone=TwoLevels(),
            head=nn.Identity(),
            num_classes=C,
            focal_loss_alpha=0.25,
            pixel_mean=[0.0] * 3,
            pixel_std=[1.0] * 3,
        )


def test_yacs_and_lazy_configs_build_the_same_model():
    cfg = load_yacs_config(str(YAML), ["MODEL.DEVICE", "cpu", "MODEL.DW.CENTER_PRIOR_SIGMA", "2.0"])
    yacs_model = build_model(cfg)
    lazy = load_lazy_config(str(LAZY), ["model.criterion.center_prior_sigma=2.0"])
    lazy_model = instantiate(lazy.model)
    assert type(yacs_model) is type(lazy_model) is DWLossFCOS
    assert_same_architecture(lazy_model, yacs_model)
    for name in ("test_score_thresh", "test_topk_candidates", "test_nms_thresh", "num_classes"):
        assert getattr(yacs_model, name) == getattr(lazy_model, name), name
    assert torch.equal(yacs_model.pixel_mean, lazy_model.pixel_mean)
    for name in DWCriterion.defaults():
        assert getattr(yacs_model.criterion, name) == getattr(lazy_model.criterion, name), name
    assert yacs_model.criterion.center_prior_sigma == 2.0


def test_the_benchmark_pairs_it_with_detectron2s_fcos_at_equal_start():
    """tools/benchmark.py speed --speed-variants fcos,fcos_dw: the same model from the same seed,
    only the losses differ."""
    models = []
    for variant in ("fcos", "fcos_dw"):
        torch.manual_seed(0)
        models.append(build_detector(make_cfg(SMALL_CONFIG, variant)))
    fcos, with_dw = models
    assert type(fcos) is FCOS and type(with_dw) is DWLossFCOS
    state = fcos.state_dict()
    assert state.keys() == with_dw.state_dict().keys()
    assert all(torch.equal(v, state[k]) for k, v in with_dw.state_dict().items())
    assert with_dw.test_score_thresh == fcos.test_score_thresh == 0.2

"""DWCriterion's checks of its inputs: every bad input named by argument, index and value;
half-precision and mixed-precision predictions computed in float32 / float64 with the numbers of
float32 / float64; the checks of a collapsed or overflowing assignment callable from a head of
one's own."""

import math

import pytest
import torch

from dual_weighting import DWCriterion

# One 64 x 64 image, candidates every 16 px (stride 16), two classes.
STRIDE = 16.0
POINTS = torch.tensor(
    [[x + 8.0, y + 8.0] for y in range(0, 64, 16) for x in range(0, 64, 16)]
)  # (16, 2)
STRIDES = torch.full((16,), STRIDE)


def inputs(num_images=1, seed=0):
    """Float64 predictions of ``num_images`` images and one box of class 1 each."""
    g = torch.Generator().manual_seed(seed)
    n, p = num_images, len(POINTS)
    cls_logits = torch.randn(n, p, 2, generator=g, dtype=torch.float64)
    quality = torch.randn(n, p, generator=g, dtype=torch.float64)
    half = 10 + 10 * torch.rand(n, p, 2, generator=g, dtype=torch.float64)
    pred_boxes = torch.cat((POINTS - half, POINTS + half), dim=-1)
    gt_boxes = [torch.tensor([[4.0, 4.0, 44.0, 40.0]]) for _ in range(n)]
    gt_classes = [torch.tensor([1]) for _ in range(n)]
    return [POINTS, STRIDES, cls_logits, quality, pred_boxes, gt_boxes, gt_classes]


def refused(args, match):
    criterion = DWCriterion()
    with pytest.raises(ValueError, match=match):
        criterion(*args)
    with pytest.raises(ValueError, match=match):
        criterion.assign(*args)


def test_class_ids_outside_the_logits_are_named_with_index_and_value():
    args = inputs(num_images=2)
    # Class 2 of 2 would have read the next candidate's class 0.
    args[6] = [torch.tensor([1]), torch.tensor([2])]
    refused(args, r"gt_classes\[1\]\[0\] is 2, not a class in \[0, 2\)")
    args[6] = [torch.tensor([-1]), torch.tensor([0])]
    refused(args, r"gt_classes\[0\]\[0\] is -1")
    args[6] = [torch.tensor([1.0]), torch.tensor([0.0])]
    refused(args, r"gt_classes\[0\] is torch.float32; give integer class ids")


def test_lists_shorter_than_the_batch_and_short_candidates_are_refused():
    args = inputs(num_images=2)
    refused([*args[:5], args[5][:1], args[6]], "gt_boxes has 1 tensors but cls_logits has N = 2")
    refused([*args[:6], args[6][:1]], "gt_classes has 1 tensors but cls_logits has N = 2")
    refused([POINTS[:15], *args[1:]], r"points must be \(16, 2\).*got shape \(15, 2\)")
    refused([POINTS, STRIDES[:15], *args[2:]], r"strides must be \(16,\)")
    args[6] = [torch.tensor([1, 0]), torch.tensor([1])]
    refused(args, r"gt_classes\[0\] must be \(1,\) like gt_boxes\[0\], got shape \(2,\)")
    args = inputs()
    args[4] = args[4][..., :3]
    refused(args, r"pred_boxes must be \(1, 16, 4\)")


def test_non_finite_values_are_named():
    args = inputs()
    args[5] = [torch.tensor([[4.0, 4.0, math.nan, 40.0]])]
    refused(args, r"gt_boxes\[0\]\[0\] is \[4.0, 4.0, nan, 40.0\], not finite")
    args = inputs()
    args[2][0, 3, 1] = math.nan
    refused(args, r"cls_logits\[0, 3, 1\] is nan")
    args = inputs()
    args[4][0, 5, 2] = math.inf
    refused(args, r"pred_boxes\[0, 5\] is \[.*inf.*\], not finite")
    args = inputs()
    args[1] = STRIDES.clone()
    args[1][7] = 0
    refused(args, r"strides\[7\] is 0.0, not a positive stride")


def test_infinite_logits_are_scores_of_0_and_1_not_errors():
    args = inputs()
    args[3] = torch.full_like(args[3], math.inf)
    losses = DWCriterion()(*args)
    assert all(torch.isfinite(v) for v in losses.values())


def test_a_nan_box_no_longer_counts_in_the_normaliser():
    """The normaliser of the positive losses is the number of boxes: with a NaN box beside a
    real one, the losses would be halved; now the NaN box is refused, and the real box alone
    gives the losses of one box."""
    one = inputs()
    two = inputs()
    two[5] = [torch.tensor([[4.0, 4.0, 44.0, 40.0], [math.nan] * 4])]
    two[6] = [torch.tensor([1, 0])]
    refused(two, r"gt_boxes\[0\]\[1\] is \[nan, nan, nan, nan\]")
    assert DWCriterion()(*one)["loss_loc"] > 0


def test_half_precision_is_computed_in_float32_with_float32_numbers():
    args = inputs()
    float32 = DWCriterion()(*args[:2], *(x.float() for x in args[2:5]), *args[5:])
    for dtype in (torch.float16, torch.bfloat16):
        half_inputs = [x.to(dtype).requires_grad_() for x in args[2:5]]
        losses = DWCriterion()(*args[:2], *half_inputs, *args[5:])
        # The same numbers as float32 on the rounded inputs, in float32.
        rounded = DWCriterion()(*args[:2], *(x.float() for x in half_inputs), *args[5:])
        for k, v in losses.items():
            assert v.dtype == torch.float32
            torch.testing.assert_close(v, rounded[k])
            torch.testing.assert_close(v, float32[k], rtol=0.05, atol=1e-3)
        sum(losses.values()).backward()
        assert all(x.grad is not None and x.grad.dtype == dtype for x in half_inputs)


def test_half_precision_at_a_real_size_gives_finite_losses():
    """20000 candidates and 80 classes in float16: computed in float16, the negative loss's sum
    overflowed to inf (and scores rounding past 1 made the BCE refuse them)."""
    g = torch.Generator().manual_seed(0)
    p, c = 20000, 80
    points = torch.rand(p, 2, generator=g) * 800
    strides = torch.full((p,), 8.0)
    cls_logits = (torch.randn(1, p, c, generator=g) * 8).half()
    quality = (torch.randn(1, p, generator=g) * 8).half()
    pred_boxes = torch.cat((points - 20, points + 20), dim=-1)[None].half()
    gt_boxes = [torch.rand(30, 2, generator=g) * 400 + torch.tensor([[0.0, 0.0]])]
    gt_boxes = [torch.cat((gt_boxes[0], gt_boxes[0] + 200), dim=1)]
    gt_classes = [torch.randint(0, c, (30,), generator=g)]
    losses = DWCriterion()(points, strides, cls_logits, quality, pred_boxes, gt_boxes, gt_classes)
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in losses.values())


def test_mixed_float32_and_float64_compute_in_float64():
    args = inputs()
    mixed = [*args[:2], args[2].float(), args[3], args[4], *args[5:]]
    losses = DWCriterion()(*mixed)
    expected = DWCriterion()(*args[:2], args[2].float().double(), *args[3:])
    for k, v in losses.items():
        assert v.dtype == torch.float64
        torch.testing.assert_close(v, expected[k])
    refused([*args[:2], args[2].long(), *args[3:]], "cls_logits is torch.int64")


def test_collapse_and_overflow_checks_from_a_head_of_ones_own():
    args = inputs()
    criterion = DWCriterion()
    criterion.check(criterion.assign(*args), "my head", 3)  # healthy: passes
    args[2] = (args[2] - 200).float()  # sigmoid(-200) is 0 in float32: a collapsed classifier
    args[3], args[4] = args[3].float(), args[4].float()
    dead = criterion.assign(*args)
    with pytest.raises(FloatingPointError, match="my head training collapsed at iteration=9"):
        criterion.check(dead, "my head", 9)
    # sigmoid(200) is 1: every joint score saturated, the negative loss at its clamp (finite)
    # and the positive loss 0, so the losses alone would let the run go on.
    args = inputs()
    args[2], args[3], args[4] = (args[2] + 200).float(), (args[3] + 200).float(), args[4].float()
    saturated = criterion.assign(*args)
    losses = criterion.losses(saturated, 1)
    assert losses["loss_cls_pos"] == 0 and 0 < losses["loss_cls_neg"] < float("inf")
    with pytest.raises(FloatingPointError, match="my head training diverged at iteration=4"):
        criterion.check(saturated, "my head", 4)
    # One score at 1 (point 0, inside the box), the 31 others at 0: the positive weights do not
    # vanish, but no loss has a gradient left (the state of a blown-up DW-RetinaNet).
    args = inputs()
    cls_logits = torch.full((1, 16, 2), -200.0)
    cls_logits[0, 0, 1] = 200.0
    args[2] = cls_logits.requires_grad_()
    args[3], args[4] = torch.full((1, 16), 200.0), args[4].float()
    blown_up = criterion.assign(*args)
    assert blown_up.pos_weight.sum() > 0
    sum(criterion.losses(blown_up, 1).values()).backward()
    assert torch.equal(args[2].grad, torch.zeros_like(args[2]))
    with pytest.raises(FloatingPointError, match="diverged at iteration=5: .* exactly 0 or 1"):
        criterion.check(blown_up, "my head", 5)
    args = inputs()
    args[2:5] = [x.float() for x in args[2:5]]
    args[4][0, 0] = torch.tensor([-1e20, -1e20, 1e20, 1e20])  # area overflows float32
    with pytest.raises(FloatingPointError, match="predicted boxes overflow float32"):
        criterion.check(criterion.assign(*args))

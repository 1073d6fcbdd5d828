"""batched_nms_float32: the release's float32 tie rule, against hand-worked boxes, a plain loop and
torchvision's batched_nms away from ties."""

import numpy as np
import pytest
import torch
from detectron2.layers import batched_nms

from dual_weighting.layers import batched_nms_float32

TIE = torch.tensor([[0.0, 0.0, 320.0, 320.0], [0.0, 0.0, 320.0, 192.0]])


@pytest.mark.parametrize("label", [0, 7])
def test_exact_tie_is_kept_as_the_release_keeps_it(label):
    # Intersection 320 * 192 = 61440, union 102400: IoU 0.6 exactly. The release (float32
    # comparison) keeps both boxes; torchvision compares float32(0.6) > 0.6 in double and drops
    # the second. Class 7 shifts both boxes by 7 * 321 = 2247, still exact in float32.
    scores, labels = torch.tensor([0.9, 0.5]), torch.tensor([label, label])
    assert batched_nms_float32(TIE, scores, labels, 0.6).tolist() == [0, 1]
    assert batched_nms(TIE, scores, labels, 0.6).tolist() == [0]


def test_just_above_and_below_the_threshold():
    big = [0.0, 0.0, 320.0, 320.0]
    # IoU 320 * 193 / 102400 = 0.603 and 320 * 191 / 102400 = 0.597.
    boxes = torch.tensor([big, [0.0, 0.0, 320.0, 193.0], [0.0, 0.0, 320.0, 191.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    same = torch.zeros(3, dtype=torch.long)
    assert batched_nms_float32(boxes[:2], scores[:2], same[:2], 0.6).tolist() == [0]
    assert batched_nms_float32(boxes[[0, 2]], scores[[0, 2]], same[:2], 0.6).tolist() == [0, 1]
    # Kept boxes only suppress: box 1 is dropped by 0, so box 2 (IoU 191/193 = 0.99 with box 1)
    # survives only if the threshold lets it past box 0.
    assert batched_nms_float32(boxes, scores, same, 0.6).tolist() == [0, 2]
    # Other classes never suppress each other; output by decreasing score.
    assert batched_nms_float32(boxes, scores, torch.tensor([2, 1, 0]), 0.6).tolist() == [0, 1, 2]


def reference_nms(boxes, scores, labels, threshold):
    """Greedy NMS per class, one pair at a time in numpy float32: drop j when
    inter > float32(threshold) * (area_i + area_j - inter), the release's GPU rule."""
    boxes = boxes.numpy().astype(np.float32)
    # The release's class separation: shift by class * (max coordinate + 1), in float32.
    boxes = boxes + (labels.numpy().astype(np.float32) * (boxes.max() + np.float32(1)))[:, None]
    t = np.float32(threshold)
    order = sorted(range(len(boxes)), key=lambda i: (-float(scores[i]), i))
    kept = []
    for j in order:
        x1, y1, x2, y2 = boxes[j]
        area_j = (x2 - x1) * (y2 - y1)
        for i in kept:
            a1, b1, a2, b2 = boxes[i]
            w = max(np.float32(0), min(a2, x2) - max(a1, x1))
            h = max(np.float32(0), min(b2, y2) - max(b1, y1))
            inter = w * h
            if inter > t * ((a2 - a1) * (b2 - b1) + area_j - inter):
                break
        else:
            kept.append(j)
    return kept


def random_case(num, num_classes, seed):
    """Clustered boxes (as detections are) with coordinates >= 0, scores in (0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    clusters = torch.randint(num // 20 + 1, (num,), generator=generator)
    centres = torch.rand(num // 20 + 1, 2, generator=generator) * 600 + 100
    sizes = torch.rand(num // 20 + 1, 2, generator=generator) * 150 + 20
    xy = centres[clusters] + torch.randn(num, 2, generator=generator) * 6
    wh = sizes[clusters] * (1 + 0.15 * torch.randn(num, 2, generator=generator)).clamp(min=0.5)
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1).clamp(min=0)
    scores = torch.rand(num, generator=generator)
    labels = torch.randint(num_classes, (num,), generator=generator)
    return boxes, scores, labels


def pairwise_iou64(boxes, labels):
    """IoU in float64 of every same-class pair."""
    b = boxes.double()
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (b[:, 2:] - b[:, :2]).prod(-1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    return iou[labels[:, None] == labels[None, :]]


@pytest.mark.parametrize("num,num_classes,seed", [(300, 3, 1), (300, 1, 7), (1100, 5, 5)])
def test_equals_plain_loop_and_torchvision_away_from_ties(num, num_classes, seed):
    boxes, scores, labels = random_case(num, num_classes, seed)
    threshold = 0.6
    # Away from ties: no same-class IoU within 1e-4 of the threshold.
    assert (pairwise_iou64(boxes, labels) - threshold).abs().min() > 1e-4
    keep = batched_nms_float32(boxes, scores, labels, threshold)
    # Many boxes overlap: NMS has work to do, over several 128-box blocks for 1100.
    assert num // 10 < len(keep) < num * 0.9
    assert keep.tolist() == reference_nms(boxes, scores, labels, threshold)
    assert keep.tolist() == batched_nms(boxes, scores, labels, threshold).tolist()
    for block_size in (1, 7, 1024):
        assert torch.equal(
            batched_nms_float32(boxes, scores, labels, threshold, block_size=block_size), keep
        )


def test_float64_input_and_empty_and_bad_input():
    boxes, scores, labels = random_case(50, 2, 3)
    expected = batched_nms_float32(boxes, scores, labels, 0.5)
    assert torch.equal(batched_nms_float32(boxes.double(), scores.double(), labels, 0.5), expected)
    empty = batched_nms_float32(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0).long(), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    with pytest.raises(ValueError, match=r"boxes must be \(R, 4\)"):
        batched_nms_float32(boxes[:, :3], scores, labels, 0.5)
    with pytest.raises(ValueError, match=r"must be \(50,\)"):
        batched_nms_float32(boxes, scores[:10], labels, 0.5)
    boxes[3, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        batched_nms_float32(boxes, scores, labels, 0.5)

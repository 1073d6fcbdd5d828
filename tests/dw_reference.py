"""The tests' one independent reference of DW's losses, and the random cases it is checked on.

``reference_dw_sums_of_scores`` follows docs/DW_SPEC.md section by section with explicit Python
loops over images, boxes and points, and shares no code with the package; it is slow on purpose.
test_losses compares the package with it (DW-FCOS' predictions, ``reference_dw_sums``),
test_losses_distributed its normalisers over two workers, test_retinanet and test_rpn the DW
losses of anchors with it; test_cuda compares the CUDA losses with the CPU ones on its cases
(``make_case``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SIGMA = 1.11


def reference_giou_iou(pred, gt, eps=1e-6):
    """GIoU and IoU of one predicted box (4 scalar tensors) and one gt box (4 floats)."""
    px1, py1, px2, py2 = pred
    gx1, gy1, gx2, gy2 = (torch.tensor(v, dtype=px1.dtype) for v in gt)
    area_p = (px2 - px1) * (py2 - py1)
    area_g = (gx2 - gx1) * (gy2 - gy1)
    iw = torch.clamp(torch.minimum(px2, gx2) - torch.maximum(px1, gx1), min=0)
    ih = torch.clamp(torch.minimum(py2, gy2) - torch.maximum(py1, gy1), min=0)
    overlap = iw * ih
    union = torch.clamp(area_p + area_g - overlap, min=eps)
    iou = overlap / union
    ew = torch.clamp(torch.maximum(px2, gx2) - torch.minimum(px1, gx1), min=0)
    eh = torch.clamp(torch.maximum(py2, gy2) - torch.minimum(py1, gy1), min=0)
    enclose = torch.clamp(ew * eh, min=eps)
    return iou - (enclose - union) / enclose, iou


def reference_dw_sums_of_scores(points, strides, scores, pred_boxes, gt_boxes, gt_classes):
    """Unnormalised sums (pos_cls, pos_loc, neg) and three local normalisers (boxes,
    sum(1 - w_neg), and sum(w_neg q^2) of the bounded negative loss), by the spec, of any
    detector's candidates: ``points`` (P, 2) and ``strides`` (P,), joint scores ``scores``
    (N, P, C) in (0, 1), predicted XYXY boxes ``pred_boxes`` (N, P, 4), and per image the gt
    boxes (G_n, 4) and classes (G_n,)."""
    num_images, num_points, num_classes = scores.shape
    pts = points.tolist()
    strd = strides.tolist()
    zero = scores.sum() * 0
    pos_cls, pos_loc, neg = zero, zero, zero
    neg_norm, score_mass = 0.0, 0.0
    for n in range(num_images):
        q = scores[n]  # (P, C)
        w_neg = [[1.0] * num_classes for _ in range(num_points)]
        for box, cls in zip(gt_boxes[n].tolist(), gt_classes[n].tolist()):
            x1, y1, x2, y2 = box
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            bag = []  # (point, prior, p_cls, p_loc, v, iou)
            for p in range(num_points):
                px, py = pts[p]
                if not min(px - x1, py - y1, x2 - px, y2 - py) > 0:
                    continue
                s = strd[p]
                prior = math.exp(-(((px - cx) / s - 0.0) ** 2) / (2 * SIGMA**2)) * math.exp(
                    -(((py - cy) / s - 0.0) ** 2) / (2 * SIGMA**2)
                )
                giou, iou = reference_giou_iou(pred_boxes[n, p].unbind(), box)
                p_loc = torch.exp(-5 * (1 - giou))
                p_cls = q[p, cls]
                v = (p_cls * p_loc).item()
                bag.append((p, prior, p_cls, p_loc, v, iou.item()))
            if not bag:
                continue
            den = max(sum(math.exp(3 * v) * v * prior for _, prior, _, _, v, _ in bag), 1e-12)
            for _, prior, p_cls, p_loc, v, _ in bag:
                w = math.exp(5 * v) * v * prior / den
                pos_cls = pos_cls + 0.25 * w * F.binary_cross_entropy(p_cls, torch.ones_like(p_cls))
                pos_loc = pos_loc + 0.25 * w * F.binary_cross_entropy(p_loc, torch.ones_like(p_loc))
            ts = [(1 - u**2) / (1 - 0.5**2) for *_, u in bag]
            t1, t2 = min(ts), min(1.0, max(ts))
            for (p, *_, u), t in zip(bag, ts):
                y = 1.0 if u < 0.5 else (t - t1 + 1e-12) / (t2 - t1 + 1e-12)
                w_neg[p][cls] = min(w_neg[p][cls], y)
        w = torch.tensor(w_neg, dtype=q.dtype)
        neg = (
            neg
            + (w * q**2 * F.binary_cross_entropy(q, torch.zeros_like(q), reduction="none")).sum()
        )
        neg_norm += (1 - w).sum().item()
        score_mass += (w * q**2).sum().item()
    num_boxes = float(sum(len(b) for b in gt_boxes))
    return (pos_cls, pos_loc, neg), (num_boxes, neg_norm, score_mass)


def reference_dw_sums(points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes):
    """:func:`reference_dw_sums_of_scores` of DW-FCOS' predictions: the joint score
    ``sigmoid(cls) * sigmoid(ctr)``, boxes at distances ``box_ltrb`` (N, P, 4) of the points."""
    scores = torch.sigmoid(cls_logits) * torch.sigmoid(ctr_logits)[..., None]
    px, py = points[:, 0], points[:, 1]
    lft, top, rgt, bot = box_ltrb.unbind(-1)
    pred_boxes = torch.stack((px - lft, py - top, px + rgt, py + bot), -1)
    return reference_dw_sums_of_scores(points, strides, scores, pred_boxes, gt_boxes, gt_classes)


def reference_dw_losses(*args, sums=reference_dw_sums, bounded_neg_loss=False):
    """Single-process losses: the sums (``sums(*args)``, DW-FCOS' by default) over the clamped
    normalisers; with ``bounded_neg_loss`` the negative one is the larger of sum(1 - w_neg) and
    sum(w_neg q^2)."""
    (pos_cls, pos_loc, neg), (num_boxes, neg_norm, score_mass) = sums(*args)
    if bounded_neg_loss:
        neg_norm = max(neg_norm, score_mass)
    return {
        "loss_cls_pos": pos_cls / max(num_boxes, 1.0),
        "loss_loc": pos_loc / max(num_boxes, 1.0),
        "loss_cls_neg": neg / max(neg_norm, 1.0),
    }


# Random cases with every edge case.

IMAGE_W, IMAGE_H = 96, 64


def make_points(strides=(8, 16, 32)):
    """Anchor points ((j + 0.5) s, (i + 0.5) s) of a 96 x 64 image, levels concatenated."""
    pts, strd = [], []
    for s in strides:
        ys, xs = torch.meshgrid(
            (torch.arange(math.ceil(IMAGE_H / s)) + 0.5) * s,
            (torch.arange(math.ceil(IMAGE_W / s)) + 0.5) * s,
            indexing="ij",
        )
        pts.append(torch.stack((xs, ys), -1).reshape(-1, 2))
        strd.append(torch.full((pts[-1].shape[0],), float(s)))
    return torch.cat(pts).double(), torch.cat(strd).double()


def make_case(seed: int, num_classes: int = 4):
    """Three images: edge-case boxes, no boxes, random boxes; some logits saturated at +-50."""
    g = torch.Generator().manual_seed(seed)
    points, strides = make_points()
    num_points = points.shape[0]

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    gt_boxes = [
        torch.tensor(
            [
                [10.0, 6.0, 50.0, 40.0],  # an ordinary box, class 1
                [20.0, 14.0, 62.0, 52.0],  # overlaps the next one, same class 2
                [26.0, 10.0, 70.0, 47.0],
                [35.0, 35.0, 37.0, 37.0],  # tiny: holds the single point (36, 36)
                [0.5, 0.5, 3.5, 3.5],  # no point inside
                [0.0, 0.0, 96.0, 64.0],  # the whole image, class 1
            ],
            dtype=torch.float64,
        ),
        torch.zeros(0, 4, dtype=torch.float64),  # an image without boxes
    ]
    xy = rand(3, 2) * torch.tensor([IMAGE_W - 30.0, IMAGE_H - 30.0])
    wh = 8 + rand(3, 2) * 22
    gt_boxes.append(torch.cat((xy, xy + wh), 1))
    gt_classes = [
        torch.tensor([1, 2, 2, 3, 0, 1]),
        torch.zeros(0, dtype=torch.int64),
        torch.randint(num_classes, (3,), generator=g),
    ]

    num_images = len(gt_boxes)
    cls_logits = torch.randn(num_images, num_points, num_classes, generator=g, dtype=torch.float64)
    ctr_logits = torch.randn(num_images, num_points, generator=g, dtype=torch.float64)
    # Saturated logits, in and out of boxes (points 40..60 lie in several boxes of image 0).
    sat = torch.randint(num_points, (12,), generator=g)
    sat[:4] = torch.arange(40, 44)
    sign = torch.where(rand(12) < 0.5, -50.0, 50.0).double()
    cls_logits[0, sat, 1] = sign
    cls_logits[0, sat[:6], 2] = -sign[:6]
    ctr_logits[0, sat[6:]] = sign[6:]
    cls_logits[2, sat[:6]] = sign[:6, None]

    # Predictions: noisy distances to the sides of one of the image's boxes (so that many pairs
    # have IoU >= 0.5), elsewhere random.
    box_ltrb = rand(num_images, num_points, 4) * 40
    for n, boxes in enumerate(gt_boxes):
        if len(boxes) == 0:
            continue
        pick = torch.randint(len(boxes), (num_points,), generator=g)
        b = boxes[pick]
        exact = torch.stack(
            (
                points[:, 0] - b[:, 0],
                points[:, 1] - b[:, 1],
                b[:, 2] - points[:, 0],
                b[:, 3] - points[:, 1],
            ),
            1,
        ).abs()
        good = exact * (0.75 + 0.5 * rand(num_points, 4)) + rand(num_points, 4)
        use = rand(num_points) < 0.7
        box_ltrb[n, use] = good[use]
    return points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes

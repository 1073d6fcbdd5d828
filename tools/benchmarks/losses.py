"""The loss benchmark: ``dw_losses`` against ``dense_loop_dw_losses``, an implementation in the
structure of the authors' release, on COCO-like random inputs (``tools/benchmark_losses.py``).

Shapes: N images, P anchor points (all levels), G boxes per image, C classes.
"""

import math
import statistics
import time

import torch
import torch.nn.functional as F

from dual_weighting import DWCriterion
from dual_weighting.modeling.assignment import decode_ltrb

from .memory import peak_rss_growth_mib

STRIDES = (8, 16, 32, 64, 128)
LOSS_NAMES = ("loss_cls_pos", "loss_loc", "loss_cls_neg")


def _giou_iou(pred, target, eps=1e-6):
    """Aligned GIoU and IoU of (M, 4) XYXY boxes; union and enclosing area clamped at eps."""
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    union = torch.clamp(area_p + area_t - overlap, min=eps)
    iou = overlap / union
    enclose_wh = (
        torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])
    ).clamp(min=0)
    enclose = torch.clamp(enclose_wh[:, 0] * enclose_wh[:, 1], min=eps)
    return iou - (enclose - union) / enclose, iou


def dense_loop_dw_losses(points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes):
    """DW losses computed the release's way (single process): per image, the center prior, GIoU,
    IoU, ``p_loc``, ``p_cls`` and positive weights densely for all (P, G) pairs, the negative
    weights by a Python loop over the boxes. Arguments as ``dw_losses``'s."""
    pos_cls_sum, pos_loc_sum, neg_sum = 0.0, 0.0, 0.0
    neg_norm = 0.0
    for n in range(cls_logits.shape[0]):
        q = torch.sigmoid(cls_logits[n]) * torch.sigmoid(ctr_logits[n])[:, None]  # (P, C)
        boxes, labels = gt_boxes[n], gt_classes[n]
        num_points, num_boxes = points.shape[0], boxes.shape[0]
        w_neg = torch.ones_like(q)
        if num_boxes > 0:
            px, py = points[:, 0, None], points[:, 1, None]
            ltrb_to_box = torch.stack(
                (px - boxes[:, 0], py - boxes[:, 1], boxes[:, 2] - px, boxes[:, 3] - py), -1
            )  # (P, G, 4)
            inside = ltrb_to_box.min(-1).values > 0  # (P, G)
            centers = (boxes[:, :2] + boxes[:, 2:]) / 2
            z = (points[:, None, :] - centers[None]) / strides[:, None, None]
            prior = torch.exp(-(z**2) / (2 * 1.11**2)).prod(-1) * inside  # (P, G)

            left, top, right, bottom = box_ltrb[n].unbind(-1)
            x, y = points.unbind(-1)
            pred = torch.stack((x - left, y - top, x + right, y + bottom), -1)
            giou, iou = _giou_iou(
                pred[:, None].expand(-1, num_boxes, -1).reshape(-1, 4),
                boxes[None].expand(num_points, -1, -1).reshape(-1, 4),
            )
            giou, iou = giou.view(num_points, num_boxes), iou.view(num_points, num_boxes)
            p_loc = torch.exp(-5 * (1 - giou))
            p_cls = q[:, labels]
            v = (p_cls * p_loc).detach()
            w_pos = torch.exp(5 * v) * v * prior
            w_pos = w_pos / (torch.exp(3 * v) * v * prior).sum(0, keepdim=True).clamp(min=1e-12)
            ones = torch.ones_like(p_cls)
            pos_cls_sum = (
                pos_cls_sum
                + 0.25 * (w_pos * F.binary_cross_entropy(p_cls, ones, reduction="none")).sum()
            )
            pos_loc_sum = (
                pos_loc_sum
                + 0.25 * (w_pos * F.binary_cross_entropy(p_loc, ones, reduction="none")).sum()
            )

            iou = iou.detach()
            for g in range(num_boxes):
                idx = inside[:, g]
                if not idx.any():
                    continue
                u = iou[idx, g]
                tu = (1 - u**2) / (1 - 0.5**2)
                t1, t2 = tu.min(), tu.max().clamp(max=1)
                y = (tu - t1 + 1e-12) / (t2 - t1 + 1e-12)
                y[u < 0.5] = 1
                c = labels[g]
                w_neg[idx, c] = torch.minimum(w_neg[idx, c], y)
        neg_loss = q**2 * F.binary_cross_entropy(q, torch.zeros_like(q), reduction="none")
        neg_sum = neg_sum + (w_neg * neg_loss).sum()
        neg_norm = neg_norm + (1 - w_neg).sum()
    num_gt = max(float(sum(len(b) for b in gt_boxes)), 1.0)
    neg_norm = max(float(neg_norm), 1.0)
    return {
        "loss_cls_pos": pos_cls_sum / num_gt,
        "loss_loc": pos_loc_sum / num_gt,
        "loss_cls_neg": neg_sum / neg_norm,
    }


def dw_losses(points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes):
    """The package's losses (the release's :class:`DWCriterion`) of the same inputs: the
    distances decoded to boxes as DWFCOS decodes them."""
    pred_boxes = decode_ltrb(points.to(box_ltrb), box_ltrb)
    return DWCriterion()(points, strides, cls_logits, ctr_logits, pred_boxes, gt_boxes, gt_classes)


IMPLEMENTATIONS = {"loop": dense_loop_dw_losses, "dw": dw_losses}


def make_points(height: int, width: int):
    """(P, 2) anchor points ((j + 0.5) s, (i + 0.5) s) and (P,) strides, levels concatenated."""
    pts, strd = [], []
    for s in STRIDES:
        rows, cols = math.ceil(height / s), math.ceil(width / s)
        ys, xs = torch.meshgrid(
            (torch.arange(rows) + 0.5) * s, (torch.arange(cols) + 0.5) * s, indexing="ij"
        )
        pts.append(torch.stack((xs, ys), -1).reshape(-1, 2))
        strd.append(torch.full((rows * cols,), float(s)))
    return torch.cat(pts), torch.cat(strd)


def make_inputs(num_images, num_boxes, height, width, num_classes, seed, dtype):
    """Points, strides, predictions and boxes of one case: COCO-like random boxes (sqrt(area)
    log-uniform in [12, 600] px, aspect ratio log-uniform in [1/3, 3], centres uniform, clipped
    to the image), logits normal around a 0.01 prior, distances log-normal around 4 strides.

    Returns:
        points (P, 2), strides (P,), cls_logits (N, P, C), ctr_logits (N, P), box_ltrb
        (N, P, 4), gt_boxes (list of N (G, 4) XYXY), gt_classes (list of N (G,) int64).
    """
    g = torch.Generator().manual_seed(seed)
    points, strides = make_points(height, width)
    num_points = points.shape[0]

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    gt_boxes, gt_classes = [], []
    for _ in range(num_images):
        side = torch.exp(uniform(math.log(12), math.log(600), num_boxes))
        aspect = torch.exp(uniform(-math.log(3), math.log(3), num_boxes))
        w, h = side * aspect.sqrt(), side / aspect.sqrt()
        cx, cy = uniform(0, width, num_boxes), uniform(0, height, num_boxes)
        boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        gt_boxes.append(boxes)
        gt_classes.append(torch.randint(num_classes, (num_boxes,), generator=g))

    prior_logit = -math.log(99.0)
    cls_logits = prior_logit + torch.randn(num_images, num_points, num_classes, generator=g)
    ctr_logits = torch.randn(num_images, num_points, generator=g)
    box_ltrb = strides[None, :, None] * torch.exp(
        math.log(4) + 0.7 * torch.randn(num_images, num_points, 4, generator=g)
    )
    gt_boxes = [b.to(dtype) for b in gt_boxes]
    return (
        points.to(dtype),
        strides.to(dtype),
        cls_logits.to(dtype),
        ctr_logits.to(dtype),
        box_ltrb.to(dtype),
        gt_boxes,
        gt_classes,
    )


def leaves(inputs):
    """Fresh leaf tensors for the predictions (so each run starts without gradients)."""
    _, _, cls_logits, ctr_logits, box_ltrb, _, _ = inputs
    return [x.detach().clone().requires_grad_() for x in (cls_logits, ctr_logits, box_ltrb)]


def forward_backward(fn, inputs, predictions):
    """The losses of ``fn`` ({name: float}) and the gradients of ``predictions`` (leaves)."""
    points, strides, _, _, _, gt_boxes, gt_classes = inputs
    losses = fn(points, strides, *predictions, gt_boxes, gt_classes)
    sum(losses.values()).backward()
    return {k: v.item() for k, v in losses.items()}, [x.grad for x in predictions]


def timed(fn, inputs):
    """Seconds of one forward + backward of ``fn``."""
    predictions = leaves(inputs)
    start = time.perf_counter()
    forward_backward(fn, inputs, predictions)
    return time.perf_counter() - start


def peak_memory_mib(fn, inputs):
    """Peak RSS growth (MiB) during one forward + backward; None where it cannot be measured."""
    predictions = leaves(inputs)
    return peak_rss_growth_mib(lambda: forward_backward(fn, inputs, predictions))[1]


def max_rel_diff(a, b):
    """Largest |a - b| over the largest |b|, over the losses and over each gradient."""
    losses_a, grads_a = a
    losses_b, grads_b = b
    loss_diff = max(
        abs(losses_a[k] - losses_b[k]) / max(abs(losses_b[k]), 1e-30) for k in LOSS_NAMES
    )
    grad_diff = max(
        ((ga - gb).abs().max() / gb.abs().max().clamp(min=1e-30)).item()
        for ga, gb in zip(grads_a, grads_b)
    )
    return loss_diff, grad_diff


def measure_losses(inputs, repeats):
    """Both implementations on one case (a :func:`make_inputs` tuple).

    Returns:
        dict: ``boxes`` (per image), ``pairs`` (K, the (image, point, box) pairs with the point
        inside the box), ``dense`` (N * P * G), ``ms`` and ``mib`` ({implementation: median
        milliseconds of ``repeats`` runs after one warm-up, peak MiB or None}),
        ``loss_diff`` and ``grad_diff`` (relative, dw against the loop).
    """
    points, _, cls_logits, _, _, gt_boxes, _ = inputs
    px, py = points[:, 0, None], points[:, 1, None]
    pairs = sum(
        int(((px > b[:, 0]) & (px < b[:, 2]) & (py > b[:, 1]) & (py < b[:, 3])).sum())
        for b in gt_boxes
    )
    num_boxes = len(gt_boxes[0])
    results = {
        name: forward_backward(fn, inputs, leaves(inputs)) for name, fn in IMPLEMENTATIONS.items()
    }  # warm-up
    loss_diff, grad_diff = max_rel_diff(results["dw"], results["loop"])
    memory = {name: peak_memory_mib(fn, inputs) for name, fn in IMPLEMENTATIONS.items()}
    # Interleaved, so that load from other processes hits both alike.
    times = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(repeats):
        for name, fn in IMPLEMENTATIONS.items():
            times[name].append(timed(fn, inputs))
    return {
        "boxes": num_boxes,
        "pairs": pairs,
        "dense": cls_logits.shape[0] * len(points) * num_boxes,
        "ms": {name: 1e3 * statistics.median(t) for name, t in times.items()},
        "mib": memory,
        "loss_diff": loss_diff,
        "grad_diff": grad_diff,
    }


LOSS_TABLE_HEADER = (
    f"{'boxes/img':>9} {'pairs K':>9} {'P*G':>10} | {'loop ms':>8} {'dw ms':>8} {'speed-up':>8}"
    f" | {'loop MiB':>8} {'dw MiB':>8} | {'loss rel diff':>13} {'grad rel diff':>13}"
)


def format_loss_row(r):
    """One line of the table under :data:`LOSS_TABLE_HEADER` for a :func:`measure_losses`."""
    ms, mib = r["ms"], {k: "n/a" if v is None else f"{v:.1f}" for k, v in r["mib"].items()}
    return (
        f"{r['boxes']:>9} {r['pairs']:>9} {r['dense']:>10} | {ms['loop']:8.1f} {ms['dw']:8.1f}"
        f" {ms['loop'] / ms['dw']:7.2f}x | {mib['loop']:>8} {mib['dw']:>8} |"
        f" {r['loss_diff']:13.2e} {r['grad_diff']:13.2e}"
    )

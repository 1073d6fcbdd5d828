#!/usr/bin/env python
"""Benchmark ``dual_weighting.dw_losses`` against a per-box-loop implementation, on this CPU.

The comparison implementation, ``dense_loop_dw_losses`` below, has the structure of the authors'
release: per image, the center prior, the decoded boxes' GIoU and IoU, ``p_loc``, ``p_cls`` and
the positive weights are computed densely for *all* P x G (point, box) pairs, and the negative
weights are filled by a Python loop over the boxes. The project's version builds only a boolean
(N, P, G) mask densely and does everything else on the K (image, point, box) pairs where the
point lies inside the box, with segment reductions instead of the loop, and computes the
(N, P, C) negative loss with a hand-written backward that allocates fewer full-size buffers. Both
follow the same formulas (the loop keeps the smallest negative weight where same-class boxes
overlap, as the project does), and the script prints the largest relative difference of their
losses and of their input gradients (float32 rounding; ``--dtype float64`` shows ~1e-15).

Set-up: 2 images of 800 x 1216 (``--height``/``--width``), FPN strides 8..128 (20267 points per
image), 80 classes, float32. Boxes are random but COCO-like: sqrt(area) log-uniform in
[12, 600] px, aspect ratio log-uniform in [1/3, 3], centres uniform, clipped to the image.
Logits are normal around a 0.01 prior, distances log-normal around 4 strides.

Time: forward + backward of the sum of the three losses, median over ``--repeats`` runs after one
warm-up, the two implementations interleaved so that load from other processes hits both alike.
On a small machine shared with other jobs, ``--threads 1`` gives steadier numbers: OpenMP threads
that wait for a busy core make every large elementwise op slower.

Memory: the growth of the process's peak resident set size (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``) during one forward + backward, after freeing everything and returning
freed heap pages to the system (``malloc_trim``). PyTorch's CPU allocator does not cache, so this
is the high-water mark of all tensors alive at once (inputs excluded, autograd's saved tensors
included) plus allocator overhead. Where the kernel does not allow the reset, it prints "n/a".
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import re
import statistics
import time

import torch
import torch.nn.functional as F

from dual_weighting import dw_losses

STRIDES = (8, 16, 32, 64, 128)
LOSS_NAMES = ("loss_cls_pos", "loss_loc", "loss_cls_neg")


# ---------------------------------------------------------------------------------------------
# The comparison implementation: the release's structure (dense P x G pairs, loop over boxes)
# ---------------------------------------------------------------------------------------------


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
    """DW losses computed the release's way (single process)."""
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


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


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
    """Points, strides, predictions and boxes of one benchmark case (see the module docstring)."""
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


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


def leaves(inputs):
    """Fresh leaf tensors for the predictions (so each run starts without gradients)."""
    _, _, cls_logits, ctr_logits, box_ltrb, _, _ = inputs
    return [x.detach().clone().requires_grad_() for x in (cls_logits, ctr_logits, box_ltrb)]


def forward_backward(fn, inputs, predictions):
    points, strides, _, _, _, gt_boxes, gt_classes = inputs
    losses = fn(points, strides, *predictions, gt_boxes, gt_classes)
    sum(losses.values()).backward()
    return {k: v.item() for k, v in losses.items()}, [x.grad for x in predictions]


def timed(fn, inputs):
    predictions = leaves(inputs)
    start = time.perf_counter()
    forward_backward(fn, inputs, predictions)
    return time.perf_counter() - start


def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+)", f.read(), re.M).group(1))


def peak_memory_mib(fn, inputs):
    """Peak RSS growth (MiB) during one forward + backward; None where it cannot be measured."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        gc.collect()
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        predictions = leaves(inputs)
        before = _status_kib("VmRSS")
        forward_backward(fn, inputs, predictions)
        return (_status_kib("VmHWM") - before) / 1024
    except (OSError, AttributeError):
        return None


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", default="1,10,50,200", help="boxes per image, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    box_counts = [int(b) for b in args.boxes.split(",")]

    impls = {"loop": dense_loop_dw_losses, "dw": dw_losses}
    print(
        f"{args.images} images {args.height}x{args.width}, {args.classes} classes, {args.dtype}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    header = (
        f"{'boxes/img':>9} {'pairs K':>9} {'P*G':>10} | {'loop ms':>8} {'dw ms':>8} {'speed-up':>8}"
        f" | {'loop MiB':>8} {'dw MiB':>8} | {'loss rel diff':>13} {'grad rel diff':>13}"
    )
    print(header)
    print("-" * len(header))
    for num_boxes in box_counts:
        inputs = make_inputs(
            args.images,
            num_boxes,
            args.height,
            args.width,
            args.classes,
            args.seed,
            getattr(torch, args.dtype),
        )
        points, _, _, _, _, gt_boxes, _ = inputs
        px, py = points[:, 0, None], points[:, 1, None]
        pairs = sum(
            int(((px > b[:, 0]) & (px < b[:, 2]) & (py > b[:, 1]) & (py < b[:, 3])).sum())
            for b in gt_boxes
        )
        dense = args.images * len(points) * num_boxes

        results = {
            name: forward_backward(fn, inputs, leaves(inputs)) for name, fn in impls.items()
        }  # warm-up
        loss_diff, grad_diff = max_rel_diff(results["dw"], results["loop"])
        memory = {name: peak_memory_mib(fn, inputs) for name, fn in impls.items()}
        times = {name: [] for name in impls}
        for _ in range(args.repeats):
            for name, fn in impls.items():
                times[name].append(timed(fn, inputs))
        ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}

        def mib(x):
            return f"{x:8.1f}" if x is not None else f"{'n/a':>8}"

        print(
            f"{num_boxes:>9} {pairs:>9} {dense:>10} | {ms['loop']:8.1f} {ms['dw']:8.1f}"
            f" {ms['loop'] / ms['dw']:7.2f}x | {mib(memory['loop'])} {mib(memory['dw'])} |"
            f" {loss_diff:13.2e} {grad_diff:13.2e}"
        )


if __name__ == "__main__":
    main()

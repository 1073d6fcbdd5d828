"""Dual Weighting (DW) training losses, as pure tensor functions.

Follows docs/DW_SPEC.md ("Training targets and losses"), i.e. the authors' release. The weights
come from :func:`.assignment.dw_assign`; index letters as there (``N`` images, ``P`` points,
``C`` classes, ``G`` boxes, ``K`` inside pairs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.utils import comm

from .assignment import dw_assign

__all__ = ["dw_losses", "negative_loss"]


# The lower bound torch's binary_cross_entropy backward puts on q (1 - q): 1e-12 as a float32
# constant (9.99999996e-13), also in float64.
_BCE_GRAD_EPS = float(torch.tensor(1e-12, dtype=torch.float32))


class _NegativeLoss(torch.autograd.Function):
    """``sum(w * q^2 * BCE(q, 0))`` with a constant ``w``, with fewer (N, P, C) temporaries.

    Autograd would keep ``w * q^2`` and ``BCE`` and allocate about ten full-size tensors for the
    backward pass; on CPU, fresh large allocations cost page faults that dominate this
    elementwise work. Here the forward keeps only ``BCE`` and the backward needs two buffers.
    The value is torch's ``binary_cross_entropy`` (log clamped at -100); the gradient uses the
    derivative torch's own backward gives it, ``q / max(q (1 - q), 1e-12)`` (finite at q = 1), so
    both match autograd through ``binary_cross_entropy`` up to rounding.
    """

    @staticmethod
    def forward(ctx, scores, weight):
        bce = F.binary_cross_entropy(
            scores, scores.new_zeros(()).expand_as(scores), reduction="none"
        )
        ctx.save_for_backward(scores, weight, bce)
        return torch.mul(scores, scores).mul_(bce).mul_(weight).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        q, weight, bce = ctx.saved_tensors
        # d/dq [q^2 BCE(q, 0)] = 2 q BCE + q^2 * q / max(q (1 - q), 1e-12).
        buffer = (1 - q).mul_(q).clamp_(min=_BCE_GRAD_EPS)
        grad_q = torch.mul(q, q).mul_(q).div_(buffer)
        grad_q.add_(torch.mul(bce, q, out=buffer), alpha=2)
        return grad_q.mul_(weight).mul_(grad), None


def negative_loss(scores: torch.Tensor, w_neg: torch.Tensor) -> torch.Tensor:
    """Sum over all entries of ``w_neg * q^2 * BCE(q, 0)``; no gradient flows to ``w_neg``.

    Args:
        scores: (N, P, C) joint scores ``q`` in [0, 1].
        w_neg: (N, P, C) negative weights.

    Returns:
        A scalar.
    """
    return _NegativeLoss.apply(scores, w_neg.detach())


def _mean_over_workers(x: torch.Tensor) -> torch.Tensor:
    """``x`` averaged over all workers when torch.distributed runs, else ``x`` itself."""
    world_size = comm.get_world_size()
    if world_size > 1:
        x = x.clone()
        torch.distributed.all_reduce(x)
        x = x / world_size
    return x


def dw_losses(
    points: torch.Tensor,
    strides: torch.Tensor,
    cls_logits: torch.Tensor,
    ctr_logits: torch.Tensor,
    box_ltrb: torch.Tensor,
    gt_boxes: list[torch.Tensor],
    gt_classes: list[torch.Tensor],
    *,
    center_prior_mu: float = 0.0,
    center_prior_sigma: float = 1.11,
    loc_score_scale: float = 5.0,
    pos_weight_num_scale: float = 5.0,
    pos_weight_den_scale: float = 3.0,
    pos_cls_weight: float = 0.25,
    pos_loc_weight: float = 0.25,
    neg_iou_threshold: float = 0.5,
    iou_eps: float = 1e-6,
    pos_weight_eps: float = 1e-12,
    neg_weight_eps: float = 1e-12,
) -> dict[str, torch.Tensor]:
    """The three DW losses of a batch, normalised over the batch and over all workers.

    Computed in the dtype of the predictions (use float32 or float64; cast half-precision
    predictions to float32 first).

    Args:
        points: (P, 2) anchor points (x, y), pixels, FPN levels concatenated in order.
        strides: (P,) stride of each point's level, pixels.
        cls_logits: (N, P, C) classification logits.
        ctr_logits: (N, P) centerness (objectness) logits.
        box_ltrb: (N, P, 4) predicted distances (left, top, right, bottom), pixels, >= 0.
        gt_boxes: N tensors (G_n, 4), XYXY pixels; G_n may be 0.
        gt_classes: N int64 tensors (G_n,) in [0, C).
        center_prior_mu, center_prior_sigma: center prior's Gaussian, in strides.
        loc_score_scale: ``p_loc = exp(-loc_score_scale * L)`` with ``L`` the GIoU loss.
        pos_weight_num_scale, pos_weight_den_scale: scales of ``v`` in the positive weight's
            numerator and denominator exponentials.
        pos_cls_weight, pos_loc_weight: factors of the positive classification and
            localisation losses.
        neg_iou_threshold: IoU below which a point stays fully negative for a box; also where the
            negative weight's ``t(u)`` is 1.
        iou_eps: lower bound of union and enclosing area in (G)IoU, pixels^2.
        pos_weight_eps: lower bound of a bag's positive-weight denominator.
        neg_weight_eps: regulariser of the negative weight's min-max normalisation.

    Returns:
        ``{"loss_cls_pos", "loss_loc", "loss_cls_neg"}``, scalars. The first two are divided by
        the number of boxes, the last by ``sum(1 - w_neg)``; both normalisers are averaged over
        workers, then clamped below at 1.
    """
    dtype, device = box_ltrb.dtype, box_ltrb.device
    a = dw_assign(
        points,
        strides,
        cls_logits,
        ctr_logits,
        box_ltrb,
        gt_boxes,
        gt_classes,
        center_prior_mu=center_prior_mu,
        center_prior_sigma=center_prior_sigma,
        loc_score_scale=loc_score_scale,
        pos_weight_num_scale=pos_weight_num_scale,
        pos_weight_den_scale=pos_weight_den_scale,
        neg_iou_threshold=neg_iou_threshold,
        iou_eps=iou_eps,
        pos_weight_eps=pos_weight_eps,
        neg_weight_eps=neg_weight_eps,
    )
    p_cls, p_loc, w_pos, w_neg = a.p_cls, a.p_loc, a.pos_weight, a.neg_weight

    # BCE on probabilities, as the release: its log clamp at -100 keeps saturated scores finite.
    ones = p_cls.new_ones(()).expand_as(p_cls)
    pos_cls = pos_cls_weight * (w_pos * F.binary_cross_entropy(p_cls, ones, reduction="none")).sum()
    pos_loc = pos_loc_weight * (w_pos * F.binary_cross_entropy(p_loc, ones, reduction="none")).sum()
    neg = negative_loss(a.scores, w_neg)

    # Both normalisers in one all-reduce. An image without boxes adds only to ``neg``.
    num_gt = float(sum(len(b) for b in gt_boxes))
    normalisers = torch.stack((torch.tensor(num_gt, dtype=dtype, device=device), (1 - w_neg).sum()))
    num_gt_mean, neg_norm_mean = _mean_over_workers(normalisers).clamp(min=1).unbind()
    return {
        "loss_cls_pos": pos_cls / num_gt_mean,
        "loss_loc": pos_loc / num_gt_mean,
        "loss_cls_neg": neg / neg_norm_mean,
    }

"""Dual Weighting (DW) training losses of an :func:`.assignment.dw_assign` assignment, as pure
tensor functions (docs/DW_SPEC.md); shapes as in :mod:`.assignment`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.utils import comm

from .assignment import DWAssignment

__all__ = ["dw_losses", "negative_loss"]


# The lower bound torch's binary_cross_entropy backward puts on q (1 - q): 1e-12 as a float32
# constant (9.99999996e-13), also in float64.
_BCE_GRAD_EPS = float(torch.tensor(1e-12, dtype=torch.float32))


class _NegativeLoss(torch.autograd.Function):
    """``sum(w * q^2 * BCE(q, 0))`` with a constant ``w``, with fewer (N, P, C) temporaries:
    autograd would allocate about ten (on CPU, page faults dominate this elementwise work); here
    the forward keeps only ``BCE`` and the backward needs two buffers. Value and gradient are
    torch's ``binary_cross_entropy``'s (log clamped at -100; derivative
    ``q / max(q (1 - q), 1e-12)``), up to rounding.
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
    """Scalar sum of ``w_neg * q^2 * BCE(q, 0)`` over (N, P, C) joint scores ``q`` in [0, 1]
    and negative weights ``w_neg``; no gradient flows to ``w_neg``."""
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
    assignment: DWAssignment,
    num_boxes: int,
    *,
    pos_cls_loss_weight: float,
    pos_loc_loss_weight: float,
    bounded_neg_loss: bool = False,
) -> dict[str, torch.Tensor]:
    """The three DW losses of a batch, normalised over the batch and over all workers.

    Args:
        assignment: the batch's :class:`~.assignment.DWAssignment` (:func:`~.assignment.dw_assign`).
        num_boxes: ground-truth boxes in the batch, all images together.
        pos_cls_loss_weight, pos_loc_loss_weight: factors of the two positive losses.
        bounded_neg_loss: divide the negative loss by ``max(sum(1 - w_neg), sum(w_neg q^2))``
            instead of the release's ``sum(1 - w_neg)``, so it is at most a weighted mean of
            ``BCE(q, 0)`` when every score rises at once.

    Returns:
        ``{"loss_cls_pos", "loss_loc", "loss_cls_neg"}``, scalars in the assignment's dtype. The
        first two are divided by the number of boxes, the last by ``sum(1 - w_neg)`` (or the
        bound's larger term); every normaliser is averaged over workers, then clamped below at 1.
    """
    a = assignment
    p_cls, p_loc, w_pos, w_neg = a.p_cls, a.p_loc, a.pos_weight, a.neg_weight

    # BCE on probabilities, as the release: its log clamp at -100 keeps saturated scores finite.
    ones = p_cls.new_ones(()).expand_as(p_cls)
    pos_cls = (w_pos * F.binary_cross_entropy(p_cls, ones, reduction="none")).sum()
    pos_loc = (w_pos * F.binary_cross_entropy(p_loc, ones, reduction="none")).sum()
    neg = negative_loss(a.scores, w_neg)

    # The normalisers in one all-reduce. An image without boxes adds only to ``neg``.
    num_gt = torch.tensor(float(num_boxes), dtype=w_neg.dtype, device=w_neg.device)
    normalisers = [num_gt, (1 - w_neg).sum()]
    if bounded_neg_loss:
        # When the whole map rises, this mass outgrows sum(1 - w_neg) and caps the loss at a
        # weighted mean of BCE(q, 0), whose step grows with the scores, not with their cube
        # times the number of entries (the release's step that knocks every score out).
        with torch.no_grad():
            normalisers.append(torch.mul(a.scores, a.scores).mul_(w_neg).sum())
    normalisers = _mean_over_workers(torch.stack(normalisers)).clamp(min=1)
    num_gt_mean, neg_norm_mean = normalisers[0], normalisers[1:].amax()
    return {
        "loss_cls_pos": pos_cls_loss_weight * pos_cls / num_gt_mean,
        "loss_loc": pos_loc_loss_weight * pos_loc / num_gt_mean,
        "loss_cls_neg": neg / neg_norm_mean,
    }

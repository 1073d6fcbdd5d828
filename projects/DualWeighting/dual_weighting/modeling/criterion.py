"""DW's criterion: Dual Weighting's hyper-parameters and its two steps, the assignment
(:func:`~.assignment.dw_assign`) and its losses (:func:`~.losses.dw_losses`). A detector hands
it candidate locations, their strides and its dense predictions; it never needs the head.
Shapes as in :mod:`.assignment`.
"""

from __future__ import annotations

import inspect

import torch
from detectron2.config import configurable
from torch import nn

from .assignment import DWAssignment, dw_assign
from .criterion_inputs import check_criterion_inputs, criterion_dtype
from .losses import dw_losses

__all__ = ["DWCriterion", "check_assignment", "check_finite_predictions", "set_config_style"]

# What to change when training collapses, in the keys of the run's config style; the second
# entry is offered while the negative loss is the release's, unbounded.
_COLLAPSE_FIX = {
    "yacs": (
        "lower SOLVER.BASE_LR or lengthen the warm-up (SOLVER.WARMUP_ITERS)",
        "set MODEL.DW.BOUNDED_NEG_LOSS True",
    ),
    "lazy": (
        "lower optimizer.lr or lengthen the warm-up (lr_multiplier.warmup_length)",
        "set the criterion's bounded_neg_loss=True",
    ),
    None: ("lower the learning rate or lengthen its warm-up", "set bounded_neg_loss=True"),
}


def check_finite_predictions(predictions, detector: str, iteration: int):
    """Raise a FloatingPointError naming ``detector`` and ``iteration`` if a tensor of
    ``predictions`` (a head's lists of per-level tensors) is not finite (one host read); the
    BCE would reject NaN naming neither."""
    finite = torch.stack([torch.isfinite(x).all() for level in predictions for x in level])
    if not finite.all():
        raise FloatingPointError(
            f"{detector} predictions became infinite or NaN at iteration={iteration}"
        )


def check_assignment(
    assignment: DWAssignment,
    detector: str,
    iteration=None,
    config_style: str | None = None,
    bounded_neg_loss: bool = True,
):
    """Raise a FloatingPointError naming ``detector`` and ``iteration`` where training cannot
    go on but the losses would not say so (one host read):

    - a non-finite localisation score: boxes whose area overflows float32 (diverged regression).
    - candidates with a prior but every positive weight 0: every joint score underflowed (a
      collapsed classifier), so every loss and gradient is 0.
    - over half of the batch's joint scores exactly 0 or 1 (a saturated classifier): their
      losses are finite (BCE's clamp) but give no gradient, while the rest can keep the positive
      weights from vanishing; seen after one huge step of a pretrained DW-RetinaNet (a ninth of
      the scores at 1, the rest at 0).

    The last two name the keys to change in the run's ``config_style`` ("yacs" or "lazy"; None:
    no keys), and the bounded negative loss if the run's criterion does not have it
    (``bounded_neg_loss`` False).
    """
    if len(assignment.prior) == 0:
        return
    scores = assignment.scores.detach()
    not_finite, collapsed, saturated = torch.stack(
        (
            ~torch.isfinite(assignment.p_loc).all(),
            (assignment.prior > 0).any() & (assignment.pos_weight.sum() == 0),
            ((scores == 0) | (scores == 1)).sum() * 2 > scores.numel(),
        )
    ).tolist()
    when = "" if iteration is None else f" at iteration={iteration}"
    schedule, bound = _COLLAPSE_FIX[config_style]
    fix = schedule if bounded_neg_loss else f"{schedule}, or {bound}"
    if not_finite:
        raise FloatingPointError(f"{detector} predicted boxes overflow float32 (NaN GIoU){when}")
    if collapsed:
        raise FloatingPointError(
            f"{detector} training collapsed{when}: every joint score of the "
            f"{len(assignment.prior)} candidates of the batch's boxes underflowed to 0, so every "
            f"positive weight and every loss is 0; {fix}"
        )
    if saturated:
        raise FloatingPointError(
            f"{detector} training diverged{when}: over half of the batch's {scores.numel()} "
            "joint scores are exactly 0 or 1 (saturated logits), where the losses have no "
            f"gradient left; {fix}"
        )


def set_config_style(model: nn.Module, style: str):
    """Tell every :class:`DWCriterion` of ``model`` the run's config style, "yacs" or "lazy"."""
    for module in model.modules():
        if isinstance(module, DWCriterion):
            module.config_style = style


class DWCriterion(nn.Module):
    """Dual Weighting's assignment and losses (Li et al., CVPR 2022), with the release's
    hyper-parameters as defaults (docs/DW_SPEC.md). Argument names are the yacs keys
    ``MODEL.DW.<NAME>`` in lower case; no parameters or buffers. Inputs are checked
    (:func:`~.criterion_inputs.check_criterion_inputs`); half precision is computed in float32.

    Example::

        losses = DWCriterion()(points, strides, cls_logits, quality_logits, pred_boxes,
                               gt_boxes, gt_classes)

    With the two steps apart, a head of one's own can stop where training cannot go on (as the
    detectors of this package do)::

        assignment = criterion.assign(points, strides, cls_logits, quality_logits, pred_boxes,
                                      gt_boxes, gt_classes)
        criterion.check(assignment, "my detector", iteration)
        losses = criterion.losses(assignment, sum(len(b) for b in gt_boxes))

    Attributes:
        config_style: "yacs", "lazy" or None (unknown), for the keys a collapse names
            (:func:`set_config_style`).
    """

    config_style = None

    @configurable
    def __init__(
        self,
        *,
        center_prior_mu: float = 0.0,
        center_prior_sigma: float = 1.11,
        soft_prior: bool = True,
        candidate_topk_per_level: int = 0,
        loc_score_scale: float = 5.0,
        pos_weight_num_scale: float = 5.0,
        pos_weight_den_scale: float = 3.0,
        pos_cls_loss_weight: float = 0.25,
        pos_loc_loss_weight: float = 0.25,
        neg_iou_thresh: float = 0.5,
        bounded_neg_loss: bool = False,
    ):
        """
        Args:
            center_prior_mu, center_prior_sigma: the center prior's Gaussian, in strides.
            soft_prior: the Gaussian itself; False for the release's hard prior (1 where the
                Gaussian exceeds 0.3, else 0).
            candidate_topk_per_level: 0 for the release's bag, every candidate inside the box;
                k > 0 for the paper's, the k candidates nearest the box centre per box and level.
            loc_score_scale: ``p_loc = exp(-loc_score_scale * L)``, ``L`` the GIoU loss.
            pos_weight_num_scale, pos_weight_den_scale: the positive weight is
                ``exp(num * v) * v * prior / sum_bag exp(den * v) * v * prior``.
            pos_cls_loss_weight, pos_loc_loss_weight: factors of the two positive losses.
            neg_iou_thresh: predictions with an IoU below it stay full negatives.
            bounded_neg_loss: False for the release's normaliser of the negative loss,
                ``sum(1 - w_neg)``; True for ``max(sum(1 - w_neg), sum(w_neg q^2))``, which keeps
                one step from knocking every score out while a short warm-up climbs
                (docs/BENCHMARKS.md).
        """
        super().__init__()
        self.center_prior_mu = center_prior_mu
        self.center_prior_sigma = center_prior_sigma
        self.soft_prior = soft_prior
        self.candidate_topk_per_level = candidate_topk_per_level
        self.loc_score_scale = loc_score_scale
        self.pos_weight_num_scale = pos_weight_num_scale
        self.pos_weight_den_scale = pos_weight_den_scale
        self.pos_cls_loss_weight = pos_cls_loss_weight
        self.pos_loc_loss_weight = pos_loc_loss_weight
        self.neg_iou_thresh = neg_iou_thresh
        self.bounded_neg_loss = bounded_neg_loss

    @classmethod
    def from_config(cls, cfg):
        return {name: cfg.MODEL.DW[name.upper()] for name in cls.defaults()}

    @classmethod
    def defaults(cls) -> dict:
        """The release's hyper-parameters, ``{argument name: value}``; ``add_dw_config`` and the
        LazyConfigs take them from here."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.default is not p.empty}

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self.defaults())

    def assign(
        self,
        points: torch.Tensor,
        strides: torch.Tensor,
        cls_logits: torch.Tensor,
        quality_logits: torch.Tensor | None,
        pred_boxes: torch.Tensor,
        gt_boxes: list[torch.Tensor],
        gt_classes: list[torch.Tensor],
    ) -> DWAssignment:
        """The first step: scores, prior and weights of the inside (image, candidate, box)
        pairs. Arguments and ValueErrors as :meth:`forward`'s."""
        check_criterion_inputs(
            points, strides, cls_logits, quality_logits, pred_boxes, gt_boxes, gt_classes
        )
        dtype = criterion_dtype(cls_logits, quality_logits, pred_boxes)
        cls_logits, pred_boxes = cls_logits.to(dtype), pred_boxes.to(dtype)
        quality_logits = None if quality_logits is None else quality_logits.to(dtype)
        with torch.autocast(cls_logits.device.type, enabled=False):
            return dw_assign(
                points,
                strides,
                cls_logits,
                quality_logits,
                pred_boxes,
                gt_boxes,
                gt_classes,
                center_prior_mu=self.center_prior_mu,
                center_prior_sigma=self.center_prior_sigma,
                soft_prior=self.soft_prior,
                candidate_topk_per_level=self.candidate_topk_per_level,
                loc_score_scale=self.loc_score_scale,
                pos_weight_num_scale=self.pos_weight_num_scale,
                pos_weight_den_scale=self.pos_weight_den_scale,
                neg_iou_thresh=self.neg_iou_thresh,
            )

    def losses(self, assignment: DWAssignment, num_boxes: int) -> dict[str, torch.Tensor]:
        """The second step: :func:`~.losses.dw_losses` of a batch of ``num_boxes`` boxes."""
        with torch.autocast(assignment.scores.device.type, enabled=False):
            return dw_losses(
                assignment,
                num_boxes,
                pos_cls_loss_weight=self.pos_cls_loss_weight,
                pos_loc_loss_weight=self.pos_loc_loss_weight,
                bounded_neg_loss=self.bounded_neg_loss,
            )

    def check(self, assignment: DWAssignment, detector: str = "DWCriterion", iteration=None):
        """:func:`check_assignment` with the run's :attr:`config_style`."""
        check_assignment(assignment, detector, iteration, self.config_style, self.bounded_neg_loss)

    def forward(
        self,
        points: torch.Tensor,
        strides: torch.Tensor,
        cls_logits: torch.Tensor,
        quality_logits: torch.Tensor | None,
        pred_boxes: torch.Tensor,
        gt_boxes: list[torch.Tensor],
        gt_classes: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """The DW losses of a batch, in the predictions' dtype (float32 for half precision),
        autocast off; memory O(N P G) booleans plus O(N P C) scores.

        Args:
            points: (P, 2) candidate locations (x, y) in pixels of the padded input: anchor
                points, or the centres of anchors.
            strides: (P,) stride of each candidate's level, pixels.
            cls_logits: (N, P, C) classification logits.
            quality_logits: (N, P) logits of the quality factor of the joint score
                ``sigmoid(cls) * sigmoid(quality)`` (FCOS' centerness); None: ``sigmoid(cls)``.
            pred_boxes: (N, P, 4) predicted XYXY boxes, pixels.
            gt_boxes: N tensors (G_n, 4), XYXY pixels; G_n may be 0.
            gt_classes: N int64 tensors (G_n,) in [0, C).

        Returns:
            ``{"loss_cls_pos", "loss_loc", "loss_cls_neg"}``, scalars.

        Raises:
            ValueError: a mistake in the inputs, named with its index and value.
        """
        assignment = self.assign(
            points, strides, cls_logits, quality_logits, pred_boxes, gt_boxes, gt_classes
        )
        return self.losses(assignment, sum(len(b) for b in gt_boxes))

"""DW's criterion: the hyper-parameters of Dual Weighting, and its two steps, the assignment
(who is how positive and how negative, :func:`~.assignment.dw_assign`) and the losses of that
assignment (:func:`~.losses.dw_losses`).

A detector hands it candidate locations with their strides and its dense predictions; it never
needs to know the head. Index letters as in :mod:`.assignment`: ``N`` images, ``P`` candidates
(all levels concatenated), ``C`` classes, ``G`` boxes of an image.
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

# What to change when training collapses, in the keys of the run's config style.
_COLLAPSE_FIX = {
    "yacs": "lower SOLVER.BASE_LR or lengthen the warm-up (SOLVER.WARMUP_ITERS)",
    "lazy": "lower optimizer.lr or lengthen the warm-up (lr_multiplier.warmup_length)",
    None: "lower the learning rate or lengthen its warm-up",
}


def check_finite_predictions(predictions, detector: str, iteration: int):
    """Raise a FloatingPointError naming ``detector`` and ``iteration`` if a tensor of
    ``predictions`` (a head's lists of per-level tensors) holds an infinite or NaN value: the
    losses' BCE would reject NaN with an error that names neither the cause nor the iteration.
    One host read for all of them."""
    finite = torch.stack([torch.isfinite(x).all() for level in predictions for x in level])
    if not finite.all():
        raise FloatingPointError(
            f"{detector} predictions became infinite or NaN at iteration={iteration}"
        )


def check_assignment(
    assignment: DWAssignment, detector: str, iteration=None, config_style: str | None = None
):
    """Raise a FloatingPointError naming ``detector`` and ``iteration`` in the two states of an
    assignment from finite predictions where training cannot go on but the losses would not say
    so (one host read for both):

    - a localisation score that is not finite: finite deltas decoded to boxes whose area
      overflows float32 (a diverged box regression); the BCE would later refuse the NaN with
      an error that names neither.
    - candidates with a center prior but every positive weight exactly 0: every joint score of
      the candidates underflowed to 0 (a collapsed classifier). Every DW loss and its gradient
      is then exactly 0, and the run would go on without learning anything. The message says
      which keys to change in the ``config_style`` of the run ("yacs" or "lazy"; None: no keys).
    """
    if len(assignment.prior) == 0:
        return
    not_finite, collapsed = torch.stack(
        (
            ~torch.isfinite(assignment.p_loc).all(),
            (assignment.prior > 0).any() & (assignment.pos_weight.sum() == 0),
        )
    ).tolist()
    when = "" if iteration is None else f" at iteration={iteration}"
    if not_finite:
        raise FloatingPointError(f"{detector} predicted boxes overflow float32 (NaN GIoU){when}")
    if collapsed:
        raise FloatingPointError(
            f"{detector} training collapsed{when}: every joint score of the "
            f"{len(assignment.prior)} candidates of the batch's boxes underflowed to 0, so every "
            f"positive weight and every loss is 0; {_COLLAPSE_FIX[config_style]}"
        )


def set_config_style(model: nn.Module, style: str):
    """Tell every :class:`DWCriterion` of ``model`` the config style of the run, "yacs" or
    "lazy", so that a collapse names the keys to change in it (the engine's trainers do this
    when they build the model)."""
    for module in model.modules():
        if isinstance(module, DWCriterion):
            module.config_style = style


class DWCriterion(nn.Module):
    """Dual Weighting's assignment and losses (Li et al., CVPR 2022), with the release's
    hyper-parameters as defaults (docs/DW_SPEC.md, "Training targets and losses").

    The argument names are those of the yacs keys ``MODEL.DW.<NAME>`` in lower case. The module
    has no parameters or buffers: it only computes.

    Its inputs are checked (:func:`~.criterion_inputs.check_criterion_inputs`, one host read):
    a wrong shape or length, a class id outside [0, C) or a non-finite box raises a ValueError
    naming the argument, the index and the value. Half-precision predictions are computed in
    float32, with autocast off.

    Example::

        criterion = DWCriterion()
        losses = criterion(points, strides, cls_logits, quality_logits, pred_boxes,
                           gt_boxes, gt_classes)

    A head of one's own that trains with it can stop on the states where training cannot go on
    but the losses would not say so (a collapsed classifier, boxes overflowing float32), as
    the detectors of this package do, with the two steps apart::

        assignment = criterion.assign(points, strides, cls_logits, quality_logits, pred_boxes,
                                      gt_boxes, gt_classes)
        criterion.check(assignment, "my detector", iteration)
        losses = criterion.losses(assignment, sum(len(b) for b in gt_boxes))

    Attributes:
        config_style: "yacs" or "lazy", the config style of the run, for the keys a collapse
            names (:func:`set_config_style`); None when unknown.
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
    ):
        """
        Args:
            center_prior_mu, center_prior_sigma: the center prior's Gaussian (the paper's mu and
                sigma), in strides of the candidate's level.
            soft_prior: the Gaussian itself; False for the release's hard prior (1 where the
                Gaussian exceeds 0.3, else 0).
            candidate_topk_per_level: 0 for the release's candidate bag, every candidate inside
                the box; k > 0 for the paper's, the k candidates nearest the box centre per box
                and level (the release does not restrict the bag).
            loc_score_scale: ``p_loc = exp(-loc_score_scale * L)``, ``L`` the GIoU loss.
            pos_weight_num_scale, pos_weight_den_scale: the positive weight is
                ``exp(num * v) * v * prior / sum_bag exp(den * v) * v * prior`` (5 and 3 in the
                release).
            pos_cls_loss_weight, pos_loc_loss_weight: factors of the positive classification
                and localisation losses.
            neg_iou_thresh: predictions with an IoU below it stay full negatives.
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

    @classmethod
    def from_config(cls, cfg):
        return {name: cfg.MODEL.DW[name.upper()] for name in cls.defaults()}

    @classmethod
    def defaults(cls) -> dict:
        """The release's hyper-parameters, ``{argument name: value}``: the one place they are
        written (``add_dw_config`` and the LazyConfigs take them from here)."""
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
        """The first step: scores, center prior and weights of every (image, candidate, box)
        pair whose candidate lies inside the box. Arguments as :meth:`forward`'s.

        Raises:
            ValueError: a mistake in the inputs, named with its index and value
                (:func:`~.criterion_inputs.check_criterion_inputs`).
        """
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
        """The second step: the losses of ``assignment`` for a batch of ``num_boxes`` boxes,
        normalised over the batch and over all workers (:func:`~.losses.dw_losses`)."""
        with torch.autocast(assignment.scores.device.type, enabled=False):
            return dw_losses(
                assignment,
                num_boxes,
                pos_cls_loss_weight=self.pos_cls_loss_weight,
                pos_loc_loss_weight=self.pos_loc_loss_weight,
            )

    def check(self, assignment: DWAssignment, detector: str = "DWCriterion", iteration=None):
        """Raise a FloatingPointError where training cannot go on but the losses of
        ``assignment`` would not say so: a collapsed classifier, or predicted boxes whose area
        overflows float32 (:func:`check_assignment`, one host read). ``detector`` and
        ``iteration`` are named in the message, and for a collapse the keys to change in the
        run's :attr:`config_style`."""
        check_assignment(assignment, detector, iteration, self.config_style)

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
        """The DW losses of a batch. Computed in the dtype of the predictions, float64 if any is
        float64, float32 for float32 and half precision, with autocast off; memory is O(N P G)
        booleans plus O(N P C) for the scores, never (P, G, C).

        Args:
            points: (P, 2) candidate locations (x, y) in pixels of the padded input: anchor
                points, or the centres of anchors.
            strides: (P,) stride of each candidate's level, pixels.
            cls_logits: (N, P, C) classification logits.
            quality_logits: (N, P) logits of the localisation-quality factor of the joint score
                ``sigmoid(cls) * sigmoid(quality)`` (FCOS' centerness, used as objectness); None
                for a head without one (the joint score is then ``sigmoid(cls)``).
            pred_boxes: (N, P, 4) predicted XYXY boxes, pixels.
            gt_boxes: N tensors (G_n, 4), XYXY pixels; G_n may be 0.
            gt_classes: N int64 tensors (G_n,) in [0, C).

        Returns:
            ``{"loss_cls_pos", "loss_loc", "loss_cls_neg"}``, scalars.

        Raises:
            ValueError: a mistake in the inputs, named with its index and value (see
                :meth:`assign`).
        """
        assignment = self.assign(
            points, strides, cls_logits, quality_logits, pred_boxes, gt_boxes, gt_classes
        )
        return self.losses(assignment, sum(len(b) for b in gt_boxes))

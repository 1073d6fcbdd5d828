"""What DW's assignment looks like at every training iteration of a benchmark run: the numbers
that tell a collapsing run from a learning one (docs/BENCHMARKS.md reads them for the tree
crowns). Recorded through detectron2's EventStorage (so also in ``metrics.json``)."""

import torch
from detectron2.utils.events import get_event_storage

from .report import format_table

# Name in the EventStorage -> column title.
TRACE_COLUMNS = {
    "dw/pairs": "pairs",
    "dw/iou50_frac": "IoU>=0.5",
    "dw/clamped_box_frac": "boxes clamped",
    "dw/pos_mass_median": "pos. mass",
    "dw/neg_weight_inside": "w_neg inside",
    "dw/pair_score_max": "max pair score",
    "dw/score_max": "max score",
}


@torch.no_grad()
def assignment_stats(assignment):
    """Statistics of one batch's :class:`~dual_weighting.modeling.assignment.DWAssignment`.

    Returns:
        dict: ``dw/pairs`` (inside point-box pairs K), ``dw/iou50_frac`` (fraction of pairs whose
        predicted box has IoU >= 0.5 with the box: below it, DW keeps the point a full negative
        of the box's class), ``dw/clamped_box_frac`` (fraction of boxes whose positive weights
        sum to less than 1: their normaliser fell below DW's eps 1e-6, so the positive weights
        shrink with the scores instead of being renormalised), ``dw/pos_mass_median`` (median
        over boxes of the sum of its positive weights), ``dw/neg_weight_inside`` (mean negative
        weight, smallest over classes, of the inside points), ``dw/pair_score_max`` (largest
        joint score of a pair), ``dw/score_max`` (largest joint score of the batch).
    """
    a = assignment
    if len(a.prior) == 0:
        return {"dw/pairs": 0.0, "dw/score_max": float(a.scores.max())}
    box_key = a.image * (int(a.box.max()) + 1) + a.box
    _, box_index = torch.unique(box_key, return_inverse=True)
    mass = torch.zeros(int(box_index.max()) + 1, dtype=a.pos_weight.dtype)
    mass.index_add_(0, box_index, a.pos_weight)
    return {
        "dw/pairs": float(len(a.prior)),
        "dw/iou50_frac": float((a.iou >= 0.5).float().mean()),
        "dw/clamped_box_frac": float((mass < 1).float().mean()),
        "dw/pos_mass_median": float(mass.median()),
        "dw/neg_weight_inside": float(a.neg_weight[a.image, a.point].min(-1).values.mean()),
        "dw/pair_score_max": float(a.p_cls.max()),
        "dw/score_max": float(a.scores.max()),
    }


def trace_assignments(model):
    """Make ``model.criterion.assign`` (a DW criterion's) also put :func:`assignment_stats` into
    the current EventStorage; models without one are left as they are."""
    criterion = getattr(model, "criterion", None)
    if criterion is None or not hasattr(criterion, "assign"):
        return model
    assign = criterion.assign

    def traced(*args, **kwargs):
        assignment = assign(*args, **kwargs)
        storage = get_event_storage()
        for name, value in assignment_stats(assignment).items():
            storage.put_scalar(name, value, smoothing_hint=False)
        return assignment

    criterion.assign = traced
    return model


def storage_trace(storage):
    """{name: [[iteration, value], ...]} of the trace's scalars in a trainer's EventStorage."""
    histories = storage.histories()
    return {
        name: [[int(it), float(v)] for v, it in histories[name].values()]
        for name in TRACE_COLUMNS
        if name in histories
    }


def format_trace(run, iterations):
    """A table of one run's trace (``run["assignment"]``) at ``iterations`` (0-based, those
    recorded) and at its last recorded iteration."""
    trace = run.get("assignment") or {}
    if not trace:
        return ""
    by_iter = {}
    for name, points in trace.items():
        for it, value in points:
            by_iter.setdefault(it, {})[name] = value
    last = max(by_iter)
    wanted = sorted({i for i in iterations if i in by_iter} | {last})
    rows = [
        [str(it + 1), *(_cell(by_iter[it].get(name)) for name in TRACE_COLUMNS)] for it in wanted
    ]
    return format_table(["iteration", *TRACE_COLUMNS.values()], rows)


def _cell(value):
    if value is None:
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.1e}"

"""Pictures: detections beside ground truth, a tiled dataset on its source image, and what DW
assigns to each anchor point (the maps, the model run that gives them, and the figure).

Not installed: the tools import this folder as ``visualize`` (``tools/`` is on a script's
``sys.path``; pytest's ``pythonpath`` adds it for the tests). ``tools/visualize_assignment.py``,
``tools/train_synthetic_model.py``, ``tools/draw_predictions.py`` and ``tools/prepare_trees.py``
draw with it.
"""

from .assignment_figure import describe_assignment, draw_assignment, pick_boxes, to_rgb
from .assignment_maps import dw_assignment_maps, split_levels, strong_positives
from .assignment_model import compute_assignment, load_model, select_records, training_mapper
from .predictions import predictions_beside_ground_truth
from .tiles import draw_tiled_source

__all__ = [
    "compute_assignment",
    "describe_assignment",
    "draw_assignment",
    "draw_tiled_source",
    "dw_assignment_maps",
    "load_model",
    "pick_boxes",
    "predictions_beside_ground_truth",
    "select_records",
    "split_levels",
    "strong_positives",
    "to_rgb",
    "training_mapper",
]

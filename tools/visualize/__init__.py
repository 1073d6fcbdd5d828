"""Pictures: detections beside ground truth, a tiled dataset on its source image, and what DW
assigns to each anchor point (maps, the model run that gives them, the figure). Not installed:
imported as ``visualize`` (``tools/`` is on a script's ``sys.path`` and pytest's ``pythonpath``)
by ``tools/visualize_assignment.py``, ``draw_predictions.py``, ``prepare_trees.py`` and
``train_demo.py``."""

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

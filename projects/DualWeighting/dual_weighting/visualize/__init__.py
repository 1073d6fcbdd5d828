"""Pictures: detections beside ground truth, the demo on images and videos, and what DW assigns
to each anchor point (the maps, the model run that gives them, and the figure).

``tools/demo.py``, ``tools/visualize_assignment.py`` and ``tools/run_demo.py`` are thin command
lines over these.
"""

from .assignment_figure import describe_assignment, draw_assignment, pick_boxes, to_rgb
from .assignment_maps import dw_assignment_maps, split_levels, strong_positives
from .assignment_model import compute_assignment, load_model, select_records, training_mapper
from .config import load_cfg
from .demo import (
    DetectionDemo,
    demo_cfg,
    describe_detections,
    expand_inputs,
    output_path,
    video_output_path,
)
from .predictions import predictions_beside_ground_truth

__all__ = [
    "DetectionDemo",
    "compute_assignment",
    "demo_cfg",
    "describe_assignment",
    "describe_detections",
    "draw_assignment",
    "dw_assignment_maps",
    "expand_inputs",
    "load_cfg",
    "load_model",
    "output_path",
    "pick_boxes",
    "predictions_beside_ground_truth",
    "select_records",
    "split_levels",
    "strong_positives",
    "to_rgb",
    "training_mapper",
    "video_output_path",
]

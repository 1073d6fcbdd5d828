"""COCO evaluation: detectron2's ``COCOEvaluator`` with a faster, equal ``COCOeval``."""

from .coco import COCOEVAL_BACKENDS, DWCOCOEvaluator, resolve_cocoeval

__all__ = ["COCOEVAL_BACKENDS", "DWCOCOEvaluator", "resolve_cocoeval"]

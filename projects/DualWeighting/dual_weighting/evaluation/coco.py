"""detectron2's ``COCOEvaluator`` with the ``COCOeval`` implementation chosen by name.

detectron2 computes AP with its own C++ ``COCOeval_opt`` when detectron2 was built with its
compiled ops, and with pycocotools' pure-Python ``COCOeval`` otherwise (the case of the
registry install this project uses). faster-coco-eval's ``COCOeval_faster`` is a maintained C++
drop-in for pycocotools' class, with the same per-image matching, accumulation and summary, so
the AP tables and per-class AP are the same numbers (the tests check them against pycocotools to
1e-6) in a fraction of the time.

Backends (``MODEL.DW.COCO_EVAL``):

- ``"auto"``: faster-coco-eval if it is installed, else detectron2's compiled ``COCOeval_opt``
  if detectron2 has it, else pycocotools;
- ``"faster_coco_eval"``, ``"detectron2"``, ``"pycocotools"``: that one, or an error saying how
  to get it.
"""

import importlib.util
from unittest import mock

from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation import coco_evaluation as d2_coco_evaluation
from pycocotools.cocoeval import COCOeval

__all__ = ["COCOEVAL_BACKENDS", "DWCOCOEvaluator", "resolve_cocoeval"]

COCOEVAL_BACKENDS = ("auto", "faster_coco_eval", "detectron2", "pycocotools")


def _detectron2_cocoeval():
    """detectron2's compiled ``COCOeval_opt``, or None where detectron2 has no compiled ops
    (detectron2 then binds the name to pycocotools' class)."""
    fast = d2_coco_evaluation.COCOeval_opt
    return None if fast is COCOeval else fast


def resolve_cocoeval(backend="auto"):
    """The ``COCOeval`` class of ``backend`` (one of :data:`COCOEVAL_BACKENDS`) and its name.

    Raises:
        ValueError: for an unknown name, or a backend that is not installed (with how to get it).
    """
    if backend not in COCOEVAL_BACKENDS:
        raise ValueError(
            f"Unknown COCOeval backend {backend!r} (MODEL.DW.COCO_EVAL); choose from "
            f"{', '.join(COCOEVAL_BACKENDS)}"
        )
    has_faster = importlib.util.find_spec("faster_coco_eval") is not None
    if backend == "faster_coco_eval" or (backend == "auto" and has_faster):
        if not has_faster:
            raise ValueError(
                "MODEL.DW.COCO_EVAL is 'faster_coco_eval', which is not installed: "
                "`pip install faster-coco-eval` (make env installs it), or choose 'pycocotools'"
            )
        from faster_coco_eval import COCOeval_faster

        return COCOeval_faster, "faster_coco_eval"
    if backend in ("detectron2", "auto") and _detectron2_cocoeval() is not None:
        return _detectron2_cocoeval(), "detectron2"
    if backend == "detectron2":
        raise ValueError(
            "MODEL.DW.COCO_EVAL is 'detectron2', but this detectron2 has no compiled ops "
            "(detectron2._C) and so no COCOeval_opt: build detectron2 from source, or choose "
            "'faster_coco_eval' or 'pycocotools'"
        )
    return COCOeval, "pycocotools"


class DWCOCOEvaluator(COCOEvaluator):
    """detectron2's ``COCOEvaluator`` (same arguments, results and files) whose AP is computed by
    the ``COCOeval`` of ``backend`` (see :func:`resolve_cocoeval`)."""

    def __init__(self, dataset_name, *args, backend="auto", **kwargs):
        self._cocoeval_class, self.backend = resolve_cocoeval(backend)
        # detectron2 turns its "fast implementation" off when its compiled one is missing; the
        # chosen class is given to it through that switch below, for every backend alike.
        kwargs["use_fast_impl"] = False
        super().__init__(dataset_name, *args, **kwargs)
        self._use_fast_impl = True

    def _eval_predictions(self, predictions, img_ids=None):
        self._logger.info(f"COCOeval backend: {self.backend}")
        # COCOEvaluator reads the class to use from its module's COCOeval_opt name when
        # _use_fast_impl is set; point that name at the chosen class for this call only.
        with mock.patch.object(d2_coco_evaluation, "COCOeval_opt", self._cocoeval_class):
            super()._eval_predictions(predictions, img_ids=img_ids)

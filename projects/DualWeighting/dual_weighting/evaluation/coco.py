"""detectron2's ``COCOEvaluator`` with the ``COCOeval`` chosen by name (``TEST.COCO_EVAL``):
faster-coco-eval's C++ drop-in for pycocotools' (the same numbers, tested to 1e-6, in a fraction
of the time), detectron2's compiled ``COCOeval_opt`` or pycocotools'. ``"auto"`` takes the first
available.
"""

import importlib.util
import itertools
import json
import os

from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation import coco_evaluation as d2_coco_evaluation
from detectron2.utils.file_io import PathManager
from pycocotools.cocoeval import COCOeval

__all__ = ["COCOEVAL_BACKENDS", "DWCOCOEvaluator", "resolve_cocoeval"]

COCOEVAL_BACKENDS = ("auto", "faster_coco_eval", "detectron2", "pycocotools")


def _detectron2_cocoeval():
    """detectron2's compiled ``COCOeval_opt``, or None where detectron2 has no compiled ops
    (detectron2 then binds the name to pycocotools' class)."""
    fast = d2_coco_evaluation.COCOeval_opt
    return None if fast is COCOeval else fast


def resolve_cocoeval(backend="auto"):
    """The ``COCOeval`` class of ``backend`` (one of :data:`COCOEVAL_BACKENDS`) and its name; a
    ValueError for an unknown name, or one not installed (with how to get it)."""
    if backend not in COCOEVAL_BACKENDS:
        raise ValueError(
            f"Unknown COCOeval backend {backend!r} (TEST.COCO_EVAL); choose from "
            f"{', '.join(COCOEVAL_BACKENDS)}"
        )
    has_faster = importlib.util.find_spec("faster_coco_eval") is not None
    if backend == "faster_coco_eval" or (backend == "auto" and has_faster):
        if not has_faster:
            raise ValueError(
                "TEST.COCO_EVAL is 'faster_coco_eval', which is not installed: "
                "`pip install faster-coco-eval` (make env installs it), or choose 'pycocotools'"
            )
        from faster_coco_eval import COCOeval_faster

        return COCOeval_faster, "faster_coco_eval"
    if backend in ("detectron2", "auto") and _detectron2_cocoeval() is not None:
        return _detectron2_cocoeval(), "detectron2"
    if backend == "detectron2":
        raise ValueError(
            "TEST.COCO_EVAL is 'detectron2', but this detectron2 has no compiled ops "
            "(detectron2._C) and so no COCOeval_opt: build detectron2 from source, or choose "
            "'faster_coco_eval' or 'pycocotools'"
        )
    return COCOeval, "pycocotools"


class DWCOCOEvaluator(COCOEvaluator):
    """detectron2's ``COCOEvaluator`` (same arguments, results and files) whose AP is computed by
    the ``COCOeval`` of ``backend`` (see :func:`resolve_cocoeval`)."""

    def __init__(self, dataset_name, *args, backend="auto", **kwargs):
        self._cocoeval_class, self.backend = resolve_cocoeval(backend)
        # The chosen class replaces detectron2's switch between its two; off, detectron2 does
        # not log that its own fast implementation is missing.
        kwargs["use_fast_impl"] = False
        super().__init__(dataset_name, *args, **kwargs)

    def _eval_predictions(self, predictions, img_ids=None):
        """detectron2's, with the chosen ``COCOeval`` class (its own reads it from its module)."""
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        to_dataset_id = self._metadata.get("thing_dataset_id_to_contiguous_id")
        if to_dataset_id is not None:
            from_contiguous = {v: k for k, v in to_dataset_id.items()}
            for result in coco_results:
                if result["category_id"] not in from_contiguous:
                    raise ValueError(
                        f"A prediction has class {result['category_id']}, but dataset "
                        f"{self._metadata.name} has {len(from_contiguous)} classes"
                    )
                result["category_id"] = from_contiguous[result["category_id"]]
        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            self._logger.info(f"Saving results to {path}")
            with PathManager.open(path, "w") as f:
                json.dump(coco_results, f)
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        self._logger.info(f"COCOeval backend: {self.backend}")
        for task in sorted(self._tasks or self._tasks_from_predictions(coco_results)):
            coco_eval = (
                d2_coco_evaluation._evaluate_predictions_on_coco(
                    self._coco_api,
                    coco_results,
                    task,
                    kpt_oks_sigmas=self._kpt_oks_sigmas,
                    cocoeval_fn=self._cocoeval_class,
                    img_ids=img_ids,
                    max_dets_per_image=self._max_dets_per_image,
                )
                if coco_results  # COCOeval fails on no detections at all; detectron2 skips it
                else None
            )
            self._results[task] = self._derive_coco_results(
                coco_eval, task, class_names=self._metadata.get("thing_classes")
            )

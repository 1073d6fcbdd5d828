"""The evaluation section: how long detectron2's COCO evaluation takes at COCO's size with each
``COCOeval`` backend of :class:`~dual_weighting.evaluation.DWCOCOEvaluator`, and whether the
numbers are the same.

The data are generated, shaped like COCO val2017 (5000 images, about 7 boxes an image with a
long tail, 1% of images without boxes, 1% crowd boxes, 41/34/25% small/medium/large boxes,
COCO's 80 category ids with a skewed class frequency), with a fixed number of detections per
image (100, what a detector keeps at a low score threshold): jittered copies of the boxes, some
of another class, and background boxes at lower scores.
"""

import contextlib
import gc
import io
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.structures import Boxes, Instances

from dual_weighting.evaluation import DWCOCOEvaluator

from .plots import bar_chart
from .report import format_table

# (width, height) of generated images, the most common COCO shapes.
IMAGE_SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 360), (500, 375))
# Box area ranges (pixels) of COCO's small/medium/large and their shares in val2017.
AREA_RANGES = ((4**2, 32**2), (32**2, 96**2), (96**2, 400**2))
AREA_SHARES = (0.41, 0.34, 0.25)
# The two numbers are equal if they differ by at most this (AP in %).
TOLERANCE = 1e-6


def _random_boxes(rng, n, width, height):
    """(n, 4) float64 XYXY boxes inside a width x height image, areas as COCO's."""
    low, high = np.array(AREA_RANGES, dtype=np.float64)[rng.choice(3, n, p=AREA_SHARES)].T
    area = np.exp(rng.uniform(np.log(low), np.log(np.minimum(high, 0.9 * width * height))))
    aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), n))  # width / height
    w = np.minimum(np.sqrt(area * aspect), width - 1)
    h = np.minimum(area / w, height - 1)
    x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
    return np.stack([x, y, x + w, y + h], axis=1)


def generate_coco_eval_data(num_images=5000, dets_per_image=100, seed=0):
    """COCO-like ground truth and detections (see the module docstring).

    Returns:
        (dict, dict): the COCO json (``images``, ``annotations``, ``categories``) and per image
        id ``(height, width, boxes (D, 4) XYXY, classes (D,) contiguous 0..79, scores (D,))``
        with D = ``dets_per_image``.
    """
    rng = np.random.default_rng(seed)
    categories = [{"id": c["id"], "name": c["name"]} for c in COCO_CATEGORIES if c["isthing"]]
    num_classes = len(categories)
    class_p = 1 / np.arange(1, num_classes + 1)  # a few frequent classes, as "person" in COCO
    class_p /= class_p.sum()
    images, annotations, detections = [], [], {}
    for image_id in range(1, num_images + 1):
        width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
        images.append({"id": image_id, "width": width, "height": height, "file_name": "x.jpg"})
        num_gt = 0 if rng.random() < 0.01 else min(int(rng.geometric(1 / 7.3)), 60)
        gt = _random_boxes(rng, num_gt, width, height)
        gt_classes = rng.choice(num_classes, num_gt, p=class_p)
        for box, cls in zip(gt, gt_classes):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": categories[cls]["id"],
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(rng.random() < 0.01),
                }
            )
        # 1-3 detections near each box (mostly its class), then background up to D.
        near = np.repeat(np.arange(num_gt), rng.integers(1, 4, num_gt))[:dets_per_image]
        size = np.tile(gt[near, 2:] - gt[near, :2], 2)  # (w, h, w, h)
        boxes = gt[near] + rng.normal(0, 0.08, (len(near), 4)) * size
        classes = np.where(rng.random(len(near)) < 0.85, gt_classes[near], 0)
        scores = rng.beta(4, 2, len(near))
        num_bg = dets_per_image - len(near)
        boxes = np.concatenate([boxes, _random_boxes(rng, num_bg, width, height)])
        classes = np.concatenate([classes, rng.choice(num_classes, num_bg, p=class_p)])
        scores = np.concatenate([scores, rng.beta(1.5, 6, num_bg)])
        detections[image_id] = (height, width, boxes, classes, scores)
    gt_json = {"images": images, "annotations": annotations, "categories": categories}
    return gt_json, detections


def timed_cocoeval(cocoeval_class, record):
    """A subclass of ``cocoeval_class`` that puts the seconds of its ``evaluate``, ``accumulate``
    and ``summarize`` and its 12 summary numbers (``stats``: AP and AR) into the dict
    ``record``."""

    def timed(name):
        def method(self):
            start = time.perf_counter()
            getattr(cocoeval_class, name)(self)
            record[f"{name}_s"] = time.perf_counter() - start
            if name == "summarize":
                record["stats"] = [float(s) for s in self.stats[:12]]

        return method

    methods = {name: timed(name) for name in ("evaluate", "accumulate", "summarize")}
    return type(f"Timed{cocoeval_class.__name__}", (cocoeval_class,), methods)


class TimedCOCOEvaluator(DWCOCOEvaluator):
    """:class:`DWCOCOEvaluator` whose ``COCOeval`` records its times and summary in
    ``self.cocoeval_record`` (see :func:`timed_cocoeval`)."""

    def __init__(self, dataset_name, *args, **kwargs):
        super().__init__(dataset_name, *args, **kwargs)
        self.cocoeval_record = {}
        self._cocoeval_class = timed_cocoeval(self._cocoeval_class, self.cocoeval_record)


def evaluate_backend(dataset_name, detections, backend):
    """Feed ``detections`` (as :func:`generate_coco_eval_data` returns) to a
    :class:`TimedCOCOEvaluator` of ``backend`` as ``inference_on_dataset`` would, then evaluate.

    Returns:
        dict: ``backend``; seconds of ``process_s`` (all images), ``evaluate_s`` (the whole
        ``evaluate()``: results to COCO format, ``loadRes``, COCOeval, per-class table) and
        ``cocoeval_s`` (its COCOeval part; ``cocoeval_parts_s``: of its ``evaluate``,
        ``accumulate`` and ``summarize``); ``results`` (detectron2's bbox table with per-class
        AP, %) and ``stats`` (COCOeval's 12 AP/AR numbers, fractions).
    """
    evaluator = TimedCOCOEvaluator(dataset_name, tasks=("bbox",), backend=backend, output_dir=None)
    evaluator.reset()
    start = time.perf_counter()
    for image_id, (height, width, boxes, classes, scores) in detections.items():
        instances = Instances((height, width))
        instances.pred_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
        instances.scores = torch.as_tensor(scores, dtype=torch.float32)
        instances.pred_classes = torch.as_tensor(classes, dtype=torch.int64)
        evaluator.process([{"image_id": image_id}], [{"instances": instances}])
    process_s = time.perf_counter() - start
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress lines
        results = evaluator.evaluate()["bbox"]
    evaluate_s = time.perf_counter() - start
    record = evaluator.cocoeval_record
    return {
        "backend": evaluator.backend,
        "process_s": process_s,
        "evaluate_s": evaluate_s,
        "cocoeval_s": sum(record[f"{n}_s"] for n in ("evaluate", "accumulate", "summarize")),
        "cocoeval_parts_s": {n: record[f"{n}_s"] for n in ("evaluate", "accumulate", "summarize")},
        "results": results,
        "stats": record["stats"],
    }


def largest_difference(a, b):
    """Largest absolute difference of two dicts of numbers with the same keys (NaN equals NaN);
    inf if the keys differ or only one of two values is NaN."""
    if a.keys() != b.keys():
        return math.inf
    worst = 0.0
    for key in a:
        x, y = float(a[key]), float(b[key])
        if math.isnan(x) or math.isnan(y):
            worst = worst if math.isnan(x) and math.isnan(y) else math.inf
        else:
            worst = max(worst, abs(x - y))
    return worst


def compare_to_reference(runs):
    """Per run, the largest difference to ``runs[0]`` of its AP table with per-class AP (%) and
    of its 12 AP/AR numbers (in %, as the table)."""
    ref = runs[0]
    ref_stats = {i: 100 * s for i, s in enumerate(ref["stats"])}
    for r in runs:
        stats = {i: 100 * s for i, s in enumerate(r["stats"])}
        r["difference"] = max(
            largest_difference(r["results"], ref["results"]),
            largest_difference(stats, ref_stats),
        )
    return runs


def format_coco_eval(runs, title):
    """A row per backend: times, speed-ups over the first (reference) backend, AP, and whether
    every number equals the reference's (to :data:`TOLERANCE`)."""
    ref = runs[0]
    rows = [
        [
            r["backend"],
            f"{r['process_s']:.1f}",
            f"{r['evaluate_s']:.1f}",
            f"{ref['evaluate_s'] / r['evaluate_s']:.2f}x",
            f"{r['cocoeval_s']:.1f}",
            f"{ref['cocoeval_s'] / r['cocoeval_s']:.2f}x",
            f"{r['results']['AP']:.3f}",
            f"{'yes' if r['difference'] <= TOLERANCE else 'NO'} ({r['difference']:.1g})",
        ]
        for r in runs
    ]
    header = [
        "COCOeval", "process s", "evaluate() s", "speed-up", "COCOeval s", "speed-up", "AP",
        f"= {ref['backend']} (largest diff)",
    ]  # fmt: skip
    return f"{title}\n{format_table(header, rows)}"


def run_coco_eval(args, out):
    """Time ``args.coco_backends`` on ``args.coco_images`` generated images with
    ``args.coco_dets`` detections each, in this order, print the table, set
    ``out["evaluation"]``."""
    gt_json, detections = generate_coco_eval_data(args.coco_images, args.coco_dets)
    name = "dw_benchmark_coco_eval"
    with tempfile.TemporaryDirectory() as tmp:
        json_file = Path(tmp) / "instances.json"
        json_file.write_text(json.dumps(gt_json))
        register_coco_instances(name, {}, str(json_file), tmp)
        try:
            DatasetCatalog.get(name)  # sets the category id mapping and class names
            runs = []
            for backend in args.coco_backends:
                print(f"  {backend} ...", flush=True)
                gc.collect()  # the previous backend's garbage is not collected on this one's time
                runs.append(evaluate_backend(name, detections, backend))
        finally:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    compare_to_reference(runs)
    boxes = len(gt_json["annotations"])
    crowd = sum(a["iscrowd"] for a in gt_json["annotations"])
    empty = len(detections) - len({a["image_id"] for a in gt_json["annotations"]})
    title = (
        f"detectron2 COCOEvaluator (bbox) on {len(detections)} generated images ({boxes} boxes, "
        f"{crowd} crowd, {empty} images without boxes), {args.coco_dets} detections an image; "
        "process = COCOEvaluator.process of every image; speed-up = "
        f"{runs[0]['backend']} time / this time; last column: AP/AR tables and per-class AP:"
    )
    out["evaluation"] = {"title": title, "runs": runs}
    print(format_coco_eval(runs, title), flush=True)
    path = Path(args.output_dir) / "evaluation_seconds.png"
    parts = (("evaluate(), all of it", "evaluate_s"), ("its COCOeval part", "cocoeval_s"))
    bar_chart(
        {part: {r["backend"]: r[key] for r in runs} for part, key in parts},
        path,
        f"detectron2's COCOEvaluator on {len(detections)} images x {args.coco_dets} detections "
        f"(generated), by COCOeval backend; same run as the table",
        "seconds",
        value_format="{:.1f} s",
    )
    print(f"  plot: {path}", flush=True)
    return runs

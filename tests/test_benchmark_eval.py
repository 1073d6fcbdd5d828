"""The evaluation section of ``benchmarks`` (tools/benchmarks/) at a tiny size (generated
COCO-like data as described, every backend's numbers equal to pycocotools run here directly) and
the batched section's comparison of detections on hand-made ones (its model runs:
tests/test_benchmark.py)."""

import argparse
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.structures import Boxes, Instances
from helpers import printed_numbers, table_line
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks import batched, coco_eval


def test_generated_data_is_shaped_like_coco():
    gt, detections = coco_eval.generate_coco_eval_data(num_images=400, dets_per_image=30, seed=1)
    thing_ids = [c["id"] for c in COCO_CATEGORIES if c["isthing"]]
    assert [c["id"] for c in gt["categories"]] == thing_ids  # COCO's 80 ids, 1..90 with gaps
    annotations = gt["annotations"]
    assert 5 < len(annotations) / 400 < 10  # COCO val2017: 7.4 an image
    assert 0 < sum(a["iscrowd"] for a in annotations) < 0.05 * len(annotations)
    assert len(detections) - len({a["image_id"] for a in annotations}) >= 1  # empty images
    sizes = {i["id"]: (i["width"], i["height"]) for i in gt["images"]}
    areas = np.array([a["area"] for a in annotations])
    assert 0.3 < np.mean(areas < 32**2) < 0.5 and 0.15 < np.mean(areas > 96**2) < 0.35
    for a in annotations:
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height and w > 0 and h > 0
    for image_id, (height, width, boxes, classes, scores) in detections.items():
        assert (width, height) == sizes[image_id]
        assert boxes.shape == (30, 4) and classes.shape == scores.shape == (30,)
        assert classes.min() >= 0 and classes.max() < 80 and ((0 < scores) & (scores < 1)).all()


def pycocotools_stats(gt, detections):
    """The 12 AP/AR numbers of pycocotools on the detections, converted to COCO results here."""
    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    ids = sorted(c["id"] for c in gt["categories"])
    results = [
        {
            "image_id": image_id,
            "category_id": ids[c],
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "score": s,
        }
        for image_id, (_, _, boxes, classes, scores) in detections.items()
        for b, c, s in zip(boxes.astype(np.float32).tolist(), classes, scores.astype(np.float32))
    ]
    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval.stats


def test_every_backend_gives_pycocotools_numbers(tmp_path):
    args = argparse.Namespace(
        coco_images=80, coco_dets=40, coco_backends=["pycocotools", "faster_coco_eval"],
        output_dir=str(tmp_path),
    )  # fmt: skip
    out = {}
    runs = coco_eval.run_coco_eval(args, out)
    assert [r["backend"] for r in runs] == ["pycocotools", "faster_coco_eval"]
    assert "dw_benchmark_coco_eval" not in DatasetCatalog.list()  # registered for the run only
    gt, detections = coco_eval.generate_coco_eval_data(80, 40)  # the run's data (seed 0)
    expected = pycocotools_stats(gt, detections)
    assert 0.1 < expected[0] < 0.9
    for r in runs:
        np.testing.assert_allclose(r["stats"], expected, rtol=0, atol=1e-8)
        assert r["results"]["AP"] == pytest.approx(100 * expected[0], abs=1e-6)
        assert sum(k.startswith("AP-") for k in r["results"]) == 80  # per-class AP
        assert r["difference"] <= coco_eval.TOLERANCE
        assert 0 < r["cocoeval_s"] < r["evaluate_s"] and r["process_s"] > 0
    # Each backend's row reports its AP, and that its numbers equal the reference's.
    table = coco_eval.format_coco_eval(runs, "title")
    for r in runs:
        row = table_line(table, r["backend"])
        assert printed_numbers(row)[5] == r["results"]["AP"] and "yes" in row.split()
    assert (tmp_path / "evaluation_seconds.png").stat().st_size > 0


def test_largest_difference():
    assert coco_eval.largest_difference({"a": 1, "b": 2}, {"a": 1, "b": 2.5}) == 0.5
    assert coco_eval.largest_difference({"a": math.nan}, {"a": math.nan}) == 0
    assert coco_eval.largest_difference({"a": math.nan}, {"a": 1.0}) == math.inf
    assert coco_eval.largest_difference({"a": 1}, {"b": 1}) == math.inf


def test_timed_cocoeval_records_its_parts():
    record = {}
    timed = coco_eval.timed_cocoeval(COCOeval, record)
    gt, detections = coco_eval.generate_coco_eval_data(5, 10)
    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    dets = [
        {"image_id": i, "category_id": 1, "bbox": [1.0, 1.0, 20.0, 20.0], "score": 0.5}
        for i in detections
    ]
    e = timed(coco_gt, coco_gt.loadRes(dets), "bbox")
    assert isinstance(e, COCOeval)
    e.evaluate()
    e.accumulate()
    e.summarize()
    assert {"evaluate_s", "accumulate_s", "summarize_s"} <= set(record)
    assert record["stats"] == [float(s) for s in e.stats]


def instances(boxes, scores, classes, size=(64, 96)):
    x = Instances(size)
    x.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    x.scores = torch.tensor(scores)
    x.pred_classes = torch.tensor(classes)
    return x


def test_compare_detections_on_hand_made_detections():
    ref = {
        1: ({}, instances([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.5], [0, 1])),
        2: ({}, instances([[0, 0, 30, 30]], [0.7], [2])),
    }
    other = {
        # The first box moved by 1 px (IoU 0.82) with score 0.8; the second as another class.
        1: ({}, instances([[1, 0, 11, 10], [20, 20, 40, 40]], [0.8, 0.5], [0, 3])),
        2: ({}, instances([[0, 0, 30, 30], [50, 0, 60, 9]], [0.7, 0.1], [2, 2])),
    }
    c = batched.compare_detections(ref, other)
    assert c["dets_per_image"] == 2.0
    assert c["images_with_other_count"] == 1
    assert c["unmatched"] == 3  # class 1 and class 3 of image 1, the extra box of image 2
    assert c["score_diff"] == pytest.approx(0.1) and c["box_diff"] == 1.0
    assert c["mean_score_diff"] == pytest.approx(0.05)  # pairs differing by 0.1 and by 0
    same = batched.compare_detections(ref, ref)
    assert same["unmatched"] == same["images_with_other_count"] == 0
    assert same["score_diff"] == same["box_diff"] == 0
    empty = {1: ({}, instances(np.zeros((0, 4)), [], [])), 2: other[2]}
    assert batched.compare_detections(ref, empty)["unmatched"] == 3

"""DWCOCOEvaluator: the fast COCOeval gives pycocotools' numbers through detectron2's flow."""

import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import Boxes, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dual_weighting.evaluation import DWCOCOEvaluator, resolve_cocoeval

CATEGORY_IDS = (1, 3, 7)  # not contiguous, as COCO's
DATASET = "test_dw_cocoeval"


def write_dataset(path, seed=0, num_images=40):
    """A COCO json with crowd boxes, images without boxes and boxes of all sizes, and
    per image up to 150 detections (dataset-contiguous classes) near and away from them."""
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], {}
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        boxes, classes, scores = [], [], []
        for _ in range(0 if image_id % 8 == 0 else rng.integers(1, 8)):
            x, y = rng.uniform(0, 500), rng.uniform(0, 380)
            w, h = rng.choice([rng.uniform(2, 30), rng.uniform(30, 95), rng.uniform(95, 140)], 2)
            category = int(rng.integers(len(CATEGORY_IDS)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[category],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.15),
                }
            )
            for _ in range(3):  # detections near the box, mostly of its class
                jitter = rng.normal(0, 4, 4)
                boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
                classes.append(category if rng.random() < 0.8 else 0)
                scores.append(rng.uniform(0.2, 1.0))
        for _ in range(rng.integers(0, 130)):  # background detections
            x, y = rng.uniform(0, 560), rng.uniform(0, 400)
            boxes.append([x, y, x + rng.uniform(1, 80), y + rng.uniform(1, 80)])
            classes.append(int(rng.integers(len(CATEGORY_IDS))))
            scores.append(rng.uniform(0.0, 0.6))
        detections[image_id] = (boxes, classes, scores)
    categories = [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return detections


def run_evaluator(detections, backend, output_dir=None):
    evaluator = DWCOCOEvaluator(DATASET, tasks=("bbox",), backend=backend, output_dir=output_dir)
    evaluator.reset()
    for image_id, (boxes, classes, scores) in detections.items():
        instances = Instances((480, 640))
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4))
        instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
        instances.scores = torch.tensor(scores, dtype=torch.float32)
        evaluator.process([{"image_id": image_id}], [{"instances": instances}])
    return evaluator.evaluate()["bbox"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    json_file = tmp_path_factory.mktemp("cocoeval") / "instances.json"
    detections = write_dataset(json_file)
    register_coco_instances(DATASET, {}, str(json_file), str(json_file.parent))
    DatasetCatalog.get(DATASET)  # loading sets thing_classes and the category id mapping
    yield json_file, detections
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


def pycocotools_reference(json_file, results_file):
    """AP table and per-class AP (%) straight from pycocotools, as COCO defines them."""
    coco_gt = COCO(str(json_file))
    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(results_file)), "bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    table = {name: 100 * coco_eval.stats[i] for i, name in enumerate(names)}
    precision = coco_eval.eval["precision"]  # (iou, recall, class, area, max dets)
    for k, category in enumerate(CATEGORY_IDS):
        p = precision[:, :, k, 0, -1]
        table[f"AP-class{category}"] = 100 * float(np.mean(p[p > -1])) if (p > -1).any() else 0
    return table


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_ap_tables_equal_pycocotools(dataset, backend, tmp_path):
    json_file, detections = dataset
    results = run_evaluator(detections, backend, output_dir=str(tmp_path))
    expected = pycocotools_reference(json_file, tmp_path / "coco_instances_results.json")
    assert set(expected) <= set(results)
    assert 10 < expected["AP"] < 90  # neither trivial nor perfect
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-6), key


def test_ar_and_precision_arrays_equal_pycocotools(dataset, tmp_path):
    """All 12 summary numbers (AP and AR) and the precision/recall arrays, class against class."""
    json_file, detections = dataset
    run_evaluator(detections, "pycocotools", output_dir=str(tmp_path))
    coco_gt = COCO(str(json_file))
    results = str(tmp_path / "coco_instances_results.json")
    evals = []
    for cocoeval_class in (COCOeval, resolve_cocoeval("faster_coco_eval")[0]):
        coco_eval = cocoeval_class(coco_gt, coco_gt.loadRes(results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        evals.append(coco_eval)
    reference, fast = evals
    np.testing.assert_allclose(fast.stats[:12], reference.stats, rtol=0, atol=1e-8)
    for key in ("precision", "recall"):
        np.testing.assert_allclose(fast.eval[key], reference.eval[key], rtol=0, atol=1e-8)
    assert (reference.eval["recall"] > 0).any()


def test_crowd_and_empty_images_are_exercised(dataset):
    json_file, detections = dataset
    annotations = json.loads(json_file.read_text())["annotations"]
    assert sum(a["iscrowd"] for a in annotations) >= 5
    images_with_boxes = {a["image_id"] for a in annotations}
    assert len(set(detections) - images_with_boxes) >= 4
    assert max(len(d[0]) for d in detections.values()) >= 100


def test_cocoeval_backend_names_resolve_or_are_refused_with_the_reason():
    assert resolve_cocoeval("auto")[1] == "faster_coco_eval"  # installed by make env
    assert resolve_cocoeval("pycocotools")[0] is COCOeval
    with pytest.raises(ValueError, match="Unknown COCOeval backend 'fast'"):
        resolve_cocoeval("fast")
    # The registry install of detectron2 has no compiled ops, hence no COCOeval_opt.
    with pytest.raises(ValueError, match="no compiled ops"):
        resolve_cocoeval("detectron2")


def test_auto_falls_back_to_pycocotools_without_faster_coco_eval(monkeypatch):
    import dual_weighting.evaluation.coco as coco

    real_find_spec = coco.importlib.util.find_spec
    monkeypatch.setattr(
        coco.importlib.util,
        "find_spec",
        lambda name: None if name == "faster_coco_eval" else real_find_spec(name),
    )
    assert resolve_cocoeval("auto") == (COCOeval, "pycocotools")
    with pytest.raises(ValueError, match="pip install faster-coco-eval"):
        resolve_cocoeval("faster_coco_eval")

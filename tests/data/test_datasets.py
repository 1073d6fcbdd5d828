"""The synthetic dataset and the COCO-format registration helpers (tiny sizes, CPU, seconds)."""

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode
from helpers import REPO
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from dual_weighting.data import CLASS_NAMES, register_coco_from_spec, register_synthetic
from sample_data.shapes import ensure_synthetic, generate_synthetic_coco, render_image

TINY = {"num_train": 20, "num_val": 6}  # default 256x320 images


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("dw_synthetic")
    return root, generate_synthetic_coco(root, seed=0, **TINY)


@pytest.fixture
def names():
    """Dataset names a test registers; removed from detectron2's catalogs afterwards."""
    registered = []
    yield registered
    for name in registered:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)


def _files(root):
    return sorted(p.relative_to(root) for p in Path(root).rglob("*") if p.is_file())


def _segmentation_mask(ann, h, w):
    rles = mask_util.frPyObjects(ann["segmentation"], h, w)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    small = {"num_train": 4, "num_val": 2, "image_size": (96, 128)}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        generate_synthetic_coco(tmp_path / name, seed=seed, **small)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b") == _files(tmp_path / "c")
    assert len(files) == 4 + 2 + 2
    for f in files:
        assert filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False), f
    assert not any(
        filecmp.cmp(tmp_path / "a" / f, tmp_path / "c" / f, shallow=False) for f in files
    )


def test_json_is_coco_and_loads_in_pycocotools(tiny):
    root, result = tiny
    assert [c["id"] for c in result["categories"]] == list(range(1, len(CLASS_NAMES) + 1))
    for split, num in (("train", TINY["num_train"]), ("val", TINY["num_val"])):
        info = result[split]
        assert info["json_file"] == os.path.join(root, "annotations", f"instances_{split}.json")
        coco = COCO(info["json_file"])
        assert len(coco.getImgIds()) == num == info["num_images"]
        assert len(coco.getAnnIds()) == info["num_annotations"] >= 2 * num
        for img in coco.loadImgs(coco.getImgIds()):
            assert (img["height"], img["width"]) == (256, 320)
            assert os.path.isfile(os.path.join(info["image_root"], img["file_name"]))
        for ann in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = ann["bbox"]
            assert ann["iscrowd"] == 0 and ann["category_id"] in coco.getCatIds()
            assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 256
            polygon = ann["segmentation"][0]
            assert len(polygon) % 2 == 0 and len(polygon) >= 6
            # bbox and area describe the segmentation, as in COCO.
            mask = coco.annToMask(ann)
            ys, xs = np.nonzero(mask)
            assert abs(xs.min() - x) <= 1.5 and abs(xs.max() + 1 - (x + w)) <= 1.5
            assert abs(mask.sum() - ann["area"]) <= 0.1 * ann["area"] + 10


def test_detectron2_loads_registered_dataset(tiny, names):
    root, result = tiny
    names.extend(register_synthetic(root, prefix="test_dw_load"))
    assert names == ["test_dw_load_train", "test_dw_load_val"]
    for name, split in zip(names, ("train", "val")):
        records = DatasetCatalog.get(name)
        assert len(records) == result[split]["num_images"]
        assert sum(len(r["annotations"]) for r in records) == result[split]["num_annotations"]
        for r in records:
            assert os.path.isfile(r["file_name"])
            for ann in r["annotations"]:
                assert ann["bbox_mode"] == BoxMode.XYWH_ABS
                assert ann["category_id"] in range(len(CLASS_NAMES))
                x, y, w, h = ann["bbox"]
                assert w > 0 and h > 0 and x >= 0 and y >= 0
                assert x + w <= r["width"] and y + h <= r["height"]
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == list(CLASS_NAMES)
        assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(len(CLASS_NAMES))}
        assert meta.evaluator_type == "coco"
    # The same records as detectron2's loader gives without our registration.
    direct = load_coco_json(result["val"]["json_file"], result["val"]["image_root"])
    assert [r["file_name"] for r in direct] == [
        r["file_name"] for r in DatasetCatalog.get(names[1])
    ]


def test_sizes_fill_coco_area_buckets(tiny):
    _, result = tiny
    with open(result["train"]["json_file"]) as f:
        areas = np.array([a["area"] for a in json.load(f)["annotations"]])
    assert (areas < 32**2).sum() >= 5  # small
    assert ((areas >= 32**2) & (areas < 96**2)).sum() >= 5  # medium
    assert (areas >= 96**2).sum() >= 5  # large


def test_annotated_objects_are_mostly_visible(tiny):
    # From the json alone: the objects annotated after one (drawn on top of it) leave at least
    # half of it showing. Unannotated clutter can only hide more, which `visibility` includes.
    _, result = tiny
    coco = COCO(result["train"]["json_file"])
    for img_id in coco.getImgIds():
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=img_id)), key=lambda a: a["id"])
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        for i, (ann, mask) in enumerate(zip(anns, masks)):
            assert ann["visibility"] >= 0.5
            above = np.zeros_like(mask)
            for later in masks[i + 1 :]:
                above |= later
            assert (mask & ~above).sum() >= (0.5 - 0.05) * mask.sum() - 5, ann


def test_rendered_pixels_match_annotations():
    # Which object each pixel shows, against the rasterised segmentation (rings have a hole).
    from sample_data.shapes import _coco_annotation

    h, w = 128, 160
    seen_ring = False
    for seed in range(12):
        rng = np.random.default_rng(seed)
        image, objects, owner = render_image(rng, (h, w), (2, 8), (9.0, 109.0), 0.5)
        assert image.shape == (h, w, 3) and image.dtype == np.uint8
        for k, obj in enumerate(objects):
            mask = _segmentation_mask(_coco_annotation(obj, 1, 1), h, w)
            shown = owner == k
            assert shown.sum() / mask.sum() >= 0.5 - 0.05
            if mask.sum() >= 400:  # tiny objects' outlines are a large share of their pixels
                assert abs(shown.sum() / mask.sum() - obj["visibility"]) <= 0.1
            # PIL and pycocotools differ along the outline (PIL fills boundary pixels); a hole
            # drawn in the wrong place would show as far more.
            perimeter = sum(
                np.linalg.norm(np.roll(p, -1, axis=0) - p, axis=1).sum() for p in obj["polygons"]
            )
            assert (shown & ~mask).sum() <= perimeter
            seen_ring |= CLASS_NAMES[obj["category"]] == "ring"
    assert seen_ring


def test_register_synthetic_is_idempotent_and_refuses_other_paths(tmp_path, names):
    names.extend(register_synthetic(tmp_path / "a", prefix="test_dw_idem"))
    assert register_synthetic(str(tmp_path / "a"), prefix="test_dw_idem") == tuple(names)
    with pytest.raises(ValueError, match="test_dw_idem_train.*already registered"):
        register_synthetic(tmp_path / "b", prefix="test_dw_idem")


def test_malformed_or_missing_coco_specs_are_named_and_a_good_one_registers(tiny, tmp_path, names):
    _, result = tiny
    json_file, image_root = result["val"]["json_file"], result["val"]["image_root"]
    for spec in ("no_equals_sign", "name=annotations.txt:images", "=a.json:b", "x=a.json:"):
        with pytest.raises(ValueError, match="Malformed dataset spec") as e:
            register_coco_from_spec(spec)
        assert repr(spec) in str(e.value)
    missing = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        register_coco_from_spec(f"test_dw_spec={missing}:{image_root}")
    with pytest.raises(FileNotFoundError, match="no_images"):
        register_coco_from_spec(f"test_dw_spec={json_file}:{tmp_path / 'no_images'}")

    names.append(register_coco_from_spec(f"test_dw_spec={json_file}:{image_root}"))
    assert names == ["test_dw_spec"]
    assert len(DatasetCatalog.get("test_dw_spec")) == TINY["num_val"]
    assert register_coco_from_spec(f" test_dw_spec={json_file}:{image_root} ") == "test_dw_spec"
    with pytest.raises(ValueError, match="already registered"):
        register_coco_from_spec(f"test_dw_spec={result['train']['json_file']}:{image_root}")
    # detectron2's builtin COCO stays as it is.
    with pytest.raises(ValueError, match="coco_2017_val"):
        register_coco_from_spec(f"coco_2017_val={json_file}:{image_root}")


def test_ensure_synthetic_generates_once(tmp_path, names):
    root = tmp_path / "ds"
    small = {"num_train": 2, "num_val": 1, "image_size": (64, 96)}
    names.extend(ensure_synthetic(root, prefix="test_dw_ensure", **small))
    json_file = root / "annotations" / "instances_train.json"
    stamp = json_file.stat().st_mtime_ns
    assert ensure_synthetic(root, prefix="test_dw_ensure", **small) == tuple(names)
    assert json_file.stat().st_mtime_ns == stamp  # not regenerated
    assert len(DatasetCatalog.get("test_dw_ensure_train")) == 2
    # Other arguments regenerate it (same paths, so the registration stands).
    ensure_synthetic(root, prefix="test_dw_ensure", **{**small, "num_train": 3})
    assert len(DatasetCatalog.get("test_dw_ensure_train")) == 3


def test_generate_dataset_tool_writes_the_asked_number_of_images(tmp_path):
    out = tmp_path / "cli"
    printed = subprocess.run(
        [sys.executable, str(REPO / "tools" / "generate_dataset.py"), "--output", str(out),
         "--num-train", "2", "--num-val", "1", "--image-size", "64", "96"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "train: 2 images" in printed and "val: 1 images" in printed and "done in" in printed
    assert (out / "annotations" / "instances_val.json").is_file()
    assert len(list((out / "train").iterdir())) == 2

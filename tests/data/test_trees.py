"""The real tree-crown set: the converter's tiles and boxes against counts taken from the source
files by other means, boxes cut by tile borders, the held-out image kept out of training.

The DeepForest wheel is downloaded by `make trees` (tools/prepare_trees.py); these tests read it
from disk and reach no network.
"""

import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from helpers import REPO
from PIL import Image

from dual_weighting.data import register_voc_from_specs
from dual_weighting.data.trees import TREES_SPLITS, register_trees
from sample_data.trees import (
    TREES_SOURCE,
    check_trees_source,
    convert_trees,
    tile_boxes,
    tile_origins,
    trees_source_path,
)
from visualize import draw_tiled_source, predictions_beside_ground_truth

TREES_CONFIG = REPO / "configs" / "dw_R_18_FPN_trees.yaml"


@pytest.fixture(scope="module")
def wheel():
    path = trees_source_path()
    if not os.path.isfile(path):
        pytest.fail(f"{path} is missing: `make trees` (or `python tools/prepare_trees.py`) gets it")
    return path


@pytest.fixture(scope="module")
def converted(wheel, tmp_path_factory):
    root = tmp_path_factory.mktemp("trees")
    summary = convert_trees(wheel, root)
    coco = {s: json.loads(open(summary[s]["json_file"]).read()) for s in summary}
    return root, summary, coco


def objects_in_xml(wheel, xml_name):
    """The <object> boxes of a source XML by regular expression (not the project's reader), VOC
    1-based corners moved to 0-based as detectron2 does."""
    with zipfile.ZipFile(wheel) as z:
        text = z.read(TREES_SOURCE["data"] + xml_name).decode()
    corners = re.findall(
        r"<xmin>(\d+)</xmin>\s*<ymin>(\d+)</ymin>\s*<xmax>(\d+)</xmax>\s*<ymax>(\d+)</ymax>", text
    )
    return np.array([[int(a) - 1, int(b) - 1, int(c), int(d)] for a, b, c, d in corners], float)


def test_wheel_holds_the_crowns_counted_in_its_xml_files(wheel):
    # Crowns per file, as `grep -c '<object>'` counts them.
    counts = {name: len(objects_in_xml(wheel, name)) for s in TREES_SPLITS.values() for name in s}
    assert counts == {
        "2019_YELL_2_528000_4978000_image_crop2.xml": 574,
        "OSBS_029.xml": 61,
        "2019_YELL_2_541000_4977000_image_crop.xml": 279,
    }


def test_tile_origins_by_hand():
    assert tile_origins(2299, 400, 200, pad=False) == [*range(0, 1801, 200), 1899]
    assert tile_origins(1200, 400, 200, pad=False) == [0, 200, 400, 600, 800]
    assert tile_origins(1249, 400, 400, pad=True) == [0, 400, 800, 1200]
    assert tile_origins(400, 400, 200, pad=False) == [0]
    assert tile_origins(300, 400, 400, pad=True) == [0]


def test_tile_boxes_by_hand():
    boxes = [
        [10, 10, 30, 30],  # inside
        [390, 0, 410, 10],  # half inside: crowd
        [380, 0, 410, 10],  # 2/3 inside
        [400, 0, 420, 10],  # touches the border only: not in the tile
        [-5, 395, 5, 405],  # a quarter inside: crowd
    ]
    index, clipped, crowd = tile_boxes(boxes, 0, 0, 400, 400)
    assert index.tolist() == [0, 1, 2, 4]
    np.testing.assert_array_equal(
        clipped, [[10, 10, 30, 30], [390, 0, 400, 10], [380, 0, 400, 10], [0, 395, 5, 400]]
    )
    assert crowd.tolist() == [False, True, False, True]
    # The same boxes seen from the tile to the right, shifted to its origin.
    index, clipped, crowd = tile_boxes(boxes, 400, 0, 400, 400)
    assert index.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(clipped, [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 20, 10]])
    assert crowd.tolist() == [True, True, False]


def test_tiles_are_400_px_and_every_box_lies_inside_its_tile(converted):
    root, summary, coco = converted
    assert {s: summary[s]["images"] for s in summary} == {"train": 11 * 12 + 1, "val": 4 * 3}
    for split, data in coco.items():
        sizes = {i["id"]: (i["width"], i["height"]) for i in data["images"]}
        assert set(sizes.values()) == {(400, 400)}
        for i in data["images"][:3]:
            assert Image.open(root / split / i["file_name"]).size == (400, 400)
        for a in data["annotations"]:
            x, y, w, h = a["bbox"]
            W, H = sizes[a["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H, a
            assert a["area"] == pytest.approx(w * h)
    # Every training tile is all image: the tiles of the big image start where tile_origins says.
    big = [i for i in coco["train"]["images"] if i["source"].startswith("2019_YELL_2_528000")]
    assert {(i["x0"], i["y0"]) for i in big} == {
        (x, y) for x in [*range(0, 1801, 200), 1899] for y in [*range(0, 2001, 200), 2072]
    }


def test_held_out_crowns_are_counted_once_and_not_trained_on(converted, wheel):
    _, _, coco = converted
    sources = {s: {i["source"] for i in coco[s]["images"]} for s in coco}
    assert not sources["train"] & sources["val"]
    assert sources["val"] == {"2019_YELL_2_541000_4977000_image_crop.png"}
    crowns = objects_in_xml(wheel, TREES_SPLITS["val"][0])
    origin = {i["id"]: (i["x0"], i["y0"]) for i in coco["val"]["images"]}
    ordinary = [a for a in coco["val"]["annotations"] if not a["iscrowd"]]
    seen = [a["source_object"] for a in ordinary]
    assert len(seen) == len(set(seen))  # no crown is an ordinary box in two tiles
    # Each ordinary box is its crown clipped to the tile, keeping more than half of its area.
    for a in ordinary:
        x0, y0 = origin[a["image_id"]]
        c = crowns[a["source_object"]]
        x, y, w, h = a["bbox"]
        np.testing.assert_allclose(
            [x + x0, y + y0, x + w + x0, y + h + y0],
            [max(c[0], x0), max(c[1], y0), min(c[2], x0 + 400), min(c[3], y0 + 400)],
        )
        assert w * h > 0.5 * (c[2] - c[0]) * (c[3] - c[1])
    # The crowns that no tile sees more than half of lie on tile borders.
    lost = set(range(len(crowns))) - set(seen)
    assert len(seen) == 275 and len(lost) == 4
    for k in lost:
        c = crowns[k]
        assert (c[0] // 400 != (c[2] - 1) // 400) or (c[1] // 400 != (c[3] - 1) // 400)


def test_registered_names_load_with_detectron2s_coco_loader(converted):
    root, summary, _ = converted
    names = register_trees(root, prefix="t_trees")
    try:
        assert names == ("t_trees_train", "t_trees_val")
        val = DatasetCatalog.get("t_trees_val")
        assert len(val) == 12
        assert MetadataCatalog.get("t_trees_val").thing_classes == ["Tree"]
        boxes = sum(len(r["annotations"]) for r in val)
        assert boxes == summary["val"]["boxes"] + summary["val"]["crowd"]
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_another_file_is_refused_by_its_hash(tmp_path):
    fake = tmp_path / TREES_SOURCE["wheel"]
    fake.write_bytes(b"not the wheel")
    with pytest.raises(ValueError, match="has sha256 .* not 8c2798d8"):
        check_trees_source(fake)


def test_draw_predictions_tool_and_crowd_regions(converted, tmp_path):
    """tools/draw_predictions.py on two held-out tiles (random init): one row per tile, nothing
    drawn on the prediction side above score 2; the ground truth leaves crowd regions out (the
    picture is that of the record without them) and draws every ordinary box."""
    root, _, coco = converted
    spec = f"t_draw={root}/annotations/instances_val.json:{root}/val"
    out = tmp_path / "pred.png"
    command = [sys.executable, "tools/draw_predictions.py", "--config-file", str(TREES_CONFIG),
               "--register-coco", spec, "--dataset", "t_draw", "--output", str(out)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [*command, "--indices", "4", "5", "--score-thresh", "2", "--opts", "MODEL.WEIGHTS", ""],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == (2 * (400 + 8), 2 * 400 + 8, 3)
    tile = np.asarray(Image.open(root / "val" / coco["val"]["images"][4]["file_name"]))
    assert np.array_equal(picture[:400, 408:], tile[:, :, :3])
    bad = subprocess.run(
        [*command, "--indices", "12", "--opts", "MODEL.WEIGHTS", ""],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=env,
    )  # fmt: skip
    assert bad.returncode != 0 and "--indices [12]: t_draw has 12 records" in bad.stderr

    names = register_trees(root, prefix="t_crowd")
    try:
        record = DatasetCatalog.get("t_crowd_val")[4]
        metadata = MetadataCatalog.get("t_crowd_val")
        assert any(a["iscrowd"] for a in record["annotations"])

        def no_detections(image):
            empty = Instances(image.shape[:2], pred_boxes=Boxes(torch.zeros(0, 4)))
            empty.scores, empty.pred_classes = torch.zeros(0), torch.zeros(0, dtype=torch.long)
            return {"instances": empty}

        def draw(annotations):
            np.random.seed(0)  # detectron2's Visualizer draws each box in a random colour
            return predictions_beside_ground_truth(
                [{**record, "annotations": annotations}], no_detections, metadata
            )

        ordinary = [a for a in record["annotations"] if not a["iscrowd"]]
        assert np.array_equal(draw(record["annotations"]), draw(ordinary))
        assert not np.array_equal(draw(ordinary), draw(ordinary[1:]))
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_tiles_drawn_back_on_their_source_image(converted):
    root, summary, coco = converted
    val = summary["val"]
    source = "2019_YELL_2_541000_4977000_image_crop.png"
    picture = draw_tiled_source(val["json_file"], val["image_root"], source)
    assert picture.shape == (3 * 400, 4 * 400, 3)  # the tiles cover the padded image
    # The tile at (400, 0) is at its place: away from boxes and borders, its own pixels.
    tile = next(i for i in coco["val"]["images"] if (i["x0"], i["y0"]) == (400, 0))
    pixels = np.asarray(Image.open(root / "val" / tile["file_name"]).convert("RGB"))
    boxes = [a["bbox"] for a in coco["val"]["annotations"] if a["image_id"] == tile["id"]]
    free = np.ones((400, 400), bool)
    free[[0, -1], :] = free[:, [0, -1]] = False
    for x, y, w, h in boxes:
        free[max(int(y) - 2, 0) : int(y + h) + 3, max(int(x) - 2, 0) : int(x + w) + 3] = False
    assert free.sum() > 10_000
    assert np.array_equal(picture[:400, 400:800][free], pixels[free])
    assert (picture[1100:1190, 1300:1390] == 0).all()  # padding past the image, no box
    assert (picture[400, 1300:1390] == 255).all()  # a tile border
    with pytest.raises(ValueError, match="has no tile of 'nope.png'"):
        draw_tiled_source(val["json_file"], val["image_root"], "nope.png")


def test_a_real_voc_file_of_the_wheel_registers_with_its_classes(wheel, tmp_path):
    """SOAP_061 (another site, crowns marked Alive or Dead) as a user's LabelImg folder."""
    with zipfile.ZipFile(wheel) as z:
        for name in ("SOAP_061.xml", "SOAP_061.png"):
            (tmp_path / name).write_bytes(z.read(TREES_SOURCE["data"] + name))
    text = (tmp_path / "SOAP_061.xml").read_text()
    (name,) = register_voc_from_specs([f"t_soap={tmp_path}"])
    try:
        assert MetadataCatalog.get(name).thing_classes == ["Alive", "Dead"]
        (record,) = DatasetCatalog.get(name)
        classes = [a["category_id"] for a in record["annotations"]]
        assert classes.count(0) == text.count("<name>Alive</name>") == 9
        assert classes.count(1) == text.count("<name>Dead</name>") == 28
        assert (record["width"], record["height"]) == (400, 400)
        boxes = np.array([a["bbox"] for a in record["annotations"]])
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 400).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

"""Pascal VOC XML and YOLO folders: read into the same boxes as the COCO json they were written
from, registered by train_net.py's flags (train and evaluate), and every bad file named."""

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from helpers import run_train_net, train_net_args
from PIL import Image

from dual_weighting.data import (
    FormatError,
    load_voc,
    load_yolo,
    read_voc_xml,
    register_voc_from_specs,
    register_yolo_from_spec,
)


def write_voc(coco_json, image_root, folder, layout="flat"):
    """Write a COCO json's images as Pascal VOC: ``flat`` (XML beside copies of the images, as
    LabelImg) or ``devkit`` (Annotations/, JPEGImages/, ImageSets/Main/SPLIT.txt). VOC corners
    are 1-based: xmin = x + 1, ymin = y + 1, xmax = x + w, ymax = y + h."""
    coco = json.loads(open(coco_json).read())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    xml_dir = folder if layout == "flat" else folder / "Annotations"
    image_dir = folder if layout == "flat" else folder / "JPEGImages"
    xml_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    ids = []
    for image in coco["images"]:
        shutil.copy(os.path.join(image_root, image["file_name"]), image_dir / image["file_name"])
        objects = ""
        for a in coco["annotations"]:
            if a["image_id"] == image["id"]:
                x, y, w, h = a["bbox"]
                objects += (
                    f"<object><name>{names[a['category_id']]}</name><difficult>0</difficult>"
                    f"<bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + w}</xmax>"
                    f"<ymax>{y + h}</ymax></bndbox></object>\n"
                )
        stem = os.path.splitext(image["file_name"])[0]
        ids.append(stem)
        (xml_dir / f"{stem}.xml").write_text(
            f"<annotation>\n<filename>{image['file_name']}</filename>\n<size><width>"
            f"{image['width']}</width><height>{image['height']}</height><depth>3</depth></size>\n"
            f"{objects}</annotation>\n"
        )
    if layout == "devkit":
        (folder / "ImageSets" / "Main").mkdir(parents=True)
        (folder / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    return folder


def write_yolo(coco_json, image_root, root, split):
    """Write a COCO json's images as one split of a YOLO dataset under ``root`` (images/SPLIT,
    labels/SPLIT, data.yaml with every category name in id order)."""
    coco = json.loads(open(coco_json).read())
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    index = {c["id"]: k for k, c in enumerate(categories)}
    for kind in ("images", "labels"):
        (root / kind / split).mkdir(parents=True, exist_ok=True)
    for image in coco["images"]:
        shutil.copy(os.path.join(image_root, image["file_name"]), root / "images" / split)
        W, H = image["width"], image["height"]
        lines = [
            f"{index[a['category_id']]} {(a['bbox'][0] + a['bbox'][2] / 2) / W:.10f} "
            f"{(a['bbox'][1] + a['bbox'][3] / 2) / H:.10f} {a['bbox'][2] / W:.10f} "
            f"{a['bbox'][3] / H:.10f}"
            for a in coco["annotations"]
            if a["image_id"] == image["id"]
        ]
        stem = os.path.splitext(image["file_name"])[0]
        (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    data = {"path": ".", split: f"images/{split}", "names": [c["name"] for c in categories]}
    data_yaml = root / "data.yaml"
    if data_yaml.is_file():
        data = {**yaml.safe_load(data_yaml.read_text()), split: f"images/{split}"}
    data_yaml.write_text(yaml.safe_dump(data))
    return data_yaml


def coco_boxes(coco_json):
    """{file name: sorted [(category name, x0, y0, x1, y1)]} of a COCO json."""
    coco = json.loads(open(coco_json).read())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    out = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        out[files[a["image_id"]]].append((names[a["category_id"]], x, y, x + w, y + h))
    return {f: sorted(b) for f, b in out.items()}


def registered_boxes(name):
    classes = MetadataCatalog.get(name).thing_classes
    out = {}
    for record in DatasetCatalog.get(name):
        boxes = []
        for a in record["annotations"]:
            assert a["bbox_mode"] == BoxMode.XYXY_ABS
            boxes.append((classes[a["category_id"]], *a["bbox"]))
        out[os.path.basename(record["file_name"])] = sorted(boxes)
    return out


def assert_same_boxes(got, want, atol):
    assert got.keys() == want.keys()
    for f in want:
        assert [b[0] for b in got[f]] == [b[0] for b in want[f]], f
        np.testing.assert_allclose([b[1:] for b in got[f]], [b[1:] for b in want[f]], atol=atol)


@pytest.fixture
def unregister():
    names = []
    yield names
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize("layout", ["flat", "devkit"])
def test_voc_gives_the_boxes_of_the_coco_json_it_was_written_from(
    tiny_shapes, tmp_path, unregister, layout
):
    split = tiny_shapes["train"]
    folder = write_voc(split["json_file"], split["image_root"], tmp_path / "voc", layout)
    path = folder if layout == "flat" else folder / "ImageSets" / "Main" / "train.txt"
    unregister.extend(register_voc_from_specs([f"t_voc_{layout}={path}"]))
    want = coco_boxes(split["json_file"])
    assert_same_boxes(registered_boxes(f"t_voc_{layout}"), want, atol=1e-9)
    names = sorted({b[0] for boxes in want.values() for b in boxes})
    assert MetadataCatalog.get(f"t_voc_{layout}").thing_classes == names


def test_voc_datasets_of_one_command_share_the_class_order(tmp_path, unregister):
    """val lacks 'cat': its class ids still follow the union of both (sorted)."""
    for split, names in (("train", ["dog", "cat"]), ("val", ["dog"])):
        folder = tmp_path / split
        folder.mkdir()
        Image.new("RGB", (20, 10)).save(folder / "a.png")
        objects = "".join(
            f"<object><name>{n}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax>"
            "<ymax>8</ymax></bndbox></object>"
            for n in names
        )
        (folder / "a.xml").write_text(
            "<annotation><filename>a.png</filename><size><width>20</width><height>10</height>"
            f"</size>{objects}</annotation>"
        )
    unregister.extend(
        register_voc_from_specs(
            [f"t_order_train={tmp_path / 'train'}", f"t_order_val={tmp_path / 'val'}"]
        )
    )
    for name in unregister:
        assert MetadataCatalog.get(name).thing_classes == ["cat", "dog"]
    (val,) = DatasetCatalog.get("t_order_val")
    assert [a["category_id"] for a in val["annotations"]] == [1]
    assert val["annotations"][0]["bbox"] == [1.0, 1.0, 9.0, 8.0]


GOOD_OBJECT = (
    "<object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
    "</bndbox></object>"
)
HEAD = "<annotation><filename>a.png</filename><size><width>8</width><height>8</height></size>\n"


def one_box(xmin, ymin, xmax, ymax):
    return (
        f"{HEAD}<object><name>b</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>"
    )


@pytest.mark.parametrize(
    "body, message",
    [
        (f"{HEAD}{GOOD_OBJECT}\n\n<object>", "line 4: not well-formed"),
        ("<annotation><filename>a.png</filename>\n<size><width>8</width></size></annotation>",
         "line 2: <size> has no <height>"),
        ("<annotation>\n<size><width>8</width><height>8</height></size></annotation>",
         "line 1: <annotation> has no <filename>"),
        (f"{HEAD}{GOOD_OBJECT}\n<object><name>b</name></object></annotation>",
         "line 3: <object> #2 ('b') has no <bndbox>"),
        (one_box(1, "x1", 5, 5), "line 2: <ymin> of <object> #1 ('b') is 'x1', not a number"),
        # VOC corners are inclusive: xmin 5, xmax 5 is one pixel wide; xmin 6, xmax 5 none.
        (one_box(6, 1, 5, 5), "line 2: <object> #1 ('b') box xmin=6 ymin=1 xmax=5 ymax=5 has no"),
        (one_box(1, 9, 5, 12), "line 2: <object> #1 ('b') box xmin=1 ymin=9 xmax=5 ymax=12 has no"),
        ("<notvoc/>", "line 1: the root element is <notvoc>"),
    ],
)  # fmt: skip
def test_bad_voc_files_are_named_with_their_line(tmp_path, body, message):
    xml = tmp_path / "a.xml"
    xml.write_text(body)
    with pytest.raises(FormatError) as e:
        read_voc_xml(xml)
    assert str(e.value).startswith(f"{xml}, ") and message in str(e.value)


def test_voc_boxes_past_the_border_are_clipped_and_marked(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><filename>a.png</filename><size><width>8</width><height>6</height></size>"
        "<object><name>a</name><bndbox><xmin>0</xmin><ymin>2</ymin><xmax>9</xmax><ymax>6</ymax>"
        "</bndbox></object>" + GOOD_OBJECT + "</annotation>"
    )
    first, second = read_voc_xml(xml).objects
    assert first.box == (0.0, 1.0, 8.0, 6.0) and first.clipped
    assert second.box == (0.0, 0.0, 5.0, 5.0) and not second.clipped


def test_voc_images_that_are_missing_or_of_another_size_are_named(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><filename>a.png</filename><size><width>8</width><height>8</height></size>"
        f"{GOOD_OBJECT}</annotation>"
    )
    with pytest.raises(FormatError, match=r"a\.xml: <filename> 'a\.png' is not an image in"):
        load_voc(tmp_path)
    Image.new("RGB", (8, 7)).save(tmp_path / "a.png")
    with pytest.raises(FormatError, match=r"says 8 x 8 px, but .*a\.png is 8 x 7 px"):
        load_voc(tmp_path)
    (tmp_path / "Annotations").mkdir()
    xml.rename(tmp_path / "Annotations" / "a.xml")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    listing = tmp_path / "ImageSets" / "Main" / "train.txt"
    listing.write_text("a\nmissing\n")
    with pytest.raises(FileNotFoundError, match=r"train\.txt, line 2: image id 'missing'"):
        load_voc(listing)


def test_yolo_gives_the_boxes_of_the_coco_json_it_was_written_from(
    tiny_shapes, tmp_path, unregister
):
    for split in ("train", "val"):
        s = tiny_shapes[split]
        data_yaml = write_yolo(s["json_file"], s["image_root"], tmp_path / "yolo", split)
    # An image without a label file: background, no objects.
    Image.new("RGB", (96, 64)).save(tmp_path / "yolo" / "images" / "val" / "empty.png")
    for split in ("train", "val"):
        unregister.append(register_yolo_from_spec(f"t_yolo_{split}={data_yaml}:{split}"))
        want = coco_boxes(tiny_shapes[split]["json_file"])
        if split == "val":
            want["empty.png"] = []
        assert_same_boxes(registered_boxes(f"t_yolo_{split}"), want, atol=1e-6)
    coco = json.loads(open(tiny_shapes["train"]["json_file"]).read())
    names = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    assert MetadataCatalog.get("t_yolo_val").thing_classes == names


def test_yolo_polygon_lines_give_the_box_around_their_points(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (100, 50)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text("1 0.1 0.2 0.5 0.1 0.3 0.9\n\n0 0.5 0.5 0.2 0.4\n")
    (tmp_path / "data.yaml").write_text("train: images\nnames: {0: x, 1: y}\n")
    names, (record,) = load_yolo(tmp_path / "data.yaml", "train")
    assert names == ["x", "y"]
    assert [a["category_id"] for a in record["annotations"]] == [1, 0]
    np.testing.assert_allclose(record["annotations"][0]["bbox"], [10, 5, 50, 45])
    np.testing.assert_allclose(record["annotations"][1]["bbox"], [40, 15, 60, 35])


@pytest.mark.parametrize(
    "label, yaml_text, message",
    [
        ("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.1 0.1\n", None, "a.txt, line 2: class 2 is not in 0..1"),
        ("0 0.5 0.5 0.2\n", None, "a.txt, line 1: 4 values"),
        ("0 0.5 1.5 0.2 0.2\n", None, "a.txt, line 1: '0 0.5 1.5 0.2 0.2' has values outside"),
        ("0 0.5 0.5 0 0.2\n", None, "a.txt, line 1: '0 0.5 0.5 0 0.2' is an empty box"),
        ("zero 0.5 0.5 0.2 0.2\n", None, "a.txt, line 1: 'zero 0.5 0.5 0.2 0.2' is not numbers"),
        ("", "train: images\n", "data.yaml: 'names' (the class names"),
        ("", "train: images\nnc: 3\nnames: [x, y]\n", "data.yaml: nc is 3 but 'names' has 2"),
        ("", "names: [x, y]\n", "data.yaml: has no split 'train'"),
        ("", "train: pictures\nnames: [x, y]\n", "train entry 'pictures'"),
        ("", "train: [images\nnames: [x]\n", "data.yaml: not valid YAML"),
    ],
)  # fmt: skip
def test_bad_yolo_files_are_named(tmp_path, label, yaml_text, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text(label)
    (tmp_path / "data.yaml").write_text(yaml_text or "train: images\nnames: [x, y]\n")
    with pytest.raises((FormatError, FileNotFoundError)) as e:
        load_yolo(tmp_path / "data.yaml", "train")
    assert message in str(e.value)


@pytest.mark.slow
def test_train_net_trains_and_evaluates_voc_and_yolo_folders(shapes_dataset, tmp_path):
    root = str(shapes_dataset)
    for split in ("train", "val"):
        json_file = f"{root}/annotations/instances_{split}.json"
        write_voc(json_file, f"{root}/{split}", tmp_path / "voc" / split)
        data_yaml = write_yolo(json_file, f"{root}/{split}", tmp_path / "yolo", split)
    # train_net_args registers the COCO json as t_train / t_val; the formats under other names.
    formats = {
        "voc": ["--register-voc", f"v_train={tmp_path / 'voc' / 'train'}",
                "--register-voc", f"v_val={tmp_path / 'voc' / 'val'}"],
        "yolo": ["--register-yolo", f"v_train={data_yaml}:train",
                 "--register-yolo", f"v_val={data_yaml}:val"],
    }  # fmt: skip
    for kind, flags in formats.items():
        out = tmp_path / kind
        proc = run_train_net(
            flags + train_net_args(shapes_dataset, out, "DATASETS.TRAIN", '("v_train",)',
                                   "DATASETS.TEST", '("v_val",)', max_iter=2)
        )  # fmt: skip
        log = proc.stdout + proc.stderr
        assert "Evaluation results for v_val in csv format" in log, kind
        assert (out / "model_final.pth").is_file()


@pytest.mark.slow
def test_train_net_names_a_bad_voc_file_and_too_few_classes(shapes_dataset, tmp_path):
    root = str(shapes_dataset)
    folder = write_voc(f"{root}/annotations/instances_val.json", f"{root}/val", tmp_path / "voc")
    args = train_net_args(shapes_dataset, tmp_path / "out", "DATASETS.TEST", '("v_val",)')
    proc = run_train_net(
        ["--eval-only", "--register-voc", f"v_val={folder}", *args, "MODEL.DW.NUM_CLASSES", "2"],
        check=False,
    )
    assert proc.returncode != 0
    assert "has 6 classes" in proc.stderr and "MODEL.DW.NUM_CLASSES = 2" in proc.stderr
    bad = sorted(folder.glob("*.xml"))[1]
    bad.write_text(bad.read_text().replace("<xmax>", "<xmax>oops", 1))
    proc = run_train_net(["--eval-only", "--register-voc", f"v_val={folder}", *args], check=False)
    assert proc.returncode != 0
    assert f"{bad}, line" in proc.stderr and "'oops" in proc.stderr

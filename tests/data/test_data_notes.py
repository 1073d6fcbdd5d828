"""Nothing about the data dropped without a count in the run's log: VOC boxes clipped to their
image (count, first boxes by file and line), YOLO label files whose image is missing (count,
first names) and background images, logged when the dataset is loaded (after the run's logging
is set up, into its log.txt); YOLO classes written as integral floats."""

import logging

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from helpers import DEMO_CONFIG, voc_xml
from PIL import Image

from dual_weighting.data import FormatError, load_yolo
from dual_weighting.data.datasets import register_voc_from_specs, register_yolo_from_spec
from dual_weighting.engine import default_dw_argument_parser, setup_cfg


def voc_folder(folder, num_images=4):
    """``num_images`` 40 x 30 images of 2 boxes each, the second reaching past the image (x1 =
    45)."""
    folder.mkdir()
    for k in range(num_images):
        Image.new("RGB", (40, 30)).save(folder / f"{k}.png")
        objects = [("dot", (3, 2, 10, 9)), ("dot", (20, 2, 45, 9))]
        (folder / f"{k}.xml").write_text(voc_xml(f"{k}.png", 40, 30, objects))
    return folder


def yolo_folder(root, images, labels):
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for name in images:
        Image.new("RGB", (20, 10)).save(root / "images" / "train" / f"{name}.png")
    for name, text in labels.items():
        (root / "labels" / "train" / f"{name}.txt").write_text(text)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [a, b, c]\n")
    return root / "data.yaml"


@pytest.fixture
def dw_log():
    """Undo what detectron2's setup_logger does to the ``dual_weighting`` logger (a level, its
    own handlers, no propagation to the root logger that caplog reads)."""
    logger = logging.getLogger("dual_weighting")
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def test_clipped_voc_boxes_are_counted_and_named_when_loaded(tmp_path, caplog):
    folder = voc_folder(tmp_path / "voc", num_images=7)
    with caplog.at_level(logging.INFO):
        (name,) = register_voc_from_specs([f"clip_voc={folder}"])
    assert "clipped" not in caplog.text  # registration comes before the run's logging
    with caplog.at_level(logging.INFO):
        records = DatasetCatalog.get(name)
    assert sum(len(r["annotations"]) for r in records) == 14  # every box kept
    (message,) = [r.getMessage() for r in caplog.records if "clipped" in r.getMessage()]
    assert f"clip_voc={folder}: 7 boxes reached past their image, clipped to it: " in message
    assert f"{folder / '0.xml'}, line 4 ('dot', now [19, 1, 40, 9])" in message
    assert f"{folder / '4.xml'}, line 4" in message and f"{folder / '5.xml'}" not in message
    assert message.endswith(" and 2 more")


def test_yolo_labels_without_an_image_and_background_images_are_counted(tmp_path, caplog):
    labels = {f"gone{k}": "0 0.5 0.5 0.2 0.2\n" for k in range(7)}
    labels["x"] = "1 0.5 0.5 0.2 0.2\n"
    data_yaml = yolo_folder(tmp_path, images=["x", "y"], labels=labels)
    with caplog.at_level(logging.INFO):
        name = register_yolo_from_spec(f"orphans={data_yaml}:train")
    assert "label files" not in caplog.text
    with caplog.at_level(logging.INFO):
        (x, y) = DatasetCatalog.get(name)
    assert [a["category_id"] for a in x["annotations"]] == [1] and y["annotations"] == []
    text = caplog.text
    assert "train: 1 of 2 images have no label file (background images, no objects)" in text
    labels_dir = tmp_path / "labels" / "train"
    assert "train: 7 label files have no image, their boxes are not used: " in text
    assert f"{labels_dir / 'gone0.txt'}; {labels_dir / 'gone1.txt'}" in text
    assert f"{labels_dir / 'gone4.txt'} and 2 more" in text and "gone5" not in text


def test_yolo_classes_written_as_integral_floats(tmp_path):
    data_yaml = yolo_folder(tmp_path, ["x"], {"x": "2.0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.4 0.4\n"})
    _, (record,) = load_yolo(data_yaml, "train")
    assert [a["category_id"] for a in record["annotations"]] == [2, 0]
    (tmp_path / "labels" / "train" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n2.5 0.5 0.5 0.2 0.2\n")
    with pytest.raises(FormatError, match=r"x.txt, line 2: class '2.5' is not a whole number"):
        load_yolo(data_yaml, "train")
    (tmp_path / "labels" / "train" / "x.txt").write_text("1 0.5 half 0.2 0.2\n")
    with pytest.raises(FormatError, match=r"line 1: .* is not numbers \('half' is not a number\)"):
        load_yolo(data_yaml, "train")


def test_the_notes_reach_the_runs_log_file(tmp_path, monkeypatch, dw_log):
    # detectron2's default_setup (which also sets up its own loggers) is left out.
    monkeypatch.setattr("dual_weighting.engine.defaults.default_setup", lambda cfg, args: None)
    out = tmp_path / "out"
    args = default_dw_argument_parser().parse_args(
        ["--config-file", str(DEMO_CONFIG), "OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu"]
    )
    setup_cfg(args)
    (name,) = register_voc_from_specs([f"clip_voc_log={voc_folder(tmp_path / 'voc')}"])
    DatasetCatalog.get(name)
    log = (out / "log.txt").read_text()
    assert "4 boxes reached past their image, clipped to it" in log


def test_yolo_boxes_past_their_image_are_clipped_and_counted(tmp_path, caplog):
    # 20 x 10 image: centre 0.95, width 0.2 reaches x = 1.05; the second line fits.
    data_yaml = yolo_folder(tmp_path, ["x"], {"x": "0 0.95 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n"})
    with caplog.at_level(logging.INFO):
        name = register_yolo_from_spec(f"yolo_clip={data_yaml}:train")
        (record,) = DatasetCatalog.get(name)
    boxes = [a["bbox"] for a in record["annotations"]]
    np.testing.assert_allclose(boxes, [[17.0, 4.0, 20.0, 6.0], [8.0, 4.0, 12.0, 6.0]])
    labels = tmp_path / "labels" / "train" / "x.txt"
    assert (
        f"train: 1 boxes reached past their image, clipped to it: {labels}, line 1" in caplog.text
    )


def test_the_notes_are_logged_once(tmp_path, caplog):
    (name,) = register_voc_from_specs([f"clip_voc_once={voc_folder(tmp_path / 'voc')}"])
    with caplog.at_level(logging.INFO):
        for _ in range(3):  # the training loader, then two evaluations
            DatasetCatalog.get(name)
    assert caplog.text.count("4 boxes reached past their image") == 1

"""Truncated and undecodable images are named: VOC and YOLO data when registered, COCO-format data
(read only by the data loader) at the first read; complete files of every kind pass."""

import numpy as np
import pytest
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from helpers import CONFIGS, DEMO_CONFIG, load_cfg, voc_xml
from PIL import Image

from dual_weighting.data import DWDatasetMapper, FormatError
from dual_weighting.data.datasets import register_voc_from_specs, register_yolo_from_spec
from dual_weighting.engine import DWTrainer
from dual_weighting.engine.lazy import load_lazy_config


def write_image(path, fmt="JPEG"):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path, fmt)
    return path


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def voc_folder(folder, images):
    """A VOC folder (XML beside its images) of ``images``: file name -> function that writes it."""
    folder.mkdir()
    for name, write in images.items():
        write(folder / name)
        xml = voc_xml(name, 64, 48, [("cross", (5, 6, 30, 40))])
        (folder / name).with_suffix(".xml").write_text(xml)
    return folder


def test_voc_registration_names_a_truncated_or_undecodable_image(tmp_path):
    folder = voc_folder(
        tmp_path / "voc",
        {
            "a.jpg": write_image,
            "b.jpg": lambda p: truncate(write_image(p)),
        },
    )
    with pytest.raises(FormatError, match=rf"{folder / 'b.jpg'}: not a readable image.*truncated"):
        register_voc_from_specs([f"trunc_voc={folder}"])
    (folder / "b.jpg").write_bytes(b"these are not pixels")
    with pytest.raises(FormatError, match=rf"{folder / 'b.jpg'}: not a readable image"):
        register_voc_from_specs([f"trunc_voc2={folder}"])


def test_complete_files_of_each_kind_pass(tmp_path):
    def jpeg_with_trailing_bytes(path):
        # Some cameras write data after the End Of Image marker; PIL reads such files.
        write_image(path)
        path.write_bytes(path.read_bytes() + b"\0" * 10)

    images = {
        "a.jpg": write_image,
        "b.png": lambda p: write_image(p, "PNG"),
        "c.bmp": lambda p: write_image(p, "BMP"),
        "d.jpg": jpeg_with_trailing_bytes,
    }
    folder = voc_folder(tmp_path / "voc", images)
    (name,) = register_voc_from_specs([f"complete_voc={folder}"])
    records = DatasetCatalog.get(name)
    assert [r["file_name"] for r in records] == [str(folder / n) for n in images]
    assert all((r["width"], r["height"]) == (64, 48) for r in records)


def test_yolo_registration_names_a_truncated_png(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    truncate(write_image(tmp_path / "images" / "a.png", "PNG"))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("train: images\nnames: [a]\n")
    with pytest.raises(FormatError, match=rf"{tmp_path / 'images' / 'a.png'}: not a readable"):
        register_yolo_from_spec(f"trunc_yolo={tmp_path / 'data.yaml'}:train")


def test_coco_format_images_are_named_at_the_first_read(tmp_path):
    good = write_image(tmp_path / "good.jpg")
    bad = truncate(write_image(tmp_path / "bad.jpg"))
    records = [
        {"file_name": str(path), "image_id": k, "height": 48, "width": 64, "annotations": []}
        for k, path in enumerate((good, bad))
    ]
    cfg = load_cfg(DEMO_CONFIG, "DATALOADER.NUM_WORKERS", "0")
    mapper = DWDatasetMapper(cfg, is_train=False)
    assert mapper(dict(records[0]))["image"].shape[0] == 3
    with pytest.raises(OSError, match=rf"{bad}: cannot read the image \(image file is truncated"):
        mapper(dict(records[1]))
    # The trainer's loaders use it.
    DatasetCatalog.register("trunc_coco", lambda: records)
    with pytest.raises(OSError, match=rf"{bad}: cannot read the image"):
        list(DWTrainer.build_test_loader(cfg, "trunc_coco"))


def test_lazyconfig_loaders_name_the_file_too(tmp_path):
    """configs/lazy/common/data/dw_coco.py gives both loaders the naming mapper."""
    bad = truncate(write_image(tmp_path / "bad.jpg"))
    record = {"file_name": str(bad), "image_id": 0, "height": 48, "width": 64, "annotations": []}
    cfg = load_lazy_config(str(CONFIGS / "lazy" / "trees" / "dw_fcos_Lite0_FPN.py"))
    for split in ("train", "test"):
        mapper = instantiate(cfg.dataloader[split].mapper)
        assert isinstance(mapper, DWDatasetMapper)
        with pytest.raises(OSError, match=rf"{bad}: cannot read the image"):
            mapper(dict(record))

"""``demo/demo.py`` labels detections with the names the model was trained with (saved beside its
weights) or with those of a dataset registered by the same ``--register-*`` flags as
``train_net.py``, and refuses a dataset whose names differ from the model's."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from helpers import DEMO_CONFIG, load_cfg, write_voc
from PIL import Image

# demo/ is on pytest's pythonpath (pyproject), as a script's folder is on its sys.path.
from demo import main as demo_main

SMALL = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96", "TEST.DETECTIONS_PER_IMAGE", "3"]
# The demo config's 6 classes, under names no dataset here has.
SAVED = ["ant", "bee", "cat", "dog", "eel", "fox"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A folder with a random demo model's ``model_final.pth`` and its ``class_names.txt``."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = build_model(load_cfg(DEMO_CONFIG))
    torch.save({"model": model.state_dict()}, folder / "model_final.pth")
    (folder / "class_names.txt").write_text("".join(f"{n}\n" for n in SAVED))
    return folder


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(path)
    return path


def run(argv, capsys):
    demo_main(["--config-file", str(DEMO_CONFIG), "--confidence-threshold", "0", *argv])
    lines = capsys.readouterr().out.splitlines()
    return [line.split()[0] for line in lines if not line.startswith(("/", "CUDA"))]


def test_labels_are_the_names_saved_beside_the_weights(model_dir, photo, capsys):
    weights = str(model_dir / "model_final.pth")
    labels = run(["--input", str(photo), "--opts", *SMALL, "MODEL.WEIGHTS", weights], capsys)
    assert len(labels) == 3 and set(labels) <= set(SAVED)


def test_a_registered_dataset_of_other_names_is_refused(model_dir, photo, tmp_path, capsys):
    folder = write_voc(tmp_path / "voc", {"a": ["cat", "ant"]}, size=(96, 64))
    weights = str(model_dir / "model_final.pth")
    argv = ["--input", str(photo), "--register-voc", f"demo_voc={folder}", "--opts", *SMALL,
            "MODEL.WEIGHTS", weights]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        run(argv, capsys)
    message = str(e.value)
    assert message.startswith("demo/demo.py: error: Dataset 'demo_voc' (--register-voc) has the")
    assert "\n  ant, cat\n" in message and "\n  ant, bee, cat, dog, eel, fox\n" in message
    # With the model's list it runs, labelled with the model's names.
    argv[3] = f"demo_voc_listed={folder}"
    labels = run(["--voc-classes", str(model_dir / "class_names.txt"), *argv], capsys)
    assert len(labels) == 3 and set(labels) <= set(SAVED)


def test_without_saved_names_a_registered_dataset_labels_them(photo, tmp_path, capsys):
    names = ["p", "q", "r", "s", "t", "u"]
    folder = write_voc(tmp_path / "voc", {"a": names}, size=(96, 64))
    argv = ["--input", str(photo), "--register-voc", f"demo_voc_names={folder}",
            "--opts", *SMALL]  # fmt: skip
    labels = run(argv, capsys)
    assert len(labels) == 3 and set(labels) <= set(names)

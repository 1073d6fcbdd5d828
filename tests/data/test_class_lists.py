"""Class numbers that do not depend on the files of a command: an explicit class list (file or
comma list) for VOC data, the names a run trains with saved beside its checkpoints, evaluation
with a dataset of other names refused with both lists, names differing only in case reported."""

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from helpers import CONFIGS, DEMO_CONFIG, load_cfg, write_voc

from dual_weighting.data import FormatError, parse_class_names, saved_class_names
from dual_weighting.data.datasets import register_voc_from_specs
from dual_weighting.engine import (
    DWTrainer,
    SetupError,
    check_command_line,
    default_dw_argument_parser,
)


def category_ids(dataset):
    return [[a["category_id"] for a in r["annotations"]] for r in DatasetCatalog.get(dataset)]


def test_class_lists_from_a_file_or_commas(tmp_path):
    listing = tmp_path / "names.txt"
    listing.write_text("circle\n\n  cross \nsquare\n")
    assert parse_class_names(str(listing)) == ["circle", "cross", "square"]
    assert parse_class_names("circle, cross,square") == ["circle", "cross", "square"]
    assert parse_class_names("tree") == ["tree"]
    with pytest.raises(FileNotFoundError, match="Class list file 'nowhere/names.txt' not found"):
        parse_class_names("nowhere/names.txt")
    with pytest.raises(ValueError, match="gives 'cross' more than once"):
        parse_class_names("cross,circle,cross")
    with pytest.raises(ValueError, match="differ only in case: 'Circle' and 'circle'"):
        parse_class_names("Circle,cross,circle")
    with pytest.raises(ValueError, match="names no class"):
        parse_class_names(" , ")


def test_a_split_without_a_class_keeps_the_numbers_of_the_given_list(tmp_path):
    train = write_voc(tmp_path / "train", {"a": ["circle", "cross"], "b": ["square"]})
    val = write_voc(tmp_path / "val", {"c": ["square", "circle"]})  # no cross
    # From the files alone, each command numbers what it sees: square is 2, then 1.
    register_voc_from_specs([f"files_train={train}"])
    register_voc_from_specs([f"files_val={val}"])
    assert category_ids("files_train") == [[0, 1], [2]]
    assert category_ids("files_val") == [[1, 0]]
    # With the list, square is 2 in both.
    names = parse_class_names("circle,cross,square")
    register_voc_from_specs([f"list_train={train}"], names)
    register_voc_from_specs([f"list_val={val}"], names)
    assert category_ids("list_train") == [[0, 1], [2]]
    assert category_ids("list_val") == [[2, 0]]
    assert MetadataCatalog.get("list_val").thing_classes == ["circle", "cross", "square"]


def test_a_name_outside_the_list_is_named_with_file_and_line(tmp_path):
    folder = write_voc(tmp_path / "voc", {"a": ["circle"], "b": ["cross", "Square"]})
    with pytest.raises(FormatError) as e:
        register_voc_from_specs([f"outside={folder}"], ["circle", "cross", "square"])
    message = str(e.value)
    assert message.startswith(f"{folder / 'b.xml'}, line 4: class 'Square' is not in the class ")
    assert "(circle, cross, square) (did you mean 'square'?)" in message


def test_names_differing_only_in_case_are_reported_unless_listed(tmp_path):
    folder = write_voc(tmp_path / "voc", {"a": ["circle", "circle"], "b": ["Circle"]})
    with pytest.raises(FormatError) as e:
        register_voc_from_specs([f"case={folder}"])
    message = str(e.value)
    assert "differ only in case: 'circle' (2 objects, first " in message
    assert f"'Circle' (1 objects, first {folder / 'b.xml'}, line 3)" in message
    # Listed apart on purpose: two classes.
    register_voc_from_specs([f"case_listed={folder}"], ["circle", "Circle"])
    assert category_ids("case_listed") == [[0, 0], [1]]


def check(argv, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["--config-file", str(DEMO_CONFIG), *argv, "MODEL.DEVICE", "cpu"]
    check_command_line(default_dw_argument_parser().parse_args(args))


def test_training_saves_its_names_and_evaluation_checks_them(tmp_path, monkeypatch):
    train = write_voc(tmp_path / "train", {"a": ["circle", "cross"], "b": ["square"]})
    val = write_voc(tmp_path / "val", {"c": ["square", "circle"]})
    out = tmp_path / "out"
    names = parse_class_names("circle,cross,square")
    register_voc_from_specs([f"saved_train={train}"], names)
    cfg = load_cfg(
        DEMO_CONFIG, "DATASETS.TRAIN", '("saved_train",)', "DATASETS.TEST", "()",
        "OUTPUT_DIR", str(out), "DATALOADER.NUM_WORKERS", "0",
    )  # fmt: skip
    trainer = DWTrainer(cfg)
    assert (out / "class_names.txt").read_text() == "circle\ncross\nsquare\n"
    weights = out / "model_final.pth"
    torch.save({"model": trainer.model.state_dict()}, weights)
    assert saved_class_names(str(weights)) == (names, str(out / "class_names.txt"))

    # Evaluating on the val split read alone (circle, square) is refused, both lists shown.
    eval_args = ["--eval-only", "--register-voc", f"saved_val={val}",
                 "DATASETS.TEST", '("saved_val",)', "MODEL.WEIGHTS", str(weights)]  # fmt: skip
    with pytest.raises(SetupError) as e:
        check(eval_args, monkeypatch)
    message = str(e.value)
    assert "Dataset 'saved_val' (DATASETS.TEST) has the classes\n  circle, square\n" in message
    assert f"but the model's are ({out / 'class_names.txt'})\n  circle, cross, square\n" in message
    assert "(class 1 is 'square' in one, 'cross' in the other)" in message
    # Registered with the model's list (a new command, so a new name here), it is evaluated.
    check(["--eval-only", "--voc-classes", str(out / "class_names.txt"),
           "--register-voc", f"listed_val={val}", "DATASETS.TEST", '("listed_val",)',
           "MODEL.WEIGHTS", str(weights)], monkeypatch)  # fmt: skip
    assert category_ids("listed_val") == [[2, 0]]


def test_training_refuses_a_test_set_of_other_names(tmp_path, monkeypatch):
    train = write_voc(tmp_path / "train", {"a": ["circle", "cross"]})
    register_voc_from_specs([f"other_train={train}"])
    register_voc_from_specs([f"other_val={write_voc(tmp_path / 'val', {'b': ['circle']})}"])
    with pytest.raises(
        SetupError,
        match=r"'other_val' \(DATASETS.TEST\) has the classes\n  circle"
        r"\nbut the model's are \(those of its training dataset 'other_train'\)",
    ):
        check(["DATASETS.TRAIN", '("other_train",)', "DATASETS.TEST", '("other_val",)'],
              monkeypatch)  # fmt: skip


def test_a_lazy_evaluation_checks_the_names_beside_its_init_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "class_names.txt").write_text("circle\ncross\nsquare\n")
    torch.manual_seed(0)
    model = build_model(load_cfg(DEMO_CONFIG))  # the yaml twin of the LazyConfig used below
    torch.save({"model": model.state_dict()}, out / "model_final.pth")
    val = write_voc(tmp_path / "val", {"c": ["square", "circle"]})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--config-file", str(CONFIGS / "lazy" / "dw_R_18_FPN_synthetic_demo.py"), "--eval-only",
            "--register-voc", f"lazy_val={val}", "train.device=cpu",
            "dataloader.test.dataset.names=lazy_val",
            f"train.init_checkpoint={out / 'model_final.pth'}"]  # fmt: skip
    with pytest.raises(SetupError, match=r"'lazy_val' \(dataloader.test.dataset.names\) has the "
                       r"classes\n  circle, square\nbut the model's are"):  # fmt: skip
        check_command_line(default_dw_argument_parser().parse_args(argv))

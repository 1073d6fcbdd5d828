"""The set-up errors a new user meets (dual_weighting.engine.checks), each naming the problem and
the fix: config and override kinds, unknown keys, CUDA, --num-gpus, datasets not on disk."""

import os

import pytest
import torch
from detectron2.config import LazyConfig
from detectron2.data import MetadataCatalog
from helpers import CONFIGS

from dual_weighting.data import register_coco_from_spec, register_synthetic
from dual_weighting.engine import (
    SetupError,
    check_command_line,
    config_kind,
    default_dw_argument_parser,
    load_lazy_config,
    load_yacs_config,
)
from dual_weighting.engine.checks import check_device, check_num_gpus
from dual_weighting.engine.dataset_checks import check_datasets
from sample_data.shapes import generate_synthetic_coco

YAML = str(CONFIGS / "dw_R_50_FPN_1x.yaml")
PY = str(CONFIGS / "lazy" / "dw_R_50_FPN_1x.py")


def test_config_kind_by_extension_and_by_content(tmp_path):
    assert config_kind(YAML) == "yacs" and config_kind(PY) == "lazy"
    # A run's saved config.yaml of a LazyConfig is a LazyConfig.
    saved = tmp_path / "config.yaml"
    LazyConfig.save(LazyConfig.load(PY), str(saved))
    assert config_kind(str(saved)) == "lazy"
    other = tmp_path / "model.json"
    other.write_text("{}")
    with pytest.raises(SetupError, match=r"model.json.*neither a yacs .yaml nor a LazyConfig .py"):
        config_kind(str(other))
    with pytest.raises(SetupError, match="nothere.yaml' not found"):
        config_kind(str(tmp_path / "nothere.yaml"))


def test_one_kind_given_where_the_other_is_expected_names_the_twin():
    with pytest.raises(SetupError, match=r"is a yacs config.*use its twin configs/lazy/dw_R_50"):
        load_lazy_config(YAML)
    with pytest.raises(SetupError, match=r"is a LazyConfig.*use its twin configs/dw_R_50_FPN_1x"):
        load_yacs_config(PY)
    with pytest.raises(SetupError, match=r"'train.max_iter=9' is a LazyConfig override.*KEY VALUE"):
        load_yacs_config(YAML, ["train.max_iter=9"])
    with pytest.raises(SetupError, match=r"'SOLVER.MAX_ITER' is not.*key=value.*train.max_iter"):
        load_lazy_config(PY, ["SOLVER.MAX_ITER", "9"])


def test_unknown_override_keys_are_named_with_a_guess():
    with pytest.raises(SetupError, match=r"'train.max_iters'.*Did you mean max_iter\?"):
        load_lazy_config(PY, ["train.max_iters=9"])
    with pytest.raises(SetupError, match=r"model.head has no 'box_refin'.*mean box_refine\?"):
        load_lazy_config(PY, ["model.head.box_refin=True"])
    with pytest.raises(SetupError, match=r"MODEL.DW has no 'BOX_REFIN'.*mean BOX_REFINE\?"):
        load_yacs_config(YAML, ["MODEL.DW.BOX_REFIN", "True"])
    with pytest.raises(SetupError, match=r"'SOLVER.MAX_ITER' has no value"):
        load_yacs_config(YAML, ["MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER"])
    with pytest.raises(SetupError, match=r"a list of 2, with '5'"):
        load_lazy_config(PY, ["dataloader.train.mapper.augmentations.5.max_size=9"])
    with pytest.raises(SetupError, match=r"inside train.max_iter, which is a value"):
        load_lazy_config(PY, ["train.max_iter.x=9"])


def test_known_keys_arguments_left_at_default_and_added_keys_apply():
    cfg = load_lazy_config(
        PY,
        [
            "train.max_iter=9",
            # An argument of build_detection_train_loader that the config leaves at its default.
            "dataloader.train.aspect_ratio_grouping=False",
            # Read by detectron2's default_setup though common/train.py has no such key.
            "train.seed=3",
            "+train.note=hello",
        ],
    )
    assert cfg.train.max_iter == 9 and cfg.dataloader.train.aspect_ratio_grouping is False
    assert cfg.train.seed == 3 and cfg.train.note == "hello"
    assert load_yacs_config(YAML, ["SOLVER.MAX_ITER", "9"]).SOLVER.MAX_ITER == 9


def test_cuda_asked_for_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SetupError, match=r"MODEL.DEVICE = 'cuda'.*add `MODEL.DEVICE cpu`"):
        check_device("cuda", "MODEL.DEVICE", YAML)
    with pytest.raises(SetupError, match=r"train.device = 'cuda:1'.*add `train.device=cpu`"):
        check_device("cuda:1", "train.device", PY)
    check_device("cpu", "train.device", PY)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_device("cuda", "MODEL.DEVICE", YAML)


def test_more_processes_than_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SetupError, match=r"--num-gpus 8 starts 8 processes.*has 1 GPU\(s\)"):
        check_num_gpus(8, "cuda")
    check_num_gpus(1, "cuda")
    check_num_gpus(2, "cpu")  # two gloo processes on the CPU


@pytest.fixture
def coco_absent(monkeypatch):
    """detectron2's builtin COCO (under $DETECTRON2_DATASETS) seen as not on disk, also on a
    machine that has it: every path below its coco/ folder reads as missing."""
    json_file = MetadataCatalog.get("coco_2017_train").json_file
    coco_root = os.path.dirname(os.path.dirname(json_file))  # .../coco/annotations/x.json
    for name in ("isfile", "isdir"):
        real = getattr(os.path, name)
        monkeypatch.setattr(
            os.path, name, lambda p, _real=real: not str(p).startswith(coco_root) and _real(p)
        )
    assert not os.path.isfile(json_file)


def test_datasets_not_registered_or_not_on_disk(tmp_path, coco_absent):
    # detectron2's builtin COCO, under $DETECTRON2_DATASETS.
    with pytest.raises(SetupError) as error:
        check_datasets([("coco_2017_train", "DATASETS.TRAIN")])
    message = str(error.value)
    for part in ("instances_train2017.json", "$DETECTRON2_DATASETS", "--register-coco"):
        assert part in message
    with pytest.raises(SetupError, match=r"'my_data' \(DATASETS.TEST\) is not registered"):
        check_datasets([("my_data", "DATASETS.TEST")])
    # The generated dataset, registered but not generated yet.
    register_synthetic(tmp_path / "absent", prefix="dw_synthetic_absent")
    with pytest.raises(SetupError, match=r"val/, which do not exist.*tools/generate_dataset.py"):
        check_datasets([("dw_synthetic_absent_val", "DATASETS.TEST")])

    generate_synthetic_coco(tmp_path / "d", num_train=1, num_val=1, image_size=(64, 64), seed=0)
    spec = f"checked_val={tmp_path}/d/annotations/instances_val.json:{tmp_path}/d/val"
    check_datasets([(register_coco_from_spec(spec), "DATASETS.TEST")])


@pytest.mark.parametrize(
    "argv, match",
    [
        ([YAML], r"MODEL.DEVICE = 'cuda'"),
        ([PY, "train.device=cpu"], r"'coco_2017_train' \(dataloader.train.dataset.names\)"),
        # Evaluation reads only the test set.
        ([PY, "--eval-only", "train.device=cpu"], r"'coco_2017_val' \(dataloader.test"),
    ],
)
def test_command_line_checks_both_kinds(monkeypatch, coco_absent, argv, match):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = default_dw_argument_parser().parse_args(["--config-file", *argv])
    with pytest.raises(SetupError, match=match):
        check_command_line(args)

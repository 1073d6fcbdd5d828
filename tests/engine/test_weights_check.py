"""Initial weights that cannot be had stop a run before anything is built, naming the key, the
value and the two ways to ImageNet weights offline; no raw URLError, no assertion after the
model is built. Uses the tree crowns (`make trees`) so that the datasets pass their check."""

import pytest
from helpers import CONFIGS

from dual_weighting.engine import SetupError, check_command_line, default_dw_argument_parser
from dual_weighting.engine.checks import check_weights, twin_config

TREES_YAML = str(CONFIGS / "trees" / "dw_fcos_Lite0_FPN.yaml")
TREES_PY = str(CONFIGS / "lazy" / "trees" / "dw_fcos_Lite0_FPN.py")
# Nothing listens on the loopback's discard port: the download is refused at once, offline too.
UNREACHABLE = "https://127.0.0.1:9/ImageNetPretrained/R-50.pkl"


def test_missing_file_names_key_value_config_and_both_fixes():
    with pytest.raises(SetupError) as error:
        check_weights("pretrained/torchvision_R_101.pkl", "MODEL.WEIGHTS", "configs/x.yaml")
    message = str(error.value)
    assert "MODEL.WEIGHTS = 'pretrained/torchvision_R_101.pkl' (configs/x.yaml) does not exist" in (
        message
    )
    assert "tools/convert_torchvision_resnet.py" in message
    assert "configs/trees/*_Lite0_FPN.yaml" in message


def test_unreachable_url_is_a_setup_error_not_a_urlerror():
    with pytest.raises(
        SetupError, match=r"train.init_checkpoint = 'https://127.0.0.1:9/.*cannot be"
    ):
        check_weights(UNREACHABLE, "train.init_checkpoint", "x.py")


def test_no_weights_and_an_existing_file_pass(tmp_path):
    check_weights("", "MODEL.WEIGHTS", "x.yaml")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    check_weights(str(weights), "MODEL.WEIGHTS", "x.yaml")


@pytest.mark.parametrize(
    "argv, match",
    [
        ([TREES_YAML, "MODEL.WEIGHTS", "nothere.pth"], r"MODEL.WEIGHTS = 'nothere.pth'"),
        ([TREES_YAML, "MODEL.WEIGHTS", UNREACHABLE], r"MODEL.WEIGHTS = 'https://127.*fetched"),
        ([TREES_PY, "train.init_checkpoint=nothere.pth"], r"train.init_checkpoint = 'nothere"),
        # Evaluation reads the weights too.
        ([TREES_YAML, "--eval-only", "MODEL.WEIGHTS", "model.pth"], r"'model.pth' \(.*trees"),
    ],
)
def test_command_line_stops_before_building(argv, match):
    args = default_dw_argument_parser().parse_args(["--config-file", *argv])
    with pytest.raises(SetupError, match=match):
        check_command_line(args)


def test_resuming_from_a_checkpoint_does_not_need_the_initial_weights(tmp_path):
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    argv = [TREES_YAML, "--resume", "MODEL.WEIGHTS", "nothere.pth", "OUTPUT_DIR", str(tmp_path)]
    check_command_line(default_dw_argument_parser().parse_args(["--config-file", *argv]))


def test_the_lite0_configs_name_the_converted_weights_and_their_twins():
    args = default_dw_argument_parser().parse_args(["--config-file", TREES_YAML])
    check_command_line(args)  # pretrained/tf_efficientnet_lite0.pth, made by `make env`
    assert twin_config(TREES_YAML) == "configs/lazy/trees/dw_fcos_Lite0_FPN.py"
    assert twin_config(TREES_PY) == "configs/trees/dw_fcos_Lite0_FPN.yaml"
    assert twin_config(str(CONFIGS / "dw_R_50_FPN_1x.yaml")) == "configs/lazy/dw_R_50_FPN_1x.py"

"""``benchmarks.options``: tools/benchmark.py's command line and the checks that stop a run
before it starts when an option names something no section knows."""

import pytest

from benchmarks.options import SECTIONS, argument_parser, check_args

DOC = "Summary line.\n\nThe epilog."


def parse(*argv):
    return argument_parser(DOC).parse_args(list(argv))


def test_defaults_pass_the_checks_and_lists_are_split_on_commas():
    args = parse("pretrained", "--seeds", "3,4", "--pretrained-pairs", "fcos,rpn")
    check_args(args)
    assert (args.section, args.seeds) == ("pretrained", [3, 4])
    assert args.pretrained_pairs == ["fcos", "rpn"]
    variants = parse("speed", "--speed-variants", "fcos,dw_refine").speed_variants
    assert variants == ["fcos", "dw_refine"]
    with pytest.raises(SystemExit):
        parse()  # the section is named


def test_every_section_is_a_choice():
    for name in SECTIONS:
        assert parse(name).section == name
    with pytest.raises(SystemExit):
        parse("nonsense")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--speed-variants", "retina"], "Unknown variant 'retina'"),
        (["--pretrained-pairs", "yolo"], "Unknown pretrained pair 'yolo'"),
        (["--speed-settings", "r18"], "Unknown speed setting 'r18'"),
        (["--quant-precisions", "int8_static"], "fp32 first"),
    ],
)
def test_an_unknown_name_stops_with_the_option_value(argv, message):
    with pytest.raises(SystemExit, match=message):
        check_args(parse("speed", *argv))


@pytest.mark.parametrize("argv", [["pretrained", "--no-pair-speed"], ["warmup"]])
def test_no_seeds_stops_where_the_section_would_run_nothing(argv):
    with pytest.raises(SystemExit, match="--seeds '': .* nothing to run"):
        check_args(parse(*argv, "--seeds", ""))
    check_args(parse("pretrained", "--seeds", ""))  # the pairs' step times alone


def test_overrides_are_key_value_pairs():
    args = parse("warmup", "--opts", "SOLVER.CLIP_GRADIENTS.ENABLED", "True")
    check_args(args)
    assert args.opts == ["SOLVER.CLIP_GRADIENTS.ENABLED", "True"]
    with pytest.raises(SystemExit, match="--opts takes KEY VALUE pairs; got 3 words"):
        check_args(parse("warmup", "--opts", "SOLVER.CLIP_GRADIENTS.ENABLED", "True", "SEED"))


@pytest.mark.parametrize("section", ["speed", "quantization"])
def test_overrides_stop_where_the_section_would_ignore_them(section):
    with pytest.raises(
        SystemExit, match=f"--opts: only the pretrained and warmup .* not {section}"
    ):
        check_args(parse(section, "--opts", "SOLVER.BASE_LR", "0.1"))

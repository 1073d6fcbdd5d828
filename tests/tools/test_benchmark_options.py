"""``benchmarks.options``: tools/benchmark.py's command line and the checks that stop a run
before it starts when an option names something no section knows."""

import pytest

from benchmarks.options import ALONE, SECTIONS, argument_parser, check_args

DOC = "Summary line.\n\nThe epilog."


def parse(*argv):
    return argument_parser(DOC).parse_args(list(argv))


def test_defaults_pass_the_checks_and_lists_are_split_on_commas():
    args = parse("accuracy", "--seeds", "3,4", "--variants", "fcos,dw_refine")
    check_args(args)
    assert (args.section, args.seeds, args.variants) == ("accuracy", [3, 4], ["fcos", "dw_refine"])
    assert parse().section == "all"


def test_every_section_is_a_choice_and_alone_ones_are_sections():
    for name in SECTIONS:
        assert parse(name).section == name
    assert set(ALONE) < set(SECTIONS)
    with pytest.raises(SystemExit):
        parse("nonsense")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--variants", "fcos,dww"], "Unknown variant 'dww'"),
        (["--speed-variants", "retina"], "Unknown variant 'retina'"),
        (["--pairs", "yolo"], "Unknown pair 'yolo'"),
        (["--speed-settings", "r18"], "Unknown speed setting 'r18'"),
        (["--quant-precisions", "int8_static"], "fp32 first"),
    ],
)
def test_an_unknown_name_stops_with_the_option_value(argv, message):
    with pytest.raises(SystemExit, match=message):
        check_args(parse(*argv))

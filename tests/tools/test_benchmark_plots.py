"""The benchmark's pictures on hand-made numbers: a PNG is written, and the bars and lines drawn
carry the numbers given, each under its label (read back from the matplotlib Figure); how they
look (colours, line styles, legends, value labels) is left to the eye."""

import pytest

from benchmarks import plots, speed


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 1000 < len(data) < 200_000  # a picture, small enough for the docs


def test_bar_chart_draws_one_bar_per_value_in_its_group(tmp_path):
    groups = {"train": {"DW": 0.9, "DW+refine": 1.1}, "memory": {"DW": 1.02, "DW+refine": None}}
    fig = plots.bar_chart(groups, tmp_path / "bars.png", "title", "ratio", reference=1.0)
    assert_png(tmp_path / "bars.png")
    (ax,) = fig.axes
    # Per bar label, its values (None leaves a gap) and the group each stands in (group i at
    # x = i, named by the tick there).
    heights = {c.get_label(): [b.get_height() for b in c] for c in ax.containers}
    assert heights == {"DW": [0.9, 1.02], "DW+refine": [1.1]}
    places = {
        c.get_label(): [round(b.get_x() + b.get_width() / 2) for b in c] for c in ax.containers
    }
    assert places == {"DW": [0, 1], "DW+refine": [0]}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["train", "memory"]
    assert list(ax.get_xticks()) == [0, 1]
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == [1.0, 1.0]  # the reference


def test_curve_chart_draws_a_line_per_run(tmp_path):
    curves = {
        ("FCOS (d2)", "seed 0"): ([20, 40, 60], [1.0, 4.0, 6.5]),
        ("DW", "seed 0"): ([20, 40, 60], [2.0, 5.0, 8.0]),
        ("FCOS (d2)", "seed 1"): ([20, 40, 60], [0.5, 3.0, 5.0]),
        ("DW", "seed 1"): ([20, 40, 60], [1.5, 6.0, 9.0]),
    }
    fig = plots.curve_chart(curves, tmp_path / "curves.png", "title")
    assert_png(tmp_path / "curves.png")
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"FCOS (d2), seed 0", "DW, seed 0", "FCOS (d2), seed 1", "DW, seed 1"}
    assert list(lines["DW, seed 1"].get_ydata()) == [1.5, 6.0, 9.0]
    assert list(lines["DW, seed 1"].get_xdata()) == [20, 40, 60]


def test_speed_ratio_bars_from_speed_results(tmp_path):
    results = {
        "fcos": {"train_s": [1.0, 2.0, 4.0], "infer_s": [0.1, 0.2, 0.1], "train_mib": [100, 80]},
        "dw": {"train_s": [1.1, 1.8, 4.4], "infer_s": [0.1, 0.2, 0.12], "train_mib": [90, None]},
        "dw_refine": {"train_s": [1.2, 2.4, 4.0], "infer_s": [0.2, 0.2, 0.1], "train_mib": [None]},
    }
    groups = speed.ratio_groups({"small": {"results": results}})
    assert list(groups) == ["small train step", "small inference", "small train memory"]
    # Medians of the same-round ratios: train (1.1, 0.9, 1.1) and (1.2, 1.2, 1.0).
    assert groups["small train step"] == pytest.approx({"DW": 1.1, "DW+refine": 1.2})
    assert groups["small inference"] == pytest.approx({"DW": 1.0, "DW+refine": 1.0})
    assert groups["small train memory"] == {"DW": 0.9, "DW+refine": None}  # 90 / max(100, 80)
    fig = plots.bar_chart(groups, tmp_path / "speed.png", "t", "ratio", reference=1.0)
    assert len(fig.axes[0].patches) == 5

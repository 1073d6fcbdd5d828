"""The benchmark's pictures (matplotlib, no display needed): grouped bars and AP over iterations.
Each function writes a PNG and returns the ``Figure`` (tests read its bars and lines back)."""

import textwrap
from pathlib import Path

from matplotlib.figure import Figure

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
# Small pictures for the docs: 7 x 3.6 inches at 100 dpi, titles wrapped to fit.
FIGSIZE, DPI, TITLE_WIDTH = (7.0, 3.6), 100, 95


def _save(fig, ax, title, ylabel, path):
    """Title, y label, tight layout; writes the PNG and returns ``fig``."""
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return fig


def bar_chart(groups, path, title, ylabel, reference=None, value_format="{:.2f}"):
    """Grouped bars, each labelled with its value (``value_format``) and coloured by its label.

    Args:
        groups: {group label: {bar label: value}}; a missing or None value leaves a gap.
        path: the PNG to write.
        reference: draws a dashed horizontal line at this value (e.g. 1 for ratios).
    """
    bar_labels = list(dict.fromkeys(k for bars in groups.values() for k in bars))
    width = 0.8 / max(len(bar_labels), 1)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for j, label in enumerate(bar_labels):
        xs, ys = [], []
        for i, bars in enumerate(groups.values()):
            if bars.get(label) is not None:
                xs.append(i + (j - (len(bar_labels) - 1) / 2) * width)
                ys.append(bars[label])
        drawn = ax.bar(xs, ys, width, label=label, color=COLORS[j % len(COLORS)])
        ax.bar_label(drawn, [value_format.format(y) for y in ys], fontsize=7, padding=1)
    if reference is not None:
        ax.axhline(reference, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.margins(y=0.12)
    if len(bar_labels) > 1:
        ax.legend(fontsize=8)
    return _save(fig, ax, title, ylabel, path)


def curve_chart(curves, path, title, xlabel="iteration", ylabel="COCO box AP (%)"):
    """Lines of y over x, one colour per series name, one line style and marker per run, from
    ``curves`` {(series name, run name): (xs, ys)}, e.g. {("DW", "seed 0"): ([40, 80], [3, 9])}."""
    series = list(dict.fromkeys(s for s, _ in curves))
    runs = list(dict.fromkeys(r for _, r in curves))
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for (name, run), (xs, ys) in curves.items():
        k, color = runs.index(run), COLORS[series.index(name) % len(COLORS)]
        style = LINESTYLES[k % len(LINESTYLES)] + MARKERS[k % len(MARKERS)]
        ax.plot(xs, ys, style, color=color, markersize=4, label=f"{name}, {run}")
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=max(1, len(series)))
    return _save(fig, ax, title, ylabel, path)

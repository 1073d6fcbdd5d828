"""Statistics over seeds, the plain-text tables and the AP-curve picture of the benchmark, and the
machine it ran on.

A run is a dict with ``variant``, ``seed``, ``metrics`` ({view: {metric: value}}), the timings
``train_s``, ``s_per_iter``, ``eval_s`` (seconds) and ``curve`` ([iteration, metrics] of every
evaluation), as ``accuracy.run_accuracy`` makes.
"""

import datetime
import math
import os
import statistics

import torch
from detectron2.utils.collect_env import collect_env_info

from .detectors import LOW_SCORE, VARIANTS
from .plots import curve_chart

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
VIEW_TITLES = {
    "own": "each detector's own score threshold (FCOS sqrt(s*o) > 0.2, DW s*o > 0.05)",
    "low": f"both at s*o > {LOW_SCORE:g} (FCOS sqrt(s*o) > {math.sqrt(LOW_SCORE):g})",
}


def mean_std(values):
    """(mean, sample standard deviation, min, max) of a list; NaNs are left out."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return (math.nan,) * 4
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, min(values), max(values)


def summarize(runs, variants, view):
    """{variant: {metric: (mean, std, min, max)}} over the seeds of ``runs`` for one view."""
    return {
        v: {
            m: mean_std([r["metrics"][view][m] for r in runs if r["variant"] == v]) for m in METRICS
        }
        for v in variants
    }


def paired_differences(runs, variant, baseline, view, metric="AP"):
    """Per seed, ``metric`` of ``variant`` minus that of ``baseline`` (seeds run by both)."""
    by_key = {(r["variant"], r["seed"]): r["metrics"][view][metric] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    return [
        by_key[(variant, s)] - by_key[(baseline, s)]
        for s in seeds
        if (variant, s) in by_key and (baseline, s) in by_key
    ]


def format_table(header, rows):
    """A plain-text table: columns right-aligned except the first."""
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]

    def line(r):
        cells = [str(r[0]).ljust(widths[0])]
        cells += [str(c).rjust(w) for c, w in zip(r[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def _pm(stats):
    mean, std, _, _ = stats
    return "n/a" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"


def format_summary(runs, variants, view):
    """Mean ± sample std over seeds of every metric (of the runs that did not diverge), the range
    of AP and how many runs diverged."""
    summary = summarize(runs, variants, view)
    rows = []
    for v in variants:
        _, _, lo, hi = summary[v]["AP"]
        mine = [r for r in runs if r["variant"] == v]
        diverged = sum("diverged" in r for r in mine)
        dets = mean_std(
            [r["metrics"][view].get("dets/img", math.nan) for r in runs if r["variant"] == v]
        )[0]
        rows.append(
            [
                VARIANTS[v],
                *(_pm(summary[v][m]) for m in METRICS),
                "n/a" if math.isnan(lo) else f"{lo:.1f}-{hi:.1f}",
                "n/a" if math.isnan(dets) else f"{dets:.1f}",
                f"{diverged}/{len(mine)}",
            ]
        )
    seeds = sorted({r["seed"] for r in runs})
    return (
        f"COCO box AP (%), mean ± sample std over seeds {seeds}, {VIEW_TITLES[view]}:\n"
        + format_table(["detector", *METRICS, "AP range", "dets/img", "diverged"], rows)
    )


def format_per_seed(runs, variants, view, baseline="fcos"):
    """AP of every run, and per seed the difference of each variant to ``baseline``."""
    seeds = sorted({r["seed"] for r in runs})
    ap = {(r["variant"], r["seed"]): r["metrics"][view]["AP"] for r in runs}
    rows = [
        [VARIANTS[v], *(f"{ap[(v, s)]:.1f}" if (v, s) in ap else "-" for s in seeds), ""]
        for v in variants
    ]
    for v in variants:
        if baseline in variants and v != baseline:
            diffs = paired_differences(runs, v, baseline, view)
            mean, std, lo, hi = mean_std(diffs)
            rows.append(
                [
                    f"{VARIANTS[v]} - {VARIANTS[baseline]}",
                    *(f"{d:+.1f}" for d in diffs),
                    f"{mean:+.1f} ± {std:.1f} (range {lo:+.1f} to {hi:+.1f})",
                ]
            )
    header = ["AP by seed", *(f"seed {s}" for s in seeds), "paired mean ± std"]
    return format_table(header, rows)


def format_accuracy(runs, variants):
    """Both views' summaries and per-seed tables, and the training times."""
    parts = []
    for view in VIEW_TITLES:
        parts.append(format_summary(runs, variants, view))
        parts.append(format_per_seed(runs, variants, view))
    timing = []
    for v in variants:
        mine = [r for r in runs if r["variant"] == v and "diverged" not in r]
        if not mine:
            continue
        timing.append(
            [
                VARIANTS[v],
                f"{statistics.median(r['s_per_iter'] for r in mine):.2f}",
                f"{statistics.fmean(r['train_s'] for r in mine):.0f}",
                f"{statistics.fmean(r['eval_s'] for r in mine):.0f}",
            ]
        )
    parts.append(
        "Training runs (times are noisy when other work shares the CPU):\n"
        + format_table(["detector", "median s/it", "mean train s", "mean eval s"], timing)
    )
    return "\n\n".join(parts)


def plot_ap_curves(runs, path, view="own", split="the generated validation split"):
    """AP over training iterations on ``split`` (words for the title), a line per run of
    ``runs`` (as ``accuracy.run_accuracy`` makes them), coloured by detector; returns the
    matplotlib Figure."""
    curves = {
        (VARIANTS[r["variant"]], f"seed {r['seed']}"): (
            [it for it, _ in r["curve"]],
            [m[view]["AP"] for _, m in r["curve"]],
        )
        for r in runs
        # Runs reused from before the curve was recorded have none, diverged ones may have none.
        if r.get("curve")
    }
    return curve_chart(
        curves,
        path,
        f"COCO box AP on {split} ({view} score threshold), same runs as the tables",
    )


def environment(device, command):
    """The date, ``command`` (the command line to record), the device, torch's threads and the
    cores usable, and detectron2's ``collect_env_info()`` (versions, CPU and GPU), as a dict."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "collect_env_info": collect_env_info(),
    }

"""Statistics over seeds, plain-text tables, and the machine a benchmark ran on."""

import datetime
import math
import os
import statistics

import torch
from detectron2.utils.collect_env import collect_env_info


def mean_std(values):
    """(mean, sample standard deviation, min, max) of a list; NaNs are left out."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return (math.nan,) * 4
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, min(values), max(values)


def format_table(header, rows):
    """A plain-text table: columns right-aligned except the first."""
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]

    def line(r):
        cells = [str(r[0]).ljust(widths[0])]
        cells += [str(c).rjust(w) for c, w in zip(r[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def environment(device, command):
    """The date, ``command`` (the command line), the device, torch's threads, the usable cores
    and detectron2's ``collect_env_info()``, as a dict."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "collect_env_info": collect_env_info(),
    }

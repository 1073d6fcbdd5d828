"""Memory probes: the peak memory of one call (CPU or CUDA) and the resident set size of a
process tree. The CPU probes read Linux's ``/proc``."""

import ctypes
import gc
import os
import re

import torch


def status_kib(field, pid="self"):
    """The value in KiB of ``field`` (e.g. "VmRSS") of ``/proc/<pid>/status``; KeyError if the
    process has no such field (a zombie has no "VmRSS")."""
    path = f"/proc/{pid}/status"
    with open(path) as f:
        match = re.search(rf"^{field}:\s+(\d+)", f.read(), re.M)
    if match is None:
        raise KeyError(f"{path} has no field {field!r}")
    return int(match.group(1))


def peak_rss_growth_mib(fn):
    """(``fn()``, growth in MiB of this process's peak resident set size while it ran); MiB
    None where the reset below is not possible (no glibc, no ``/proc``, a kernel refusing it).

    Freed heap pages are first returned to the system (glibc's ``malloc_trim``) and the peak
    (``VmHWM``) reset to the current size, so the growth is the high-water mark of what ``fn``
    allocates (PyTorch's CPU allocator does not cache).
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        before = status_kib("VmRSS")
    except (OSError, AttributeError):
        return fn(), None
    result = fn()
    return result, (status_kib("VmHWM") - before) / 1024


def peak_cuda_growth_mib(fn):
    """(``fn()``, its peak of ``torch.cuda.max_memory_allocated`` above the start in MiB)."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = fn()
    return result, (torch.cuda.max_memory_allocated() - before) / 2**20


def process_tree_rss_mib(pid=None):
    """Resident set size in MiB of process ``pid`` (default: this one) and its children, e.g.
    the data loader's workers."""
    total, pending = 0, [pid or os.getpid()]
    while pending:
        current = pending.pop()
        try:
            total += status_kib("VmRSS", current)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    pending += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, KeyError):
            continue  # the process ended (or became a zombie) between listing and reading
    return total / 1024

"""The loss benchmark (``benchmarks.losses``, behind tools/benchmark_losses.py) and
the memory probes: hand-computed points, pairs and table rows, the per-box-loop reference against
``dw_losses``, and both tools run as commands at a tiny size."""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import REPO, printed_numbers

from benchmarks import losses, memory


def test_points_of_every_level():
    points, strides = losses.make_points(16, 24)
    # Stride 8: 2 rows x 3 columns; 16: 1 x 2; 32, 64 and 128: one point each.
    assert strides.tolist() == [8.0] * 6 + [16.0] * 2 + [32.0, 64.0, 128.0]
    assert points[:4].tolist() == [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0]]
    assert points[6:].tolist() == [[8.0, 8.0], [24.0, 8.0], [16.0, 16.0], [32.0, 32.0], [64, 64]]
    # The benchmark's image: 100 x 152 + 50 x 76 + 25 x 38 + 13 x 19 + 7 x 10 points.
    assert len(losses.make_points(800, 1216)[0]) == 20267


def test_loop_reference_equals_dw_losses():
    inputs = losses.make_inputs(2, 4, 64, 96, 3, seed=1, dtype=torch.float64)
    loop, dw = (
        losses.forward_backward(fn, inputs, losses.leaves(inputs))
        for fn in (losses.dense_loop_dw_losses, losses.dw_losses)
    )
    assert all(v > 0 for v in loop[0].values())
    loss_diff, grad_diff = losses.max_rel_diff(dw, loop)
    assert loss_diff < 1e-12 and grad_diff < 1e-10


def test_max_rel_diff_on_hand_made_numbers():
    a = ({"loss_cls_pos": 1.0, "loss_loc": 2.0, "loss_cls_neg": 4.0}, [torch.tensor([1.0, 3.0])])
    b = ({"loss_cls_pos": 1.0, "loss_loc": 2.0, "loss_cls_neg": 5.0}, [torch.tensor([1.0, 4.0])])
    assert losses.max_rel_diff(a, b) == (pytest.approx(0.2), pytest.approx(0.25))


def test_measure_counts_the_pairs_inside_boxes():
    inputs = list(losses.make_inputs(1, 1, 16, 24, 3, seed=0, dtype=torch.float32))
    # Strictly inside [0, 0, 16, 8] of the 11 points: (4, 4) and (12, 4) only.
    inputs[5] = [torch.tensor([[0.0, 0.0, 16.0, 8.0]])]
    result = losses.measure_losses(tuple(inputs), repeats=2)
    assert (result["boxes"], result["pairs"], result["dense"]) == (1, 2, 11)
    assert all(ms > 0 for ms in result["ms"].values())
    assert all(m is None or m >= 0 for m in result["mib"].values())
    assert result["loss_diff"] < 1e-5 and result["grad_diff"] < 1e-4


def test_table_row_on_hand_made_numbers():
    row = losses.format_loss_row(
        {
            "boxes": 10,
            "pairs": 11134,
            "dense": 405340,
            "ms": {"loop": 242.6, "dw": 83.1},
            "mib": {"loop": 187.4, "dw": None},
            "loss_diff": 7.5e-8,
            "grad_diff": 2.9e-7,
        }
    )
    # The counts, both times and the speed-up, the loop's memory (DW's unmeasured: no number),
    # the two relative differences.
    assert printed_numbers(row) == [
        10,
        11134,
        405340,
        242.6,
        83.1,
        242.6 / 83.1,
        187.4,
        7.5e-8,
        2.9e-7,
    ]


def test_memory_probes():
    assert memory.status_kib("VmRSS") > 0
    with pytest.raises(KeyError, match="NoSuchField"):
        memory.status_kib("NoSuchField")
    assert memory.process_tree_rss_mib() > 0.9 * memory.status_kib("VmRSS") / 1024
    tensor, mib = memory.peak_rss_growth_mib(lambda: torch.ones(2**24))  # 64 MiB, touched
    assert tensor.shape == (2**24,)
    # Linux (the only platform the project installs on) lets a process reset its peak RSS.
    assert mib is not None and 60 < mib < 100


def test_memory_probe_without_a_peak_reset_says_so(monkeypatch):
    """Where /proc/self/clear_refs cannot be written, the probe runs ``fn`` and reports None
    (unmeasured) rather than a number that would include earlier peaks."""
    real_open = open

    def no_clear_refs(path, *args, **kwargs):
        if str(path) == "/proc/self/clear_refs":
            raise PermissionError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_clear_refs)
    assert memory.peak_rss_growth_mib(lambda: 7) == (7, None)


def _run(*command):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, *command], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


TINY_LOSS_ARGS = "--boxes 1,2 --repeats 1 --height 32 --width 48 --classes 3 --threads 1"


def test_loss_tool_prints_a_row_per_box_count():
    rows = _run("tools/benchmark_losses.py", *TINY_LOSS_ARGS.split()).splitlines()[3:]
    assert dense_pairs(rows) == [(1, 68), (2, 136)]


def dense_pairs(rows):
    """(boxes, P*G) of each row of the loss table. With --height 32 --width 48, 34 points per
    image (24 + 6 + 2 + 1 + 1): P*G = 2 images x 34 x boxes."""
    return [tuple(printed_numbers(row)[:3:2]) for row in rows]


def test_benchmark_tool_runs_the_loss_tool(tmp_path):
    stdout = _run(
        "tools/benchmark.py", "losses", f"--loss-args={TINY_LOSS_ARGS}", "--output-dir", tmp_path
    )
    results = json.loads((tmp_path / "results.json").read_text())
    # The loss tool ran with the arguments given: its table, kept in results.json, is theirs.
    assert dense_pairs(results["losses"].splitlines()[3:]) == [(1, 68), (2, 136)]
    assert results["losses"] in stdout
    assert results["environment"]["command"].startswith("python tools/benchmark.py losses")

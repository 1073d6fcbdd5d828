"""The pretrained section of tools/benchmark.py on hand-made numbers: curves read from
detectron2's metrics.json, the plateau check, the pair table, the runs' overrides."""

import argparse
import json

from benchmarks.pretrained import PAIRS, format_pairs, plateau, read_curve, run_options


def test_curve_is_read_from_metrics_json_by_iteration(tmp_path):
    lines = [
        {"iteration": 19, "total_loss": 1.0},
        {"iteration": 39, "bbox/AP": 3.0, "bbox/AP50": 11.0},
        {"iteration": 79, "bbox/AP": 7.0, "bbox/AP50": 29.0},
        # A resumed run evaluates iteration 80 again: the later record wins.
        {"iteration": 79, "bbox/AP": 7.5, "bbox/AP50": 29.5},
        # The evaluation after the last iteration is recorded at max_iter.
        {"iteration": 100, "bbox/AP": 8.0, "bbox/AP50": 30.0},
    ]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(x) for x in lines))
    assert read_curve(tmp_path, max_iter=100) == [
        [40, {"AP": 3.0, "AP50": 11.0}],
        [80, {"AP": 7.5, "AP50": 29.5}],
        [100, {"AP": 8.0, "AP50": 30.0}],
    ]
    assert read_curve(tmp_path / "absent", max_iter=100) == []


def test_plateau_compares_the_end_with_the_first_half():
    flat = [[40 * (i + 1), {"AP": ap}] for i, ap in enumerate([3.0, 7.2, 7.4, 8.1, 7.0, 7.6])]
    # Best of the first half 7.4; last 7.6: +0.2 <= 0.5.
    assert plateau(flat) == "flat"
    rising = [[40 * (i + 1), {"AP": ap}] for i, ap in enumerate([1.0, 2.0, 3.0, 4.0])]
    # Best of the first half 2.0; last 4.0.
    assert plateau(rising) == "rising"


def _record(config, seed, ap, **extra):
    metrics = {m: ap + k for k, m in enumerate(("AP", "AP50", "AP75", "APs", "APm"))}
    return {"config": config, "seed": seed, "metrics": metrics, "plateau": "flat", **extra}


def test_pair_table_pairs_seeds_and_names_diverged_and_rising_runs():
    original, with_dw = PAIRS["fcos"]
    records = [
        _record(original, 0, 10.0),
        _record(with_dw, 0, 12.0),
        _record(original, 1, 14.0, plateau="rising"),
        {"config": with_dw, "seed": 1, "curve": [], "diverged": "FloatingPointError: Loss NaN"},
    ]
    table = format_pairs(records, ["fcos"])
    ap_row = next(line for line in table.splitlines() if line.startswith("fcos AP "))
    # Original 10 and 14: mean 12, sample std 2.83; DW only seed 0: 12 ± 0; differences by seed.
    assert "12.0 ± 2.8" in ap_row and "12.0 ± 0.0" in ap_row
    assert ap_row.rstrip().endswith("+2.0, +nan")
    assert f"diverged: {with_dw} seed 1: FloatingPointError: Loss NaN" in table
    assert f"still rising: {original} seed 1" in table


def test_run_options_scale_the_lr_step_and_keep_the_configs_warmup():
    args = argparse.Namespace(pretrained_iters=300, eval_period=50, device="cpu", warmup_iters=None)
    opts = run_options(2, args, "out/x")
    pairs = dict(zip(opts[::2], opts[1::2]))
    assert pairs["SOLVER.MAX_ITER"] == "300" and pairs["SOLVER.STEPS"] == "(240,)"
    assert pairs["SEED"] == "2" and pairs["TEST.EVAL_PERIOD"] == "50"
    assert "SOLVER.WARMUP_ITERS" not in pairs
    args.warmup_iters = 0
    assert dict(zip(*[iter(run_options(0, args, "o"))] * 2))["SOLVER.WARMUP_ITERS"] == "0"

"""The accuracy section's record of DW's assignment (benchmarks.assignment_trace) on a hand-made
assignment, and a run that collapses recorded as diverged with its trace, not ending the section."""

import argparse
import json

import pytest
import torch
from detectron2.utils.events import EventStorage
from helpers import printed_numbers, table_line

from benchmarks import accuracy, assignment_trace
from dual_weighting.data import generate_synthetic_coco, register_synthetic
from dual_weighting.modeling.assignment import DWAssignment


def hand_assignment():
    """Two images: boxes 0 and 1 of image 0 (two and one inside points), box 0 of image 1 (one
    point). Positive weights per box sum to 1.2, 0.2 (below 1: the eps clamp) and 1.0."""
    scores = torch.zeros(2, 4, 2)
    scores[1, 3, 0] = 0.9
    neg_weight = torch.ones(2, 4, 2)
    neg_weight[0, 0] = torch.tensor([0.5, 0.25])
    neg_weight[0, 1] = torch.tensor([1.0, 0.75])
    neg_weight[1, 2] = torch.tensor([0.0, 1.0])
    return DWAssignment(
        image=torch.tensor([0, 0, 0, 1]),
        point=torch.tensor([0, 1, 1, 2]),
        box=torch.tensor([0, 0, 1, 0]),
        scores=scores,
        p_cls=torch.tensor([0.3, 0.1, 0.05, 0.2]),
        p_loc=torch.tensor([0.5, 0.5, 0.5, 0.5]),
        iou=torch.tensor([0.7, 0.3, 0.5, 0.1]),
        prior=torch.ones(4),
        pos_weight=torch.tensor([0.6, 0.6, 0.2, 1.0]),
        neg_weight=neg_weight,
    )


def test_assignment_stats_by_hand():
    stats = assignment_trace.assignment_stats(hand_assignment())
    assert stats == pytest.approx(
        {
            "dw/pairs": 4,
            "dw/iou50_frac": 2 / 4,
            "dw/clamped_box_frac": 1 / 3,
            "dw/pos_mass_median": 1.0,
            # Smallest over classes at the pairs' points: 0.25, 0.75, 0.75, 0.0.
            "dw/neg_weight_inside": (0.25 + 0.75 + 0.75 + 0.0) / 4,
            "dw/pair_score_max": 0.3,
            "dw/score_max": 0.9,
        }
    )


def test_trace_table_rows_are_the_recorded_iterations_and_the_last():
    with EventStorage(0) as storage:
        for it in range(5):
            storage.iter = it
            storage.put_scalar("dw/pairs", 10.0 * it, smoothing_hint=False)
            storage.put_scalar("dw/score_max", 0.5**it, smoothing_hint=False)
    trace = assignment_trace.storage_trace(storage)
    assert trace["dw/pairs"] == [[0, 0.0], [1, 10.0], [2, 20.0], [3, 30.0], [4, 40.0]]
    table = assignment_trace.format_trace({"assignment": trace}, (0, 2, 99))
    assert [line.split()[0] for line in table.splitlines()[2:]] == ["1", "3", "5"]
    assert printed_numbers(table_line(table, "5")) == [5, 40, 0.0625]


def test_a_collapsing_run_is_recorded_as_diverged_with_its_trace(tmp_path, monkeypatch):
    """A classifier prior of 1e-60 makes every joint score underflow to 0 at the first
    iteration: DW's check stops that run; the section records it and goes on to the next."""
    root = tmp_path / "data"
    generate_synthetic_coco(root, num_train=2, num_val=1, image_size=(64, 96))
    train, val = register_synthetic(root, prefix="test_trace")
    args = argparse.Namespace(
        iters=2, warmup_iters=None, batch=2, min_size=64, max_size=96, eval_period=0,
        device="cpu", seeds=[0], variants=["dw", "fcos"], dataset="synthetic",
        output_dir=str(tmp_path / "out"), resume=False,
    )  # fmt: skip
    extra = ["DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)",
             "DATALOADER.NUM_WORKERS", "0", "MODEL.DW.PRIOR_PROB", "1e-60"]  # fmt: skip
    make = accuracy.accuracy_cfg
    monkeypatch.setattr(
        accuracy, "accuracy_cfg", lambda *a, **k: make(*a, **{**k, "extra_opts": extra})
    )
    monkeypatch.setitem(accuracy.DATASETS, "synthetic", (*accuracy.DATASETS["synthetic"][:1],
                        lambda: None, "the test split"))  # fmt: skip
    out = {}
    accuracy.run_accuracy(args, out)
    dw, fcos = out["accuracy"]
    assert "training collapsed at iteration=0" in dw["diverged"]
    assert dw["assignment"]["dw/score_max"] == [[0, 0.0]]
    assert "diverged" not in fcos and fcos["train_s"] > 0 and fcos["assignment"] == {}
    saved = json.loads((tmp_path / "out" / "accuracy" / "dw_seed0" / "result.json").read_text())
    assert saved["result"]["diverged"] == dw["diverged"]

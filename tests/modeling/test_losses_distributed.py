"""dw_losses in two gloo worker processes: normalisers are averaged over the workers, the
bounded negative loss's too."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# pytest puts tests/ on sys.path, and spawned workers inherit it: they import these by name too.
from dw_reference import make_case, reference_dw_sums
from helpers import LOSS_NAMES
from helpers import fcos_dw_losses as dw_losses

WORLD_SIZE = 2


def scenario_inputs(scenario: str, rank: int):
    """Different images and boxes on each rank."""
    points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes = make_case(
        seed=10 + rank
    )
    if scenario == "mixed":
        # Rank 0: three images with 6, 0 and 3 boxes; rank 1: two images with 0 and 3 boxes.
        keep = slice(0, 3) if rank == 0 else slice(1, 3)
    else:
        # "few": rank 0 has no box at all, rank 1 one box: the box count's mean 0.5 is clamped.
        keep = slice(1, 2) if rank == 0 else slice(2, 3)
        if rank == 1:
            gt_boxes = gt_boxes[:2] + [gt_boxes[2][:1]]
            gt_classes = gt_classes[:2] + [gt_classes[2][:1]]
    return (
        points,
        strides,
        cls_logits[keep],
        ctr_logits[keep],
        box_ltrb[keep],
        gt_boxes[keep],
        gt_classes[keep],
    )


def _worker(rank: int, init_file: str, out_dir: str):
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        results = {}
        for scenario in ("mixed", "few"):
            for bounded in (False, True):
                losses = dw_losses(*scenario_inputs(scenario, rank), bounded_neg_loss=bounded)
                results[scenario, bounded] = torch.stack([losses[k].detach() for k in LOSS_NAMES])
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_normalisers_are_averaged_over_workers(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]

    for scenario in ("mixed", "few"):
        sums, norms = zip(
            *(reference_dw_sums(*scenario_inputs(scenario, r)) for r in range(WORLD_SIZE))
        )
        mean_boxes = max(sum(n[0] for n in norms) / WORLD_SIZE, 1.0)
        mean_neg = max(sum(n[1] for n in norms) / WORLD_SIZE, 1.0)
        if scenario == "few":
            assert [n[0] for n in norms] == [0.0, 1.0] and mean_boxes == 1.0
        else:
            assert [n[0] for n in norms] == [9.0, 3.0]
        for rank in range(WORLD_SIZE):
            pos_cls, pos_loc, neg = sums[rank]
            expected = torch.stack(
                [pos_cls / mean_boxes, pos_loc / mean_boxes, neg / mean_neg]
            ).detach()
            if scenario == "mixed":
                # The local normalisers differ from their mean, so the mean really is used.
                local = max(norms[rank][1], 1.0)
                assert abs(local - mean_neg) > 1e-3 * mean_neg
            torch.testing.assert_close(
                results[rank][scenario, False],
                expected,
                rtol=1e-7,
                atol=0,
                msg=f"{scenario} {rank}",
            )
            # Bounded: the larger of the two negative normalisers, each averaged over workers.
            mean_mass = sum(n[2] for n in norms) / WORLD_SIZE
            assert mean_mass > mean_neg and abs(norms[rank][2] - mean_mass) > 1e-3 * mean_mass
            bounded = torch.stack([expected[0], expected[1], neg / mean_mass]).detach()
            torch.testing.assert_close(results[rank][scenario, True], bounded, rtol=1e-7, atol=0)

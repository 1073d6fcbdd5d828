"""``benchmarks`` (tools/benchmarks/, behind tools/benchmark.py) at a tiny setting: both
detectors get the same backbone, input, solver and data; the training/evaluation (also periodic)
and timing plumbing runs; the tables are right on hand-made numbers; the batched section's model
runs.
"""

import argparse
import statistics

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.structures import Boxes, Instances
from detectron2.utils.env import seed_all_rng
from helpers import printed_numbers, table_line

from benchmarks import accuracy, detectors, pairs, report, speed
from dual_weighting import DWFCOS
from dual_weighting.data import register_synthetic
from sample_data.shapes import generate_synthetic_coco

# The accuracy options at a tiny size: 2 iterations of 2 images of 64 x 96, evaluated at the end.
TINY = argparse.Namespace(
    iters=2, warmup_iters=None, batch=2, min_size=64, max_size=96, eval_period=0, device="cpu"
)
PREFIX = "test_benchmark_tiny"


@pytest.fixture(scope="module")
def tiny_opts(tmp_path_factory):
    """A generated dataset of 2 + 2 images of 64 x 96, and the options that train on it."""
    root = tmp_path_factory.mktemp("benchmark_tiny")
    generate_synthetic_coco(
        root, num_train=2, num_val=2, image_size=(64, 96), objects_per_image=(2, 3)
    )
    train, val = register_synthetic(root, prefix=PREFIX)
    yield ["DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)"]
    for catalog in (DatasetCatalog, MetadataCatalog):
        for name in (train, val):
            if name in catalog.list():
                catalog.remove(name)


def test_detectors_share_backbone_input_and_solver(tmp_path):
    cfgs = {v: accuracy.accuracy_cfg(v, 0, TINY, tmp_path) for v in ("fcos", "dw")}
    assert cfgs["fcos"].MODEL.META_ARCHITECTURE == "FCOS"
    assert cfgs["dw"].MODEL.META_ARCHITECTURE == "DWFCOS"
    # Everything else (backbone, input sizes, batch, solver, seed, data) is the same config.
    cfgs["fcos"].MODEL.META_ARCHITECTURE = "DWFCOS"
    assert cfgs["fcos"].dump() == cfgs["dw"].dump()
    assert cfgs["dw"].INPUT.MIN_SIZE_TRAIN == (64,) and cfgs["dw"].SOLVER.MAX_ITER == 2

    models = speed.build_speed_models(detectors.SMALL_CONFIG, [], ["fcos", "dw"], "cpu")
    fcos, dw = models["fcos"][1], models["dw"][1]
    assert type(fcos) is FCOS and type(dw) is DWFCOS
    assert type(fcos.backbone) is type(dw.backbone)
    a, b = fcos.backbone.state_dict(), dw.backbone.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fcos.head_in_features == dw.head_in_features == ["p3", "p4", "p5", "p6", "p7"]
    assert torch.equal(fcos.pixel_mean, dw.pixel_mean)
    assert torch.equal(fcos.pixel_std, dw.pixel_std)
    # Same towers: two 3x3 convs of 128 channels with GroupNorm(32) each.
    fcos_convs = [m for m in fcos.head.cls_subnet if isinstance(m, torch.nn.Conv2d)]
    fcos_norms = [m for m in fcos.head.cls_subnet if isinstance(m, torch.nn.GroupNorm)]
    assert [c.out_channels for c in fcos_convs] == [c.out_channels for c in dw.head.cls_tower]
    assert [n.num_groups for n in fcos_norms] == [c.norm.num_groups for c in dw.head.cls_tower]
    # detectron2's own FCOS defaults are kept.
    assert fcos.test_score_thresh == 0.2 and fcos.center_sampling_radius == 1.5


def test_every_detector_of_a_seed_sees_the_same_batches(tiny_opts, tmp_path):
    opts = [*tiny_opts, "DATALOADER.NUM_WORKERS", "1"]
    cfg = accuracy.accuracy_cfg("dw", 3, TINY, tmp_path, opts)

    def first_batch(draws):
        # A different head draws a different number of random numbers before the loader.
        torch.rand(draws)
        np.random.rand(draws)
        batch = next(iter(accuracy.BenchmarkTrainer.build_train_loader(cfg)))
        return [(d["file_name"], d["image"]) for d in batch]

    a, b = first_batch(1), first_batch(5)
    assert [x[0] for x in a] == [x[0] for x in b]
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_training_evaluates_both_score_views(tiny_opts, tmp_path):
    opts = [*tiny_opts, "DATALOADER.NUM_WORKERS", "0"]
    runs = []
    for variant in ("fcos", "dw"):
        result = accuracy.run_training(
            accuracy.accuracy_cfg(variant, 0, TINY, tmp_path / variant, opts)
        )
        assert set(result["metrics"]) == {"own", "low"}
        assert set(report.METRICS) <= set(result["metrics"]["low"])
        assert result["train_s"] > 0 and result["eval_s"] > 0
        assert (tmp_path / variant / "metrics.json").is_file()
        runs.append({**result, "variant": variant, "seed": 0})
    # The report reads the runs as made: DW's AP against FCOS's, seed by seed.
    ap = [r["metrics"]["own"]["AP"] for r in runs]
    np.testing.assert_equal(report.paired_differences(runs, "dw", "fcos", "own"), [ap[1] - ap[0]])


def test_periodic_evaluation_records_the_curve_and_leaves_training_alone(tiny_opts, tmp_path):
    # No loader workers: the flips are drawn in this process, where evaluation draws too.
    opts = [*tiny_opts, "DATALOADER.NUM_WORKERS", "0"]
    every = argparse.Namespace(**{**vars(TINY), "iters": 4, "eval_period": 1})
    end = argparse.Namespace(**{**vars(TINY), "iters": 4})
    assert accuracy.accuracy_cfg("dw", 0, every, tmp_path, opts).TEST.EVAL_PERIOD == 1
    curve_run = accuracy.run_training(accuracy.accuracy_cfg("dw", 0, every, tmp_path / "a", opts))
    end_run = accuracy.run_training(accuracy.accuracy_cfg("dw", 0, end, tmp_path / "b", opts))
    assert [it for it, _ in curve_run["curve"]] == [1, 2, 3, 4]
    assert [it for it, _ in end_run["curve"]] == [4]
    np.testing.assert_equal(curve_run["curve"][-1][1], curve_run["metrics"])  # NaN == NaN
    np.testing.assert_equal(curve_run["metrics"], end_run["metrics"])
    assert set(curve_run["curve"][0][1]) == {"own", "low"} and curve_run["curve_eval_s"] > 0
    assert curve_run["losses"] == end_run["losses"]  # evaluation changed nothing in training
    # The periodic metrics also reach detectron2's metrics.json, as EvalHook writes them.
    assert '"own/AP"' in (tmp_path / "a" / "metrics.json").read_text()


def test_score_view_evaluator_drops_low_scores(tiny_opts):
    evaluator = accuracy.ScoreFilteredCOCOEvaluator(f"{PREFIX}_val", "high", min_score=0.5)
    evaluator.reset()
    instances = Instances((64, 96))
    instances.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 20.0, 20.0]]))
    instances.scores = torch.tensor([0.9, 0.1])
    instances.pred_classes = torch.tensor([0, 1])
    evaluator.process([{"image_id": 1}], [{"instances": instances}])
    (kept,) = evaluator._predictions
    assert [d["score"] for d in kept["instances"]] == [pytest.approx(0.9)]
    results = evaluator.evaluate()
    assert set(results) == {"high"} and results["high"]["dets/img"] == 1


def test_filtering_after_nms_equals_a_higher_threshold():
    cfg = detectors.make_cfg(detectors.SMALL_CONFIG, "dw")
    seed_all_rng(0)
    model = detectors.build_detector(cfg).eval()
    image = [{"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)}]
    with torch.no_grad():
        model.test_score_thresh = 0.0
        low = model(image)[0]["instances"]
        high_thresh = float(low.scores.median())
        model.test_score_thresh = high_thresh
        high = model(image)[0]["instances"]
    filtered = low[low.scores > high_thresh]
    assert 0 < len(high) < len(low)
    assert torch.equal(filtered.scores, high.scores)
    assert torch.equal(filtered.pred_boxes.tensor, high.pred_boxes.tensor)


def test_tables_on_hand_made_numbers():
    def run(variant, seed, ap):
        metrics = {m: ap + i for i, m in enumerate(report.METRICS)}
        metrics["APs"] = float("nan") if seed == 2 else metrics["APs"]
        return {
            "variant": variant,
            "seed": seed,
            "metrics": {"own": metrics, "low": {m: v + 1 for m, v in metrics.items()}},
            "train_s": 100.0 + seed,
            "s_per_iter": 1.0,
            "eval_s": 10.0,
        }

    runs = [run("fcos", s, ap) for s, ap in enumerate((10.0, 20.0, 30.0))]
    runs += [run("dw", s, ap) for s, ap in enumerate((12.0, 21.0, 36.0))]
    assert report.mean_std([10.0, 20.0, 30.0]) == (20.0, 10.0, 10.0, 30.0)
    assert report.mean_std([float("nan"), 4.0]) == (4.0, 0.0, 4.0, 4.0)
    summary = report.summarize(runs, ["fcos", "dw"], "own")
    assert summary["fcos"]["AP"] == (20.0, 10.0, 10.0, 30.0)
    assert summary["fcos"]["AP50"][0] == 21.0
    assert summary["fcos"]["APs"][:2] == (18.0, pytest.approx(50**0.5))  # seed 2 is NaN
    assert report.paired_differences(runs, "dw", "fcos", "own") == [2.0, 1.0, 6.0]

    runs[0]["metrics"]["own"]["dets/img"] = 100.0
    variants = ["fcos", "dw"]
    own, low = (report.format_summary(runs, variants, view) for view in ("own", "low"))
    per_seed = report.format_per_seed(runs, variants, "own")
    text = report.format_accuracy(runs, variants)
    assert own in text and low in text and per_seed in text
    # Mean and std of AP, AP50, ..., APl (APs without seed 2), the AP range, detections per
    # image (only FCOS seed 0 has a count; DW has none), then diverged runs of all (none of 3).
    assert printed_numbers(table_line(own, "FCOS", "(d2)")) == [
        20.0, 10.0, 21.0, 10.0, 22.0, 10.0, 18.0, 50**0.5, 24.0, 10.0, 25.0, 10.0,
        10.0, 30.0, 100.0, 0, 3,
    ]  # fmt: skip
    std = statistics.stdev([12.0, 21.0, 36.0])
    assert printed_numbers(table_line(own, "DW")) == [
        23.0, std, 24.0, std, 25.0, std, 19.5, statistics.stdev([15.0, 24.0]), 27.0, std,
        28.0, std, 12.0, 36.0, 0, 3,
    ]  # fmt: skip
    assert printed_numbers(table_line(low, "FCOS", "(d2)"))[:2] == [21.0, 10.0]  # each value + 1
    # Paired DW - FCOS: per seed, then mean, std and range.
    assert printed_numbers(table_line(per_seed, "DW", "-", "FCOS", "(d2)")) == [
        2.0, 1.0, 6.0, 3.0, statistics.stdev([2.0, 1.0, 6.0]), 1.0, 6.0,
    ]  # fmt: skip

    speed_results = {
        "fcos": {"train_s": [1.0, 2.0, 4.0], "infer_s": [0.1] * 3, "train_mib": [90, 100]},
        "dw": {"train_s": [1.1, 2.4, 4.0], "infer_s": [0.1, 0.2, 0.1], "train_mib": [None] * 3},
    }
    table = speed.format_speed(speed_results, "title")
    # Median train s/it and inference ms, largest memory growth, each with its ratio to FCOS:
    # the median of same-round ratios (DW train: 1.1, 1.2, 1.0, not 2.4 / 2.0); DW's memory is
    # unmeasured, so it has neither value nor ratio.
    assert printed_numbers(table_line(table, "FCOS", "(d2)")) == [2.0, 1.0, 100, 1.0, 100, 1.0]
    assert printed_numbers(table_line(table, "DW")) == [2.4, 1.1, 100, 1.0]


def test_schedule_is_scaled_to_the_run_length():
    assert accuracy.scaled_schedule(120) == [
        "SOLVER.MAX_ITER", 120, "SOLVER.WARMUP_ITERS", 30, "SOLVER.STEPS", (93, 112),
    ]  # fmt: skip
    assert accuracy.scaled_schedule(2000)[3:] == [50, "SOLVER.STEPS", (1545, 1864)]
    assert accuracy.scaled_schedule(2)[-1] == ()  # steps at 0 or at the end would do nothing
    assert accuracy.scaled_schedule(400, 200) == [
        "SOLVER.MAX_ITER", 400, "SOLVER.WARMUP_ITERS", 200, "SOLVER.STEPS", (309, 373)
    ]  # fmt: skip


def test_each_pair_of_the_detectors_section_differs_only_in_dw(tmp_path):
    differing = {
        "fcos": ("MODEL.META_ARCHITECTURE", "FCOS", "DWLossFCOS"),
        "retinanet": ("MODEL.META_ARCHITECTURE", "RetinaNet", "DWRetinaNet"),
        "rpn": ("MODEL.PROPOSAL_GENERATOR.NAME", "RPN", "DWRPN"),
    }
    for pair, (original, dw) in detectors.PAIRS.items():
        a, b = (pairs.pair_cfg(m, 5, TINY, tmp_path) for m in (original, dw))
        key, name_a, name_b = differing[pair]
        a.merge_from_list([key, name_b])
        assert a.dump() == b.dump(), pair
        assert b.SEED == 5 and b.SOLVER.MAX_ITER == 2 and b.INPUT.MIN_SIZE_TRAIN == (64,)
    rpn = pairs.pair_cfg("faster_rcnn", 0, TINY, tmp_path)
    assert rpn.MODEL.PROPOSAL_GENERATOR.NAME == "RPN"
    assert rpn.MODEL.RESNETS.DEPTH == 18 and rpn.MODEL.ROI_HEADS.NUM_CLASSES == 6
    retinanet = pairs.pair_cfg("retinanet", 0, TINY, tmp_path)
    assert retinanet.MODEL.META_ARCHITECTURE == "RetinaNet"


def run_record(member, seed, ap, recall=None):
    record = {"member": member, "seed": seed, "metrics": {"low": dict.fromkeys(
        ("AP", "AP50", "AP75", "APs", "APm", "APl"), ap)}, "s_per_iter": 1.0}  # fmt: skip
    if recall is not None:
        record["recall"] = {"AR@100": recall, "AR@1000": recall + 10}
    return record


def test_pair_table_pairs_seeds_and_counts_diverged_runs():
    runs = [
        run_record("faster_rcnn", 0, 20.0, 40.0),
        run_record("faster_rcnn_dw_rpn", 0, 18.0, 41.0),
        run_record("faster_rcnn", 1, 30.0, 50.0),
        {**pairs.diverged_result("Loss became NaN"), "member": "faster_rcnn_dw_rpn", "seed": 1},
    ]
    keys, rows = pairs.metric_rows(runs, "rpn")
    assert keys[-3:] == ["AR@100", "AR@1000", "diverged"]
    by_name = {row[0]: row for row in rows}
    # The original over both seeds: AP mean 25, sample std 7.07; DW over its finished seed.
    assert by_name["Faster R-CNN (d2)"][1] == "25.0 ± 7.1"
    assert by_name["Faster R-CNN, DW-RPN"][1] == "18.0 ± 0.0"
    assert by_name["Faster R-CNN, DW-RPN"][-1] == "1/2"
    # Paired by seed, the diverged seed left out: AP 18 - 20, AR@100 41 - 40.
    assert by_name["  DW - original"][1] == "-2.0 (-2.0..-2.0)"
    assert by_name["  DW - original"][keys.index("AR@100") + 1] == "+1.0 (+1.0..+1.0)"

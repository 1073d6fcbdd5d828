"""The pretrained section of tools/benchmark.py on hand-made numbers: curves read from
detectron2's metrics.json, the plateau check, the pair table, the runs' overrides."""

import argparse
import json

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from benchmarks import pretrained
from benchmarks.pretrained import (
    PAIRS,
    check_opts,
    config_of,
    format_pairs,
    format_time_to_accuracy,
    iterations_to_reach,
    last_half_ap,
    pair_speed,
    plateau,
    proposal_recall,
    read_curve,
    run_options,
)
from dual_weighting.data import register_synthetic
from sample_data.shapes import generate_synthetic_coco


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
    args = argparse.Namespace(
        pretrained_iters=300, eval_period=50, device="cpu", warmup_iters=None, opts=[]
    )
    opts = run_options(2, args, "out/x")
    pairs = dict(zip(opts[::2], opts[1::2]))
    assert pairs["SOLVER.MAX_ITER"] == "300" and pairs["SOLVER.STEPS"] == "(240,)"
    assert pairs["SEED"] == "2" and pairs["TEST.EVAL_PERIOD"] == "50"
    assert "SOLVER.WARMUP_ITERS" not in pairs
    args.warmup_iters = 0
    assert dict(zip(*[iter(run_options(0, args, "o"))] * 2))["SOLVER.WARMUP_ITERS"] == "0"


def test_user_overrides_come_last_so_they_win_and_unknown_keys_stop_before_any_run():
    args = argparse.Namespace(
        pretrained_iters=300, eval_period=50, device="cpu", warmup_iters=None,
        opts=["SOLVER.CLIP_GRADIENTS.ENABLED", "True", "SOLVER.STEPS", "(100,)"],
    )  # fmt: skip
    opts = run_options(0, args, "o")
    assert opts[-4:] == args.opts
    # yacs merges left to right: the user's SOLVER.STEPS replaces the section's (240,).
    assert config_of(PAIRS["fcos"][1], opts[2:]).SOLVER.STEPS == (100,)
    check_opts(PAIRS["rpn"], args.opts)
    with pytest.raises(SystemExit, match="--opts: .*SOLVER.CLIP_GRADIENT"):
        check_opts(PAIRS["rpn"], ["SOLVER.CLIP_GRADIENT", "True"])


def test_last_half_mean_and_time_to_accuracy_on_a_hand_made_curve():
    original = [[50, {"AP": 3.0}], [100, {"AP": 8.0}], [150, {"AP": 9.0}], [200, {"AP": 8.6}]]
    with_dw = [[50, {"AP": 4.0}], [100, {"AP": 8.7}], [150, {"AP": 8.2}], [200, {"AP": 9.4}]]
    # The last two evaluations of four: (9.0 + 8.6) / 2; of three: the last two of 3.0, 8.0, 9.0.
    assert last_half_ap(original) == pytest.approx(8.8)
    assert last_half_ap(original[:3]) == pytest.approx(8.5)
    # DW first reaches the original's final 8.6 at iteration 100; 9.5 it never reaches.
    assert iterations_to_reach(with_dw, 8.6) == 100
    assert iterations_to_reach(with_dw, 9.5) is None
    a, b = PAIRS["fcos"]
    records = [
        {"config": a, "seed": 0, "curve": original, "metrics": original[-1][1]},
        {"config": b, "seed": 0, "curve": with_dw, "metrics": with_dw[-1][1]},
        {"config": a, "seed": 1, "curve": with_dw, "metrics": {"AP": 9.5}},
        {"config": b, "seed": 1, "curve": original, "metrics": original[-1][1]},
    ]
    text = format_time_to_accuracy(records, ["fcos"])
    assert "fcos seed 0: original's final AP 8.6: iteration 100 of 200" in text
    assert "fcos seed 1: original's final AP 9.5: not reached" in text


def test_rpn_rows_carry_the_proposal_recall():
    a, b = PAIRS["rpn"]
    records = [
        _record(a, 0, 20.0, metrics={"AP": 20.0, "AR@100": 40.0, "AR@1000": 50.0}),
        _record(b, 0, 20.0, metrics={"AP": 21.0, "AR@100": 43.5, "AR@1000": 50.0}),
    ]
    rows = {line.split("  ")[0]: line for line in format_pairs(records, ["rpn"]).splitlines()}
    assert rows["rpn AR@100"].rstrip().endswith("+3.5")
    assert "40.0 ± 0.0" in rows["rpn AR@100"] and "43.5 ± 0.0" in rows["rpn AR@100"]
    assert rows["rpn AP"].rstrip().endswith("+1.0")


@pytest.fixture(scope="module")
def tiny_dataset_opts(tmp_path_factory):
    """Overrides that put the configs of configs/trees/ on 2 + 1 generated images of 64 x 96
    (6 classes)."""
    root = tmp_path_factory.mktemp("pretrained_tiny")
    generate_synthetic_coco(
        root, num_train=2, num_val=1, image_size=(64, 96), objects_per_image=(2, 3)
    )
    train, val = register_synthetic(root, prefix="t_pretrained")
    return [
        "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)",
        "MODEL.ROI_HEADS.NUM_CLASSES", "6", "SOLVER.IMS_PER_BATCH", "2",
    ]  # fmt: skip


def test_proposal_recall_evaluates_the_saved_rpn(tmp_path, tiny_dataset_opts):
    config = PAIRS["rpn"][1]
    seed_all_rng(0)
    model = build_model(config_of(config, ["MODEL.DEVICE", "cpu", *tiny_dataset_opts]))
    torch.save({"model": model.state_dict()}, tmp_path / "model_final.pth")
    recall = proposal_recall(config, tmp_path, "cpu", tiny_dataset_opts)
    assert set(recall) == {"AR@100", "AR@1000"}
    # It runs outside train_net.py, so it registers the configs' datasets itself.
    assert "deepforest_trees_val" in DatasetCatalog.list()
    # Random weights: up to 1000 proposals still cover part of 2-3 objects on 64 x 96.
    assert 0 <= recall["AR@100"] <= recall["AR@1000"] <= 100 and recall["AR@1000"] > 0


def test_pair_speed_times_both_detectors_of_a_pair(tiny_dataset_opts):
    args = argparse.Namespace(device="cpu", warmup=0, repeats=2)
    (ratios,) = pair_speed(args, ["rpn"], tiny_dataset_opts).values()
    step, inference, memory = ratios
    assert step > 0 and inference > 0 and (memory is None or memory > 0)


def test_pair_speed_times_each_detector_from_its_imagenet_weights_at_the_first_lr(
    monkeypatch, tiny_dataset_opts
):
    timed = {}

    def fake_measure(models, batch, device, warmup, repeats):
        timed.update(models)
        return {n: {"train_s": [1.0], "train_mib": [None], "infer_s": [1.0]} for n in models}

    monkeypatch.setattr(pretrained, "measure_speed", fake_measure)
    args = argparse.Namespace(device="cpu", warmup=0, repeats=1)
    pair_speed(args, ["fcos"], tiny_dataset_opts)
    assert set(timed) == set(PAIRS["fcos"])
    key = "backbone.bottom_up.body.conv_stem.weight"
    for cfg, model in timed.values():
        # The config's lr 0.01 times its warm-up factor 0.001: a run's first step.
        assert cfg.SOLVER.BASE_LR == pytest.approx(1e-5)
        imagenet = torch.load(cfg.MODEL.WEIGHTS, weights_only=False)["model"][key]
        assert torch.equal(model.state_dict()[key], imagenet)


def test_no_seeds_trains_nothing_and_only_times_the_pairs(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(pretrained, "train", lambda *a: pytest.fail("a run was trained"))
    monkeypatch.setattr(
        pretrained, "pair_speed", lambda args, pairs, opts: dict.fromkeys(pairs, (1.05, 0.9, None))
    )
    args = argparse.Namespace(
        seeds=[], pretrained_pairs=["fcos", "rpn"], pair_speed=True, repeats=10, warmup=2,
        device="cpu", output_dir=str(tmp_path), opts=[],
    )  # fmt: skip
    out = {}
    pretrained.run_pretrained(args, out)
    printed = capsys.readouterr().out
    assert out["pretrained"] == [] and out["pretrained_speed"]["rpn"] == (1.05, 0.9, None)
    assert "fcos  " in printed and "1.050x" in printed and "0.900x" in printed
    assert "Time to accuracy" not in printed and not list(tmp_path.iterdir())  # no curves


def test_warmup_section_runs_each_warmup_to_its_own_folder_and_tables_the_outcome(
    monkeypatch, capsys
):
    calls = []

    def fake_train(config, seed, args):
        calls.append((config, seed, args.warmup_iters, args.pretrained_iters, args.output_dir))
        if config == PAIRS["fcos"][1] and args.warmup_iters == 0:
            return {"diverged": "FloatingPointError: DWFCOS training collapsed at iteration=46"}
        if config == PAIRS["fcos"][0] and args.warmup_iters == 0:
            return {"metrics": {"AP": float("nan")}}
        return {"metrics": {"AP": 7.25}}

    monkeypatch.setattr(pretrained, "train", fake_train)
    args = argparse.Namespace(
        warmups=[0, 50], after_warmup=100, seeds=[0], pretrained_pairs=["fcos"], output_dir="o",
        opts=[],
    )  # fmt: skip
    out = {}
    pretrained.run_warmup(args, out)
    original, with_dw = PAIRS["fcos"]
    assert calls == [
        (original, 0, 0, 100, "o/warmup0"), (with_dw, 0, 0, 100, "o/warmup0"),
        (original, 0, 50, 150, "o/warmup50"), (with_dw, 0, 50, 150, "o/warmup50"),
    ]  # fmt: skip
    assert out["warmup"][with_dw] == {
        "0 seed 0": "FloatingPointError: DWFCOS training collapsed at iteration=46",
        "50 seed 0": "AP 7.2",
    }
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith(with_dw))
    assert "collapsed at iteration=46" in row and row.rstrip().endswith("AP 7.2")
    # NaN AP: the detector kept no box above its threshold.
    row = next(line for line in lines if line.startswith(original + " "))
    assert "no detections" in row and row.rstrip().endswith("AP 7.2")

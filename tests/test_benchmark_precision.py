"""The speed section's precisions (``benchmarks.precision``): float32 and bfloat16
models timed in the same rounds on CPU, the forward really in bfloat16, detectron2's FCOS
trainable under autocast, the tables' ratio columns on hand-made numbers, refusals of what a
device cannot run, and tools/benchmark.py's options, run as a command at a tiny size."""

import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.utils.events import EventStorage
from helpers import REPO, printed_numbers, table_line

from benchmarks import detectors, precision, speed


def test_every_precision_and_variant_is_timed_in_the_same_rounds():
    models = speed.build_speed_models(
        detectors.SMALL_CONFIG, [], ["fcos", "dw_refine"], "cpu", precisions=["fp32", "bf16"]
    )
    assert models["fp32"]["dw_refine"][1].head.box_refine
    dtypes = {}
    for p, by_variant in models.items():
        for v, (_, model) in by_variant.items():
            # The dtype a backbone convolution computes in, per model.
            stem = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
            stem.register_forward_hook(lambda m, i, o, key=(p, v): dtypes.__setitem__(key, o.dtype))
    a = models["fp32"]["dw_refine"][1].state_dict()
    b = models["bf16"]["dw_refine"][1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same model
    batch = speed.synthetic_batch(2, 64, 96, 6, boxes_per_image=3, seed=0)
    results = speed.measure_speed(models, batch, "cpu", warmup=1, repeats=2)
    assert dtypes == {
        ("fp32", "fcos"): torch.float32,
        ("fp32", "dw_refine"): torch.float32,
        ("bf16", "fcos"): torch.bfloat16,
        ("bf16", "dw_refine"): torch.bfloat16,
    }
    # Every model in every precision, in the order asked, once each round.
    assert list(results) == ["fp32", "bf16"]
    for by_variant in results.values():
        assert list(by_variant) == ["fcos", "dw_refine"]
        for r in by_variant.values():
            assert len(r["train_s"]) == len(r["train_mib"]) == len(r["infer_s"]) == 2
            assert all(m is None or m > 0 for m in r["train_mib"])
            assert r["finite"] == [True, True]  # the 2 timed steps, not the warm-up
    # Per row: train s/it, inference ms and train MiB, each with its ratio to FCOS and to fp32;
    # every loss finite. FCOS against itself and fp32 against itself: ratio 1.
    table = speed.format_speed(results, "tiny")
    for p in ("fp32", "bf16"):
        fcos, dw = table_line(table, "FCOS", "(d2)", p), table_line(table, "DW+refine", p)
        assert "yes" in fcos.split() and "yes" in dw.split()
        train_to_fcos, infer_to_fcos = printed_numbers(fcos)[1], printed_numbers(fcos)[4]
        assert train_to_fcos == infer_to_fcos == 1.0
    for row in (table_line(table, "FCOS", "(d2)", "fp32"), table_line(table, "DW+refine", "fp32")):
        train_to_fp32, infer_to_fp32 = printed_numbers(row)[2], printed_numbers(row)[5]
        assert train_to_fp32 == infer_to_fp32 == 1.0


def test_fcos_losses_run_in_float32_under_autocast():
    cfg = detectors.make_cfg(detectors.SMALL_CONFIG, "fcos")
    model = precision.float32_losses(detectors.build_detector(cfg), "cpu")
    batch = speed.synthetic_batch(1, 64, 96, 6, boxes_per_image=2, seed=1)
    with EventStorage(), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch)
    assert {v.dtype for v in losses.values()} == {torch.float32}
    assert all(torch.isfinite(v) for v in losses.values())


def test_mixed_precision_table_on_hand_made_numbers():
    def result(train_s, infer_s, mib, finite=(True, True)):
        return {"train_s": train_s, "infer_s": infer_s, "train_mib": mib, "finite": list(finite)}

    results = {
        "fp32": {
            "fcos": result([1.0, 2.0], [0.1, 0.1], [100]),
            "dw": result([1.0, 1.0], [0.2, 0.1], [80]),
        },
        "fp16": {
            "fcos": result([0.5, 0.5], [0.05, 0.05], [50]),
            "dw": result([0.4, 0.6], [0.05, 0.1], [None], finite=(True, False)),
        },
    }
    table = speed.format_speed(results, "title")
    # Each of train s/it, inference ms and train MiB, then its ratios to FCOS (same precision)
    # and to the same detector in fp32. fp16 DW: train 0.5 s, to FCOS fp16 (0.8, 1.2) -> 1.0,
    # to DW fp32 (0.4, 0.6) -> 0.5; inference 75 ms, (1, 2) -> 1.5, (0.25, 1) -> 0.625; memory
    # unmeasured (no number); a loss not finite.
    fp16 = table_line(table, "DW", "fp16")
    assert printed_numbers(fp16) == [0.5, 1.0, 0.5, 75, 1.5, 0.625] and "NO" in fp16.split()
    # fp32 DW: train to FCOS (1, 0.5) -> 0.75; inference 150 ms, (2, 1) -> 1.5; 80 MiB of 100.
    fp32 = table_line(table, "DW", "fp32")
    assert printed_numbers(fp32) == [1.0, 0.75, 1.0, 150, 1.5, 1.0, 80, 0.8, 1.0]
    assert "yes" in fp32.split()
    groups = speed.ratio_groups({"r50": {"results": results}})
    assert groups["r50 train step"] == {"DW": 0.75}
    assert groups["r50 fp16 inference"] == {"DW": 1.5}
    assert groups["r50 fp16 train memory"] == {"DW": None}


def test_a_precision_the_device_cannot_run_is_refused():
    precision.check_precision("fp32", "meta")  # plain float32 runs anywhere
    with pytest.raises(ValueError, match="Precision 'fp16' is not supported on device 'meta'"):
        precision.check_precision("fp16", "meta")
    with pytest.raises(ValueError, match=r"Unknown precision 'fp8'.*'bf16'"):
        precision.check_precision("fp8", "cpu")
    # torch disables CPU autocast for float64 with only a warning; here that is a refusal.
    assert "does not run in torch.float64" in precision.autocast_refusal("cpu", torch.float64)
    assert precision.autocast_refusal("cpu", torch.bfloat16) is None
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'bf16' .* 'cuda': CUDA is not available"):
            speed.build_speed_models(
                detectors.SMALL_CONFIG, [], ["dw"], "cuda", precisions=["bf16"]
            )


def _run(*args):
    return subprocess.run(
        [sys.executable, "tools/benchmark.py", *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
    )


def test_benchmark_tool_times_each_precision(tmp_path):
    proc = _run(
        "speed", "--speed-settings", "small", "--speed-variants", "fcos,dw",
        "--speed-precisions", "fp32,bf16", "--channels-last", "--repeats", "1", "--warmup", "0",
        "--batch", "2", "--min-size", "64", "--max-size", "96", "--threads", "1",
        "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # A row per detector and precision, every loss finite.
    for variant in (["FCOS", "(d2)"], ["DW"]):
        for p in ("fp32", "bf16"):
            assert "yes" in table_line(proc.stdout, *variant, p).split()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["args"]["speed_precisions"] == ["fp32", "bf16"]
    assert results["args"]["channels_last"] is True
    assert set(results["speed"]["small"]["results"]) == {"fp32", "bf16"}

    refused = _run("speed", "--device", "meta", "--speed-precisions", "fp32,fp16")
    assert refused.returncode != 0
    assert "Precision 'fp16' is not supported on device 'meta'" in refused.stderr

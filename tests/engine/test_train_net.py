"""train_net.py as users run it (subprocesses): train, evaluate, resume, two CPU workers, errors.

A tiny ResNet-18-FPN (32 channels) on 128-pixel images of a small generated dataset keeps each
run to seconds.
"""

import os
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO, read_metrics, registrations, run_train_net, train_net_args

from sample_data.shapes import generate_synthetic_coco

# Every test runs train_net.py in a subprocess.
pytestmark = pytest.mark.slow


def test_train_writes_checkpoint_and_metrics_then_eval_only_prints_ap(shapes_dataset, tmp_path):
    out = tmp_path / "run"
    proc = run_train_net(train_net_args(shapes_dataset, out, "SOLVER.CHECKPOINT_PERIOD", "2"))
    assert (out / "model_final.pth").is_file() and (out / "model_0000001.pth").is_file()
    records = read_metrics(out)
    train = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in train][-1] == 3
    assert {"loss_cls_pos", "loss_loc", "loss_cls_neg", "lr"} <= set(train[-1])
    assert any("bbox/AP" in r for r in records)  # evaluation after the last iteration
    assert "eta:" in proc.stderr + proc.stdout

    proc = run_train_net(
        ["--eval-only"]
        + train_net_args(
            shapes_dataset, tmp_path / "eval", "MODEL.WEIGHTS", str(out / "model_final.pth")
        )
    )
    log = proc.stdout + proc.stderr
    assert f"Loading from {out / 'model_final.pth'}" in log
    assert "Evaluation results for t_val in csv format" in log
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log
    assert "COCOeval backend: faster_coco_eval" in log  # the default where it is installed

    # pycocotools forced, and 3 images a batch: the same numbers (tests/layers/test_padding.py
    # checks batches of mixed sizes).
    proc = run_train_net(
        ["--eval-only"]
        + train_net_args(shapes_dataset, tmp_path / "eval_pycocotools", "MODEL.WEIGHTS",
                    str(out / "model_final.pth"), "TEST.COCO_EVAL", "pycocotools",
                    "TEST.IMS_PER_BATCH", "3")
    )  # fmt: skip
    forced = proc.stdout + proc.stderr
    assert "COCOeval backend: pycocotools" in forced
    assert copypaste_numbers(forced) == copypaste_numbers(log)

    # The release's test pipeline at another size than the images' (so boxes are rescaled):
    # post-processed the release's way (rescaled before the NMS) or detectron2's, the AP is that
    # of one model up to the few boxes the NMS frame and the second clip decide.
    aps = []
    for release in ("True", "False"):
        proc = run_train_net(
            ["--eval-only"]
            + train_net_args(shapes_dataset, tmp_path / f"eval_release_{release}", "MODEL.WEIGHTS",
                        str(out / "model_final.pth"), "INPUT.MIN_SIZE_TEST", "160",
                        "INPUT.MAX_SIZE_TEST", "200", "INPUT.RELEASE_RESIZE_TEST", "True",
                        "MODEL.DW.RELEASE_POSTPROCESS_TEST", release)
        )  # fmt: skip
        aps.append(float(copypaste_numbers(proc.stdout + proc.stderr).split(",")[0]))
    assert abs(aps[0] - aps[1]) < 1.0, aps


def copypaste_numbers(log):
    """The AP numbers of detectron2's "copypaste:" line that follows the metric names."""
    lines = log.splitlines()
    header = next(i for i, line in enumerate(lines) if "copypaste: AP,AP50" in line)
    return lines[header + 1].split("copypaste: ")[1]


def test_resume_after_kill_continues_iteration_optimizer_and_schedule(shapes_dataset, tmp_path):
    out = tmp_path / "run"
    opts = ("SOLVER.CHECKPOINT_PERIOD", "4", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()")
    # Killed as soon as the checkpoint of iteration 3 is on disk, long before its max_iter.
    killed = subprocess.Popen(
        [sys.executable, str(REPO / "train_net.py"),
         *train_net_args(shapes_dataset, out, *opts, max_iter=400)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    try:
        while killed.poll() is None and not (out / "last_checkpoint").is_file():
            time.sleep(0.02)
    finally:
        killed.kill()
        killed.wait()
    assert (out / "last_checkpoint").read_text().strip() == "model_0000003.pth"
    saved = torch.load(out / "model_0000003.pth", map_location="cpu", weights_only=False)
    assert saved["iteration"] == 3 and saved["trainer"]["_trainer"]["optimizer"]["state"]

    proc = run_train_net(["--resume", *train_net_args(shapes_dataset, out, *opts, max_iter=6)])
    assert f"Loading from {out / 'model_0000003.pth'}" in proc.stdout + proc.stderr
    train = [r for r in read_metrics(out) if "total_loss" in r]
    assert train[-1]["iteration"] == 5
    assert train[-1]["lr"] == pytest.approx(0.02)  # past the 2 warm-up iterations
    resumed = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert resumed["iteration"] == 5
    # The scheduler went on from the saved state: two more steps, not six.
    scheduler = [c["trainer"]["hooks"]["LRScheduler"]["last_epoch"] for c in (saved, resumed)]
    assert scheduler[1] == scheduler[0] + 2


def test_two_cpu_workers_train_with_gloo(shapes_dataset, tmp_path):
    out = tmp_path / "ddp"
    proc = run_train_net(
        ["--num-gpus", "2", *train_net_args(shapes_dataset, out, "TEST.EVAL_PERIOD", "0")]
    )
    assert (out / "model_final.pth").is_file()
    assert "Rank of current process: 0. World size: 2" in proc.stdout + proc.stderr


def test_loss_falls_and_ap_is_positive_after_a_short_run(shapes_dataset, tmp_path):
    out = tmp_path / "learn"
    # Evaluated on the training images: a short run must at least fit what it has seen.
    run_train_net(train_net_args(shapes_dataset, out, "DATASETS.TEST", '("t_train",)', max_iter=60))
    train = [r for r in read_metrics(out) if "total_loss" in r]
    # metrics.json holds the median of each 20 iterations: 19, 39, 59.
    assert train[-1]["total_loss"] < 0.85 * train[0]["total_loss"]
    (final,) = [r for r in read_metrics(out) if "bbox/AP" in r]
    assert final["bbox/AP50"] > 0


@pytest.mark.parametrize(
    "problem, message",
    [
        (["--register-coco", "bad=/nonexistent/x.json:/tmp"], "/nonexistent/x.json"),
        (["--register-coco", "no-separator"], "no-separator"),
        (["DATASETS.TRAIN", '("not_registered",)'], "not_registered"),
    ],
)
def test_bad_datasets_are_named(shapes_dataset, tmp_path, problem, message):
    # Flags go before the trailing KEY VALUE overrides, as with detectron2's parser.
    flags, opts = (problem, []) if problem[0].startswith("--") else ([], problem)
    proc = run_train_net(
        flags + train_net_args(shapes_dataset, tmp_path / "bad", *opts), check=False
    )
    assert proc.returncode != 0
    assert message in proc.stderr


def test_unreadable_image_is_named(tmp_path):
    root = tmp_path / "broken"
    generate_synthetic_coco(root, num_train=2, num_val=1, image_size=(128, 160), seed=1)
    broken = sorted((root / "train").iterdir())[0]
    broken.write_bytes(b"not an image")
    proc = run_train_net(train_net_args(root, tmp_path / "out"), check=False)
    assert proc.returncode != 0
    assert broken.name in proc.stderr


LAZY_CONFIG = REPO / "configs" / "lazy" / "dw_R_18_FPN_synthetic_demo.py"


def tiny_lazy_args(dataset, output_dir, *extra_overrides, max_iter=4):
    """helpers.train_net_args for the LazyConfig twin of the demo config: the same model, data
    and solver."""
    augmentations = "dataloader.{}.mapper.augmentations.0"
    return [
        *registrations(dataset), "--config-file", str(LAZY_CONFIG),
        "dataloader.train.dataset.names=t_train", "dataloader.test.dataset.names=t_val",
        "model.backbone.out_channels=32",
        f"{augmentations.format('train')}.short_edge_length=[128]",
        f"{augmentations.format('train')}.max_size=160",
        f"{augmentations.format('test')}.short_edge_length=128",
        f"{augmentations.format('test')}.max_size=160",
        "dataloader.train.total_batch_size=2", f"train.max_iter={max_iter}",
        "optimizer.lr=0.02", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
        "train.seed=7", f"train.output_dir={output_dir}", *extra_overrides,
    ]  # fmt: skip


def test_lazy_config_trains_on_two_workers_resumes_and_evaluates(shapes_dataset, tmp_path):
    out = tmp_path / "lazy"
    proc = run_train_net(
        ["--num-gpus", "2", *tiny_lazy_args(shapes_dataset, out, "train.checkpointer.period=2")]
    )
    log = proc.stdout + proc.stderr
    assert "Rank of current process: 0. World size: 2" in log and "eta:" in log
    assert (out / "model_0000001.pth").is_file() and (out / "model_final.pth").is_file()
    train = [r for r in read_metrics(out) if "total_loss" in r]
    assert train[-1]["iteration"] == 3
    assert {"loss_cls_pos", "loss_loc", "loss_cls_neg", "lr"} <= set(train[-1])
    assert any("bbox/AP" in r for r in read_metrics(out))  # evaluation after the last iteration
    assert list(out.glob("events.out.tfevents.*"))  # TensorBoard

    proc = run_train_net(["--resume", *tiny_lazy_args(shapes_dataset, out, max_iter=6)])
    assert f"Loading from {out / 'model_final.pth'}" in proc.stdout + proc.stderr
    assert [r for r in read_metrics(out) if "total_loss" in r][-1]["iteration"] == 5

    # The run's saved config.yaml is a LazyConfig too: evaluate the final weights with it.
    weights = out / "model_final.pth"
    proc = run_train_net(
        ["--eval-only", *registrations(shapes_dataset), "--config-file", str(out / "config.yaml"),
         f"train.init_checkpoint={weights}", f"train.output_dir={tmp_path / 'eval'}"]
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert f"Loading from {weights}" in log
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log


def test_set_up_errors_stop_before_any_worker_with_one_paragraph(shapes_dataset, tmp_path):
    # yacs-style overrides given to a LazyConfig (tests/engine/test_checks.py covers every check).
    proc = run_train_net(
        [*tiny_lazy_args(shapes_dataset, tmp_path), "SOLVER.MAX_ITER", "10"], check=False
    )
    assert proc.returncode == 1
    (message,) = [line for line in proc.stderr.splitlines() if line.strip()][-1:]
    assert message.startswith("train_net.py: error: ") and "train.max_iter" in message
    assert "Traceback" not in proc.stderr

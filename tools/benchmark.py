#!/usr/bin/env python
"""Benchmark DW-FCOS against detectron2's own FCOS, side by side, in one run.

    python tools/benchmark.py                     # all sections at the default small setting
    python tools/benchmark.py accuracy --seeds 0,1,2,3,4
    python tools/benchmark.py accuracy --dataset trees --iters 400 --warmup-iters 200 \
        --min-size 256 --max-size 256 --eval-period 50   # real photographs (make benchmark-trees)
    python tools/benchmark.py speed --speed-settings r50 --device cuda
    python tools/benchmark.py losses --loss-args="--boxes 1,10,50,200"
    python tools/benchmark.py evaluation          # COCOeval backends at COCO's size
    python tools/benchmark.py batched             # test batch sizes (needs `make demo`'s model)
    python tools/benchmark.py export              # exported models against PyTorch eager
    python tools/benchmark.py detectors           # DW in detectron2's FCOS, RetinaNet, RPN
    python tools/benchmark.py quantization        # int8 ONNX (needs `make demo`'s model)

**The two detectors.** Both sit on the same backbone, this project's registered
``build_dw_resnet_fpn_backbone`` (ResNet-FPN, P3-P7, P6 from P5), built from the same config and,
for one seed, from the same random state, so they start with identical backbone and FPN weights.
detectron2's ``FCOS`` comes from its own model-zoo config ``COCO-Detection/fcos_R_50_FPN_1x.py``
with only the backbone swapped in and the head's depth, width, norm and class count matched to
DW's (``MODEL.DW.NUM_CONVS`` convs of ``FPN.OUT_CHANNELS`` channels, ``MODEL.DW.NORM``); the rest
is detectron2's (focal loss, center sampling 1.5, scale ranges, GIoU, centerness target, prior
0.01, no per-level scales, anchor offset 0). DW-FCOS keeps the release's defaults (DW_SPEC.md).
Both use the same pixel mean/std, solver, input sizes, batch, iterations and seeds.

**accuracy**: trains each detector (``--variants``, default FCOS and DW) for every seed of
``--seeds`` on the generated shapes dataset (``dual_weighting.data.ensure_synthetic``: 400 train
and 100 val images of 256x320, 6 classes) with the demo's model and solver
(``dw_R_18_FPN_synthetic_demo``: ResNet-18-FPN, 128 channels, 2-conv towers, from scratch,
trainable BN, batch 8, its SGD settings) but a shorter default run: images resized to 192x240
and ``--iters`` iterations, with warm-up (``--warmup-iters``, default min(50, iters / 4)) and lr
steps scaled to them (:func:`scaled_schedule`). ``--dataset trees`` trains and evaluates on real
aerial photographs instead: DeepForest's tree crowns (``dual_weighting.data.trees``: NEON
orthophotos boxed by people, 400x400 tiles, 133 training tiles, 12 held-out tiles of another
image; downloaded and converted on first use) with ``configs/dw_R_18_FPN_trees.yaml`` (the same
model, 1 class).
Training goes through ``DWTrainer`` (train_net.py's, a detectron2 ``DefaultTrainer``) and
evaluation through ``COCOEvaluator`` + ``inference_on_dataset``. The two detectors of one seed
see the same images in the same order with the same flips. Detections are scored once at a low
threshold and evaluated twice:

- ``own``: each detector's own default threshold. detectron2's FCOS keeps ``sqrt(cls * ctr) >
  0.2`` (its score is the square root), i.e. ``cls * ctr > 0.04``; DW keeps ``cls * ctr > 0.05``
  (the release). The square root does not change the ranking, so the two are nearly equal.
- ``low``: both keep ``cls * ctr > 0.0025`` (FCOS: ``sqrt > 0.05``, as COCO detectors usually
  are evaluated), so that neither short-trained detector loses recall to its threshold.

Filtering after NMS gives exactly what running the model at the higher threshold gives: the
per-level top-k, the greedy NMS and the final top-100 keep every higher-scoring box the same.
Mean, sample standard deviation and range over seeds are printed, the detections kept per
image (at most 100) and the per-seed paired difference DW - FCOS (same seed = same initial
backbone and data order). Every ``--eval-period`` iterations (0: only at the end) each run is
also evaluated (detectron2's ``EvalHook``, the torch random state restored after it so that
training is the same), and ``accuracy_ap_curves.png`` plots AP over iterations per detector and
seed. A run that stops on a ``FloatingPointError`` (detectron2's check on the losses, DW's on its
predictions or a collapsed assignment) is recorded as diverged (left out of the means, counted
in the tables) and the section goes on. For DW runs, every iteration's assignment is summarised
(``benchmarks/assignment_trace.py``: inside pairs, the fraction whose predicted box has IoU >=
0.5, boxes whose positive weights the eps clamp shrinks, negative weight inside boxes, largest
scores) and printed at a few iterations.

**speed**: per setting (``--speed-settings``), one model per variant (default FCOS, DW, DW with
box refine), random weights, synthetic images and 10 COCO-like random boxes per image (from
``tools/benchmark_losses.py``): seconds per training step (forward, backward, SGD step),
latency per image at inference and the peak memory of a training step. Steps of the models are
interleaved round by round, so load from other processes hits them alike; the ratio to FCOS is
the median over rounds of the two models' times in the same round. Inference runs with score
threshold 0 (every level sends its top 1000 candidates to NMS: the most post-processing either
model can do). Peak memory, probed around every timed training step and reported as the largest:
on CPU, the growth of the process's peak resident set size during the step (``VmHWM`` reset
through ``/proc/self/clear_refs``, after ``malloc_trim``, as ``tools/benchmark_losses.py``
measures); on CUDA, ``torch.cuda.max_memory_allocated`` above the step's start.
Settings: ``r50`` = R-50-FPN (Base-DW), 800x1216, batch 2, 80 classes; ``small`` =
the accuracy model at its input size and batch. ``speed_ratios.png`` shows the ratios as bars.

**losses**: runs ``tools/benchmark_losses.py`` (``dw_losses`` against the release's per-box loop).

**evaluation** (not part of "all"): generates COCO-sized ground truth and detections
(``--coco-images`` 5000 images shaped like COCO val2017, crowd boxes, images without boxes;
``--coco-dets`` 100 detections each), feeds them to ``DWCOCOEvaluator`` (detectron2's
``COCOEvaluator``) once per backend of ``--coco-backends`` and times ``process`` of every image,
``evaluate()`` and its COCOeval part; prints the speed-ups over the first backend and whether
the AP table, per-class AP and the 12 AP/AR numbers equal the first backend's (to 1e-6).
``evaluation_seconds.png`` shows the times.

**batched** (not part of "all"): the trained demo model (``--weights``, default ``make demo``'s
``output/demo/model_final.pth``) on the generated validation split through detectron2's test
loader at every batch size of ``--batch-sizes``: the split as it is (one image size), then with
mixed sizes (shorter side 160, 208 or 256 by image id) with the padding masked (the default),
plain, and masked with the images ordered by size: COCO AP, detections per image, the seconds
of the pass, and against the first batch size the images whose detection count differs,
detections without a same-class match at IoU 0.5 and the largest score and box difference of
matched ones. Then images per second of model calls at each batch size on the first
``--batched-images`` mapped images in each of those settings (``--warmup``, ``--repeats``
rounds, cases interleaved; ratio = median of same-round ratios to batch 1 of the same images).
``batched_images_per_s.png`` shows the rates.

**detectors** (not part of "all"): DW inside detectron2's own detectors, each against its
original at equal budget (``--pairs``: ``fcos`` detectron2's FCOS and DWLossFCOS, ``retinanet``
RetinaNet and DWRetinaNet, ``rpn`` Faster R-CNN with detectron2's RPN and with DWRPN), on the
accuracy section's data, model size, schedule, sizes and seeds (``benchmarks/pairs.py`` says how
RetinaNet and Faster R-CNN are made as small): box AP at a low score threshold, AR@100/AR@1000
of the RPN's proposals, the paired per-seed difference, runs that diverged, and each pair's
training-step time and peak-memory ratio measured interleaved; ``detectors.png`` shows mean AP
and AR. ``--resume`` reuses finished runs.

**quantization** (not part of "all"): the trained demo model (``--weights``) exported to ONNX
in float32 and int8 (``--quant-precisions``: static, calibrated on ``--calibration-images``
training images; dynamic), COCO AP of each on the generated validation split through ONNX
Runtime and PyTorch eager, file size, and latency per image over ``--quant-images`` images,
rounds interleaved, ratios to float32 ONNX Runtime.

**export** (not part of "all"): per setting of ``--export-settings`` (``r50``: R-50-FPN at
800x1216, 80 classes; ``r50_refine``: the same with box refine; ``demo``: the demo model at
256x320), a random-weight DW-FCOS at score threshold 0 exported to TorchScript (tracing) and
ONNX (``dual_weighting.export``): latency of one image through PyTorch eager, the TorchScript
module and ONNX Runtime (torch's thread count; its CUDA provider on ``--device cuda`` where
onnxruntime-gpu has one), rounds interleaved, ratio = median of same-round ratios to eager; the
export time and whether each exported model's detections equal eager's.

**soak** (not part of "all"; about 20 minutes on 2 cores): trains DW-FCOS twice with one seed,
``--soak-iters`` (2000) iterations each, with the demo's model and solver at batch
``--soak-batch`` (2, lr scaled linearly) on 128x160 images of the generated dataset. Prints
whether every loss was finite, the resident set size of the process and its data-loader workers
(sampled every ``--soak-rss-period`` iterations) and its growth after the first quarter of the
run, AP, and the largest difference between the two runs' loss curves (0 = identical).

Every result is also written to ``OUTPUT_DIR/results.json`` and the pictures (PNG) next to it;
training logs, ``metrics.json`` and ``result.json`` of each accuracy run go to
``OUTPUT_DIR/accuracy/<variant>_seed<k>/``, and ``--resume`` reuses the finished ones whose
config is unchanged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from benchmarks.accuracy import run_accuracy
from benchmarks.batched import run_batched
from benchmarks.coco_eval import run_coco_eval
from benchmarks.detectors import PAIRS, REPO, VARIANTS
from benchmarks.export_speed import export_settings, run_export_speed
from benchmarks.pairs import run_pairs
from benchmarks.precision import PRECISIONS as SPEED_PRECISIONS
from benchmarks.precision import check_precision
from benchmarks.quantization import run_quantization
from benchmarks.report import environment
from benchmarks.soak import run_soak
from benchmarks.speed import run_speed, speed_settings
from dual_weighting.evaluation import COCOEVAL_BACKENDS
from dual_weighting.export.quantize import PRECISIONS as QUANT_PRECISIONS


def run_losses(args, out):
    """Run tools/benchmark_losses.py with ``args.loss_args`` in a fresh process (its memory
    numbers then do not depend on what the other sections left allocated)."""
    command = [sys.executable, str(REPO / "tools" / "benchmark_losses.py"), *args.loss_args.split()]
    print("  $ " + " ".join(["python tools/benchmark_losses.py", *args.loss_args.split()]))
    proc = subprocess.run(command, check=True, capture_output=True, text=True)
    print(proc.stdout, flush=True)
    out["losses"] = proc.stdout


def _csv(kind):
    def parse(text):
        return [kind(x) for x in text.split(",") if x]

    return parse


def argument_parser():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "section",
        nargs="?",
        default="all",
        choices=(
            "all",
            "accuracy",
            "speed",
            "losses",
            "detectors",
            "evaluation",
            "batched",
            "export",
            "quantization",
            "soak",
        ),
        help="what to run (default: all = accuracy, speed, losses; detectors, evaluation, "
        "batched, export, quantization and soak run alone)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--output-dir", default=str(REPO / "output" / "benchmark"))
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse accuracy and detectors runs already finished in OUTPUT_DIR with the same "
        "config (marked 'reused'), e.g. after an interrupted run",
    )
    a = p.add_argument_group("accuracy")
    a.add_argument(
        "--dataset",
        choices=("synthetic", "trees"),
        default="synthetic",
        help="synthetic: the generated shapes (default); trees: real aerial photographs of tree "
        "crowns (DeepForest's, downloaded and converted on first use)",
    )
    a.add_argument("--seeds", type=_csv(int), default=[0, 1, 2], help="default 0,1,2")
    a.add_argument(
        "--variants",
        type=_csv(str),
        default=["fcos", "dw"],
        help="of fcos,fcos_dw (detectron2's FCOS with DW's losses),dw,dw_refine",
    )
    a.add_argument("--iters", type=int, default=120, help="training iterations (demo: 220)")
    a.add_argument(
        "--warmup-iters",
        type=int,
        help="lr warm-up iterations (default: min(50, iters / 4); also the detectors section)",
    )
    a.add_argument("--batch", type=int, default=8, help="images per batch (also 'small' speed)")
    a.add_argument("--min-size", type=int, default=192, help="shorter image side (demo: 256)")
    a.add_argument("--max-size", type=int, default=240, help="longer side cap (demo: 320)")
    a.add_argument(
        "--eval-period", type=int, default=40, help="iterations between AP evaluations (0: end)"
    )
    d = p.add_argument_group("detectors (also uses the accuracy and speed options)")
    d.add_argument(
        "--pairs",
        type=_csv(str),
        default=list(PAIRS),
        help=f"of {','.join(PAIRS)}: detectron2's detector and the same with DW (default: all)",
    )
    s = p.add_argument_group("speed")
    s.add_argument(
        "--speed-settings", type=_csv(str), default=["small", "r50"], help="of small,r50"
    )
    s.add_argument(
        "--speed-variants",
        type=_csv(str),
        default=["fcos", "dw", "dw_refine"],
        help="of fcos,dw,dw_refine (ratios are to fcos)",
    )
    s.add_argument(
        "--speed-precisions",
        type=_csv(str),
        default=["fp32"],
        help=f"of {','.join(SPEED_PRECISIONS)}: fp16/bf16 under autocast as detectron2's "
        "AMPTrainer (SOLVER.AMP.ENABLED) trains, ratios also to fp32 (default: fp32)",
    )
    s.add_argument(
        "--channels-last", action="store_true", help="speed models in channels_last memory format"
    )
    s.add_argument("--boxes", type=int, default=10, help="random boxes per image")
    s.add_argument("--warmup", type=int, default=1, help="untimed rounds first (also batched)")
    s.add_argument("--repeats", type=int, default=3, help="timed rounds, median (also batched)")
    los = p.add_argument_group("losses")
    los.add_argument(
        "--loss-args",
        default="--boxes 10,50 --repeats 3",
        help="arguments of tools/benchmark_losses.py, given as --loss-args='...' "
        "(default: %(default)s)",
    )
    e = p.add_argument_group("evaluation")
    e.add_argument("--coco-images", type=int, default=5000, help="generated images")
    e.add_argument("--coco-dets", type=int, default=100, help="detections per image")
    e.add_argument(
        "--coco-backends",
        type=_csv(str),
        default=["pycocotools", "faster_coco_eval"],
        help=f"of {','.join(COCOEVAL_BACKENDS)}, the first is the reference (default: "
        "pycocotools,faster_coco_eval)",
    )
    b = p.add_argument_group("batched")
    b.add_argument(
        "--batch-sizes",
        type=_csv(int),
        default=[1, 4, 8],
        help="the first is the reference (default: 1,4,8)",
    )
    b.add_argument(
        "--batched-images", type=int, default=24, help="images of a timed round (default 24)"
    )
    b.add_argument(
        "--weights",
        type=Path,
        default=REPO / "output" / "demo" / "model_final.pth",
        help="the demo model's checkpoint (default: make demo's)",
    )
    x = p.add_argument_group("export")
    x.add_argument(
        "--export-settings",
        type=_csv(str),
        default=["r50", "demo"],
        help="of r50,r50_refine,demo (default: r50,demo)",
    )
    q = p.add_argument_group("quantization (also uses --weights, --warmup, --repeats)")
    q.add_argument(
        "--quant-precisions",
        type=_csv(str),
        default=list(QUANT_PRECISIONS),
        help=f"of {','.join(QUANT_PRECISIONS)}, fp32 first (the reference)",
    )
    q.add_argument(
        "--calibration-images", type=int, default=32, help="training images for static int8"
    )
    q.add_argument("--quant-images", type=int, default=10, help="images of a timed round")
    k = p.add_argument_group("soak")
    k.add_argument("--soak-iters", type=int, default=2000, help="iterations of each of two runs")
    k.add_argument("--soak-batch", type=int, default=2, help="images per batch")
    k.add_argument("--soak-min-size", type=int, default=128, help="shorter image side")
    k.add_argument("--soak-max-size", type=int, default=160, help="longer side cap")
    k.add_argument("--soak-seed", type=int, default=0)
    k.add_argument("--soak-rss-period", type=int, default=100, help="iterations between samples")
    return p


def main(argv=None):
    args = argument_parser().parse_args(argv)
    # Noise from inside torch and detectron2 that says nothing about the benchmark.
    warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
    warnings.filterwarnings("ignore", message="The 'warn' method", category=DeprecationWarning)
    for name in (*args.variants, *args.speed_variants):
        if name not in VARIANTS:
            raise SystemExit(f"Unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    if args.quant_precisions[:1] != ["fp32"] or not set(args.quant_precisions) <= set(
        QUANT_PRECISIONS
    ):
        raise SystemExit(f"--quant-precisions: fp32 first, then of {sorted(QUANT_PRECISIONS)}")
    for name in args.pairs:
        if name not in PAIRS:
            raise SystemExit(f"Unknown pair {name!r}; choose from {sorted(PAIRS)}")
    for name in args.speed_settings:
        if name not in speed_settings(args):
            raise SystemExit(
                f"Unknown speed setting {name!r}; choose from {sorted(speed_settings(args))}"
            )
    for name in args.speed_precisions:
        try:
            check_precision(name, args.device)
        except ValueError as e:
            raise SystemExit(str(e)) from e
    for name in args.export_settings:
        if name not in export_settings():
            raise SystemExit(
                f"Unknown export setting {name!r}; choose from {sorted(export_settings())}"
            )
    for name in args.coco_backends:
        if name not in COCOEVAL_BACKENDS:
            raise SystemExit(f"Unknown COCOeval backend {name!r}; choose from {COCOEVAL_BACKENDS}")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["python tools/benchmark.py", *sys.argv[1:]])
    out = {"environment": environment(args.device, command), "args": vars(args)}
    env = out["environment"]
    print(
        f"{env['date']}  {env['command']}\n"
        f"CPU: {env['cpu']}, {env['cpus_usable']} usable cores, torch {env['torch']} "
        f"({env['torch_threads']} threads), detectron2 {env['detectron2']}, Python "
        f"{env['python']}, device {env['device']}{', ' + env['gpu'] if 'gpu' in env else ''}, "
        f"nice {env['niceness']}\n",
        flush=True,
    )
    sections = {
        "accuracy": run_accuracy,
        "speed": run_speed,
        "losses": run_losses,
        "detectors": run_pairs,
        "evaluation": run_coco_eval,
        "batched": run_batched,
        "export": run_export_speed,
        "quantization": run_quantization,
        "soak": run_soak,
    }
    alone = ("detectors", "evaluation", "batched", "export", "quantization", "soak")
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name, fn in sections.items():
        if args.section == name or (args.section == "all" and name not in alone):
            print(f"== {name} ==", flush=True)
            section_start = time.perf_counter()
            fn(args, out)
            print(f"({name}: {time.perf_counter() - section_start:.0f} s)\n", flush=True)
    out["total_s"] = time.perf_counter() - start
    with open(Path(args.output_dir) / "results.json", "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"Total {out['total_s'] / 60:.1f} min; results in {args.output_dir}/results.json")
    return out


if __name__ == "__main__":
    main()

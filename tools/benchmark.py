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
from benchmarks.detectors import REPO
from benchmarks.export_speed import run_export_speed
from benchmarks.options import ALONE, SECTIONS, argument_parser, check_args
from benchmarks.pairs import run_pairs
from benchmarks.quantization import run_quantization
from benchmarks.report import environment
from benchmarks.soak import run_soak
from benchmarks.speed import run_speed


def run_losses(args, out):
    """Run tools/benchmark_losses.py with ``args.loss_args`` in a fresh process (its memory
    numbers then do not depend on what the other sections left allocated)."""
    command = [sys.executable, str(REPO / "tools" / "benchmark_losses.py"), *args.loss_args.split()]
    print("  $ " + " ".join(["python tools/benchmark_losses.py", *args.loss_args.split()]))
    proc = subprocess.run(command, check=True, capture_output=True, text=True)
    print(proc.stdout, flush=True)
    out["losses"] = proc.stdout


def main(argv=None):
    args = argument_parser(__doc__).parse_args(argv)
    # Noise from inside torch and detectron2 that says nothing about the benchmark.
    warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
    warnings.filterwarnings("ignore", message="The 'warn' method", category=DeprecationWarning)
    check_args(args)
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
    runners = {
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
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name in SECTIONS:
        if args.section == name or (args.section == "all" and name not in ALONE):
            print(f"== {name} ==", flush=True)
            section_start = time.perf_counter()
            runners[name](args, out)
            print(f"({name}: {time.perf_counter() - section_start:.0f} s)\n", flush=True)
    out["total_s"] = time.perf_counter() - start
    with open(Path(args.output_dir) / "results.json", "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"Total {out['total_s'] / 60:.1f} min; results in {args.output_dir}/results.json")
    return out


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark DW-FCOS against detectron2's own FCOS, side by side, in one run.

    python tools/benchmark.py                     # all sections at the default small setting
    python tools/benchmark.py accuracy --seeds 0,1,2,3,4
    python tools/benchmark.py accuracy --dataset trees --iters 400 --warmup-iters 200 \
        --min-size 256 --max-size 256 --eval-period 50   # real photographs (make benchmark-trees)
    python tools/benchmark.py speed --speed-settings r50 --device cuda
    python tools/benchmark.py detectors           # DW in detectron2's FCOS, RetinaNet, RPN
    python tools/benchmark.py quantization        # int8 ONNX (needs `make demo`'s model)

Each section re-measures numbers that docs/BENCHMARKS.md reports. The one-off investigations
recorded there (losses against the release's loop, COCO evaluation time, batched inference,
exported-model latency, mixed precision, the soak run) ran at commit 7388e51 (`git checkout
7388e51` to run them again).

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
``--seeds`` on the generated shapes dataset (``tools/sample_data/shapes.py``: 400 train
and 100 val images of 256x320, 6 classes) with the demo's model and solver
(``dw_R_18_FPN_synthetic_demo``: ResNet-18-FPN, 128 channels, 2-conv towers, from scratch,
trainable BN, batch 8, its SGD settings) but a shorter default run: images resized to 192x240
and ``--iters`` iterations, with warm-up (``--warmup-iters``, default min(50, iters / 4)) and lr
steps scaled to them (:func:`scaled_schedule`). ``--dataset trees`` trains and evaluates on real
aerial photographs instead: DeepForest's tree crowns (``tools/sample_data/trees.py``: NEON
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
in the tables) and the section goes on.

**speed**: per setting (``--speed-settings``), one model per variant (default FCOS, DW, DW with
box refine), random weights, synthetic images and 10 COCO-like random boxes per image: seconds
per training step (detectron2's ``SimpleTrainer.run_step``: forward, backward, SGD step),
latency per image at inference and the peak memory of a training step. Steps of the models are
interleaved round by round, so load from other processes hits them alike; the ratio to FCOS is
the median over rounds of the two models' times in the same round. Inference runs with score
threshold 0 (every level sends its top 1000 candidates to NMS: the most post-processing either
model can do). Peak memory, probed around every timed training step and reported as the largest:
on CPU, the growth of the process's peak resident set size during the step (``VmHWM`` reset
through ``/proc/self/clear_refs``, after ``malloc_trim``); on CUDA,
``torch.cuda.max_memory_allocated`` above the step's start. Settings: ``r50`` = R-50-FPN
(Base-DW), 800x1216, batch 2, 80 classes; ``small`` = the accuracy model at its input size and
batch. ``speed_ratios.png`` shows the ratios as bars.

**detectors** (not part of "all"): DW inside detectron2's own detectors, each against its
original at equal budget (``--pairs``: ``fcos`` detectron2's FCOS and DWLossFCOS, ``retinanet``
RetinaNet and DWRetinaNet, ``rpn`` Faster R-CNN with detectron2's RPN and with DWRPN), on the
accuracy section's data, model size, schedule, sizes and seeds (``benchmarks/pairs.py`` says how
RetinaNet and Faster R-CNN are made as small): box AP at a low score threshold, AR@100/AR@1000
of the RPN's proposals, the paired per-seed difference, runs that diverged, and each pair's
training-step time and peak-memory ratio measured interleaved; ``detectors.png`` shows mean AP
and AR. ``--resume`` reuses finished runs.

**quantization** (not part of "all"): the trained demo model (``--weights``, default ``make
demo``'s ``output/demo/model_final.pth``) exported to ONNX
in float32 and int8 (``--quant-precisions``: static, calibrated on ``--calibration-images``
training images; dynamic), COCO AP of each on the generated validation split through ONNX
Runtime and PyTorch eager, file size, and latency per image over ``--quant-images`` images,
rounds interleaved, ratios to float32 ONNX Runtime.

Every result is also written to ``OUTPUT_DIR/results.json`` and the pictures (PNG) next to it;
training logs, ``metrics.json`` and ``result.json`` of each accuracy run go to
``OUTPUT_DIR/accuracy/<variant>_seed<k>/``, and ``--resume`` reuses the finished ones whose
config is unchanged.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import torch

from benchmarks.accuracy import run_accuracy
from benchmarks.options import ALONE, SECTIONS, argument_parser, check_args
from benchmarks.pairs import run_pairs
from benchmarks.quantization import run_quantization
from benchmarks.report import environment
from benchmarks.speed import run_speed


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
        f"{env['date']}  {env['command']}\n{env['cpus_usable']} usable cores, torch "
        f"{env['torch_threads']} threads, device {env['device']}\n{env['collect_env_info']}",
        flush=True,
    )
    runners = {
        "accuracy": run_accuracy,
        "speed": run_speed,
        "detectors": run_pairs,
        "quantization": run_quantization,
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

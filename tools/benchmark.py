#!/usr/bin/env python
"""Measure DW against detectron2's own detectors, side by side, in one run.

    python tools/benchmark.py pretrained --resume   # accuracy of the four pairs, tree crowns
    python tools/benchmark.py speed --speed-settings r50 --device cuda
    python tools/benchmark.py quantization          # int8 ONNX (needs `make demo-shapes`' model)

Each section re-measures numbers of docs/BENCHMARKS.md, which also names the commits that ran
its one-off investigations. Results go to OUTPUT_DIR/results.json, pictures (PNG) beside it.

**pretrained**: detectron2's FCOS against DW-FCOS and ``DWLossFCOS``, RetinaNet against
``DWRetinaNet``, Faster R-CNN against it with ``DWRPN`` (``--pretrained-pairs``), fine-tuned from
ImageNet EfficientNet-Lite0 on the tree crowns (``configs/trees/``, pairs differing only in DW)
through ``train_net.py``, ``--pretrained-iters`` per seed of ``--seeds``, evaluated every
``--eval-period``. Prints the pair table (mean ± std, DW - original per seed, RPN proposal
recall), the plateau check, time to accuracy, step time and memory ratios (alone with ``--seeds
''``); draws the AP curves.
``--opts KEY VALUE ...`` overrides the configs of both detectors of every pair (e.g. detectron2's
gradient clipping). Runs: ``OUTPUT_DIR/pretrained/<config>_seed<k>/``; ``--resume`` continues or
reuses them.

**warmup**: which lr warm-ups (``--warmups``, iterations from factor 0.001) each detector of
``--pretrained-pairs`` survives: per warm-up and seed, warm-up plus ``--after-warmup``
iterations, then evaluated; the table gives the AP or the error that stopped the run
(detectron2's NaN check or DW's named checks). Runs: ``OUTPUT_DIR/warmup<W>/``, ``--resume``.

**speed**: per setting (``--speed-settings``: ``r50`` = R-50-FPN, 800x1216, batch 2, 80 classes;
``small`` = the ``make demo-shapes`` model at ``--min-size`` x ``--max-size``, batch
``--batch``), one randomly initialised model per variant on synthetic images with ``--boxes``
random COCO-like boxes: seconds per training step (``SimpleTrainer.run_step``), inference
latency per image at score threshold 0 (the most post-processing), peak memory of a training
step (CPU: peak RSS growth; CUDA: ``max_memory_allocated``). Steps are interleaved round by
round; a ratio is the median of same-round ratios. ``speed_ratios.png`` draws the ratios.

**quantization**: the demo model (``--weights``) exported to ONNX in float32 and int8
(``--quant-precisions``: static, calibrated on ``--calibration-images`` training images;
dynamic): COCO AP on the generated validation split through ONNX Runtime and PyTorch eager,
file size, latency per image over ``--quant-images`` images, rounds interleaved.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch

from benchmarks.options import argument_parser, check_args
from benchmarks.pretrained import run_pretrained, run_warmup
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
    command = shlex.join(["python", "tools/benchmark.py", *sys.argv[1:]])
    out = {"environment": environment(args.device, command), "args": vars(args)}
    env = out["environment"]
    print(
        f"{env['date']}  {env['command']}\n{env['cpus_usable']} usable cores, torch "
        f"{env['torch_threads']} threads, device {env['device']}\n{env['collect_env_info']}",
        flush=True,
    )
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"== {args.section} ==", flush=True)
    runners = {"speed": run_speed, "pretrained": run_pretrained, "warmup": run_warmup}
    runners["quantization"] = run_quantization
    runners[args.section](args, out)
    out["total_s"] = time.perf_counter() - start
    with open(Path(args.output_dir) / "results.json", "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"Total {out['total_s'] / 60:.1f} min; results in {args.output_dir}/results.json")
    return out


if __name__ == "__main__":
    main()

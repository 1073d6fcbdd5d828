#!/usr/bin/env python
"""Measure DW against detectron2's own detectors, side by side, in one run.

    python tools/benchmark.py pretrained --resume   # accuracy of the four pairs, tree crowns
    python tools/benchmark.py speed --speed-settings r50 --device cuda
    python tools/benchmark.py quantization          # int8 ONNX (needs `make demo-shapes`' model)

Each section re-measures numbers that docs/BENCHMARKS.md reports; the one-off investigations
recorded there name the commit whose ``tools/benchmark.py`` ran them (``git checkout <commit>``
to run them again).

**pretrained**: detectron2's FCOS against DW-FCOS and against ``DWLossFCOS``, RetinaNet against
``DWRetinaNet``, Faster R-CNN against it with ``DWRPN`` (``--pretrained-pairs``), each fine-tuned
from the converted ImageNet EfficientNet-Lite0 on the tree crowns (``configs/trees/``, which
differ only in DW) for ``--pretrained-iters`` iterations per seed of ``--seeds`` through
``train_net.py``, evaluated every ``--eval-period`` iterations. Prints the pair table (mean ±
std, DW - original per seed, proposal recall for the RPN), the plateau check, time to accuracy
and each pair's step time and memory ratios; draws the AP curves
(``benchmarks/pretrained.py``). Runs go to ``OUTPUT_DIR/pretrained/<config>_seed<k>/``;
``--resume`` continues an interrupted one from its checkpoint and reuses finished ones.

**warmup**: which lr warm-ups (``--warmups``, iterations from factor 0.001 to the configs' lr)
each detector of ``--pretrained-pairs`` survives: per warm-up and seed a run of the warm-up plus
``--after-warmup`` iterations, evaluated at its end; the table gives its AP or the error that
stopped it (detectron2's NaN check, or DW's named checks: a collapsed classifier, overflowing
boxes, saturated scores). Runs go to ``OUTPUT_DIR/warmup<W>/``; ``--resume`` reuses them.

**speed**: per setting (``--speed-settings``), one model per variant (default detectron2's FCOS
from its model-zoo config on DW's backbone with DW's head size, DW, DW with box refine), random
weights, synthetic images with ``--boxes`` COCO-like random boxes each: seconds per training
step (detectron2's ``SimpleTrainer.run_step``), latency per image at inference (score threshold
0: the most post-processing either model can do) and the peak memory of a training step (CPU:
growth of the peak resident set size; CUDA: ``torch.cuda.max_memory_allocated``). The models'
steps are interleaved round by round, so load from other processes hits them alike; a ratio is
the median over rounds of same-round ratios. Settings: ``r50`` = R-50-FPN (Base-DW), 800x1216,
batch 2, 80 classes; ``small`` = the ``make demo-shapes`` model at ``--min-size`` x
``--max-size``, batch ``--batch``. ``speed_ratios.png`` shows the ratios as bars.

**quantization**: the trained demo model (``--weights``, default ``make demo-shapes``'
``output/shapes_demo/model_final.pth``) exported to ONNX in float32 and int8
(``--quant-precisions``: static, calibrated on ``--calibration-images`` training images;
dynamic), COCO AP of each on the generated validation split through ONNX Runtime and PyTorch
eager, file size, and latency per image over ``--quant-images`` images, rounds interleaved.

Every result is also written to ``OUTPUT_DIR/results.json``, the pictures (PNG) next to it.
"""

from __future__ import annotations

import json
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
    command = " ".join(["python tools/benchmark.py", *sys.argv[1:]])
    out = {"environment": environment(args.device, command), "args": vars(args)}
    env = out["environment"]
    print(
        f"{env['date']}  {env['command']}\n{env['cpus_usable']} usable cores, torch "
        f"{env['torch_threads']} threads, device {env['device']}\n{env['collect_env_info']}",
        flush=True,
    )
    runners = {
        "speed": run_speed,
        "pretrained": run_pretrained,
        "warmup": run_warmup,
        "quantization": run_quantization,
    }
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"== {args.section} ==", flush=True)
    runners[args.section](args, out)
    out["total_s"] = time.perf_counter() - start
    with open(Path(args.output_dir) / "results.json", "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"Total {out['total_s'] / 60:.1f} min; results in {args.output_dir}/results.json")
    return out


if __name__ == "__main__":
    main()

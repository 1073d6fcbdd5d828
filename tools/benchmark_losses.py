#!/usr/bin/env python
"""Benchmark ``dual_weighting.dw_losses`` against a per-box-loop implementation, on this CPU.

The comparison implementation, ``dense_loop_dw_losses`` in ``tools/benchmarks/losses.py``,
has the structure of the authors' release: per image, the center prior, the decoded boxes' GIoU
and IoU, ``p_loc``, ``p_cls`` and the positive weights are computed densely for *all* P x G
(point, box) pairs, and the negative weights are filled by a Python loop over the boxes. The
project's version builds only a boolean (N, P, G) mask densely and does everything else on the K
(image, point, box) pairs where the point lies inside the box, with segment reductions instead
of the loop, and computes the (N, P, C) negative loss with a hand-written backward that
allocates fewer full-size buffers. Both follow the same formulas (the loop keeps the smallest
negative weight where same-class boxes overlap, as the project does), and the script prints the
largest relative difference of their losses and of their input gradients (float32 rounding;
``--dtype float64`` shows ~1e-15).

Set-up: 2 images of 800 x 1216 (``--height``/``--width``), FPN strides 8..128 (20267 points per
image), 80 classes, float32. Boxes are random but COCO-like: sqrt(area) log-uniform in
[12, 600] px, aspect ratio log-uniform in [1/3, 3], centres uniform, clipped to the image.
Logits are normal around a 0.01 prior, distances log-normal around 4 strides.

Time: forward + backward of the sum of the three losses, median over ``--repeats`` runs after one
warm-up, the two implementations interleaved so that load from other processes hits both alike.
On a small machine shared with other jobs, ``--threads 1`` gives steadier numbers: OpenMP threads
that wait for a busy core make every large elementwise op slower.

Memory: the growth of the process's peak resident set size (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``) during one forward + backward, after freeing everything and returning
freed heap pages to the system (``malloc_trim``). PyTorch's CPU allocator does not cache, so this
is the high-water mark of all tensors alive at once (inputs excluded, autograd's saved tensors
included) plus allocator overhead. Where the kernel does not allow the reset, it prints "n/a".
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.losses import (
    LOSS_TABLE_HEADER,
    format_loss_row,
    make_inputs,
    measure_losses,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", default="1,10,50,200", help="boxes per image, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    box_counts = [int(b) for b in args.boxes.split(",")]

    print(
        f"{args.images} images {args.height}x{args.width}, {args.classes} classes, {args.dtype}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(LOSS_TABLE_HEADER)
    print("-" * len(LOSS_TABLE_HEADER))
    for num_boxes in box_counts:
        inputs = make_inputs(
            args.images,
            num_boxes,
            args.height,
            args.width,
            args.classes,
            args.seed,
            getattr(torch, args.dtype),
        )
        print(format_loss_row(measure_losses(inputs, args.repeats)))


if __name__ == "__main__":
    main()

"""The benchmarks of DW-FCOS against detectron2's own FCOS, behind ``tools/benchmark.py`` and
``tools/benchmark_losses.py`` (which parse the command line and call these):

- ``detectors``: the two detectors on one backbone, their configs and score thresholds.
- ``accuracy``: training with detectron2's trainer and COCO evaluation at two thresholds.
- ``speed``: training step and inference time, peak memory of a training step.
- ``soak``: a long run twice with one seed (finite losses, memory, identical curves).
- ``losses``: ``dw_losses`` against a per-box loop in the release's structure.
- ``memory``: the CPU and CUDA memory probes the benchmarks share.
- ``report``: statistics over seeds, the tables, and the machine's description.

``run_accuracy``, ``run_speed`` and ``run_soak`` take ``tools/benchmark.py``'s options
(``args``), print their tables and store their results in the dict ``out``.
"""

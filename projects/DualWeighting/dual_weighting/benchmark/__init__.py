"""The benchmarks of DW-FCOS against detectron2's own FCOS, behind ``tools/benchmark.py`` and
``tools/benchmark_losses.py`` (which parse the command line and call these):

- ``detectors``: the two detectors on one backbone, their configs and score thresholds.
- ``accuracy``: training with detectron2's trainer and COCO evaluation at two thresholds.
- ``speed``: training step and inference time, peak memory of a training step.
- ``soak``: a long run twice with one seed (finite losses, memory, identical curves).
- ``coco_eval``: detectron2's COCO evaluation at COCO's size with each COCOeval backend.
- ``batched``: test batch sizes: throughput, and detections and AP against batch 1.
- ``losses``: ``dw_losses`` against a per-box loop in the release's structure.
- ``memory``: the CPU and CUDA memory probes the benchmarks share.
- ``report``: statistics over seeds, the tables, the AP-curve picture, the machine's description.
- ``plots``: bar and curve pictures (PNG) of the sections' results.

``run_accuracy``, ``run_speed``, ``run_coco_eval``, ``run_batched`` and ``run_soak`` take
``tools/benchmark.py``'s options (``args``), print their tables, store their results in the
dict ``out`` and write their pictures next to ``results.json``.
"""

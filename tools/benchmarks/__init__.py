"""The benchmarks of DW-FCOS against detectron2's own FCOS, behind ``tools/benchmark.py`` and
``tools/benchmark_losses.py`` (which parse the command line and call these). Like detectron2's
``tools/benchmark.py`` they stay out of the installed package: they run from a checkout, whose
``configs/`` they read, and the scripts import this folder as ``benchmarks`` (a script's folder,
``tools/``, is on its ``sys.path``; pytest's ``pythonpath`` adds it for the tests).

- ``options``: ``tools/benchmark.py``'s command line, its sections and the checks of its options.
- ``detectors``: the two detectors on one backbone, their configs and score thresholds.
- ``accuracy``: training with detectron2's trainer and COCO evaluation at two thresholds.
- ``speed``: training step and inference time, peak memory of a training step.
- ``precision``: float32, and float16 or bfloat16 under autocast, for the speed section.
- ``soak``: a long run twice with one seed (finite losses, memory, identical curves).
- ``coco_eval``: detectron2's COCO evaluation at COCO's size with each COCOeval backend.
- ``batched``: test batch sizes: throughput, and detections and AP against batch 1.
- ``export_speed``: the exported model (TorchScript, ONNX Runtime) against PyTorch eager.
- ``losses``: ``dw_losses`` against a per-box loop in the release's structure.
- ``memory``: the CPU and CUDA memory probes the benchmarks share.
- ``report``: statistics over seeds, the tables, the AP-curve picture, the machine's description.
- ``plots``: bar and curve pictures (PNG) of the sections' results.

``run_accuracy``, ``run_speed``, ``run_coco_eval``, ``run_batched``, ``run_soak`` and
``run_export_speed`` take ``tools/benchmark.py``'s options (``args``), print their tables, store
their results in the dict ``out`` and write their pictures (if any) next to ``results.json``.
"""

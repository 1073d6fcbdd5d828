"""The benchmarks of DW-FCOS against detectron2's own FCOS, behind ``tools/benchmark.py`` (which
parses the command line and calls these). Like detectron2's ``tools/benchmark.py`` they stay out
of the installed package: they run from a checkout, whose ``configs/`` they read, and the script
imports this folder as ``benchmarks`` (a script's folder, ``tools/``, is on its ``sys.path``;
pytest's ``pythonpath`` adds it for the tests).

- ``options``: ``tools/benchmark.py``'s command line, its sections and the checks of its options.
- ``detectors``: the two detectors on one backbone, their configs and score thresholds.
- ``accuracy``: training with detectron2's trainer and COCO evaluation at two thresholds.
- ``pairs``: DW inside detectron2's FCOS, RetinaNet and RPN against each original.
- ``speed``: training step (``SimpleTrainer.run_step``) and inference time, peak memory.
- ``quantization``: the demo model in int8 ONNX against float32.
- ``memory``: the CPU and CUDA memory probes.
- ``report``: statistics over seeds, the tables, the AP-curve picture, the machine's description.
- ``plots``: bar and curve pictures (PNG) of the sections' results.

``run_accuracy``, ``run_speed``, ``run_pairs`` and ``run_quantization`` take
``tools/benchmark.py``'s options (``args``), print their tables, store their results in the dict
``out`` and write their pictures (if any) next to ``results.json``.
"""

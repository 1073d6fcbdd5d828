"""The benchmarks of DW against detectron2's own detectors, behind ``tools/benchmark.py`` (which
parses the command line and calls these). Like detectron2's ``tools/benchmark.py`` they stay out
of the installed package: they run from a checkout, whose ``configs/`` they read, and the script
imports this folder as ``benchmarks`` (a script's folder, ``tools/``, is on its ``sys.path``;
pytest's ``pythonpath`` adds it for the tests).

- ``options``: ``tools/benchmark.py``'s command line, its sections and the checks of its options.
- ``pretrained``: the pairs of ``configs/trees/`` fine-tuned through ``train_net.py``.
- ``detectors``: the speed section's detectors on one backbone.
- ``speed``: training step (``SimpleTrainer.run_step``) and inference time, peak memory.
- ``quantization``: the demo model in int8 ONNX against float32.
- ``memory``: the CPU and CUDA memory probes.
- ``report``: statistics over seeds, tables, the machine's description.
- ``plots``: bar and curve pictures (PNG).

Each ``run_<section>`` takes ``tools/benchmark.py``'s options (``args``), prints its tables,
stores its results in the dict ``out`` and writes its pictures next to ``results.json``.
"""

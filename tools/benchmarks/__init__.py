"""The benchmarks behind ``tools/benchmark.py`` (options: ``options``; sections: ``pretrained``
(also warmup), ``speed``, ``quantization``; helpers: ``detectors``, ``memory``, ``report``,
``plots``). Like detectron2's ``tools/benchmark.py`` they run from a checkout, whose ``configs/``
they read, and stay out of the installed package; the script imports this folder as
``benchmarks`` (pytest's ``pythonpath`` adds ``tools/`` for the tests). Each ``run_<section>``
takes the script's ``args``, prints its tables, stores its results in the dict ``out`` and writes
its pictures next to ``results.json``.
"""

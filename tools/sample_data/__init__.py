"""The sample data that the tools and tests make, outside the installed package (the package
registers both sets by name: ``dual_weighting.data.register_synthetic`` and ``register_trees``):
``shapes`` generates the shapes dataset, ``trees`` downloads DeepForest's wheel and tiles its
tree-crown photographs. The tools import this folder as ``sample_data`` (``tools/`` is on a
script's ``sys.path``; pytest's ``pythonpath`` adds it for the tests)."""

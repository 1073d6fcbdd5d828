"""The sample data of the tools and tests, outside the installed package (which registers both
sets by name): ``shapes`` generates the shapes dataset, ``trees`` tiles DeepForest's tree crowns.
Imported as ``sample_data`` (``tools/`` is on a script's ``sys.path`` and pytest's
``pythonpath``)."""

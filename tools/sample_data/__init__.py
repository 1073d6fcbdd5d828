"""The sample data of the tools and tests, outside the installed package (which registers both
sets by name): ``shapes`` generates the shapes dataset, ``trees`` tiles DeepForest's tree crowns.
Imported as ``sample_data`` (``tools/`` is on a script's ``sys.path`` and pytest's
``pythonpath``)."""

import json
import os


def recorded_info(root, split):
    """The ``info`` of ``root/annotations/instances_{split}.json`` ({} without that file): what
    the dataset was made with."""
    json_file = os.path.join(root, "annotations", f"instances_{split}.json")
    if not os.path.isfile(json_file):
        return {}
    with open(json_file) as f:
        return json.load(f).get("info", {})

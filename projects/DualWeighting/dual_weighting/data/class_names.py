"""Class lists that stay the same from training to evaluation and demo: given
(:func:`parse_class_names`), saved beside a run's checkpoints (:func:`save_class_names`) and
compared with a dataset's by the tools (:func:`saved_class_names`).
"""

import os

__all__ = [
    "CLASS_NAMES_FILE",
    "near_duplicates",
    "parse_class_names",
    "save_class_names",
    "saved_class_names",
]

# Written in a training run's output folder, beside its checkpoints and config.
CLASS_NAMES_FILE = "class_names.txt"


def near_duplicates(names):
    """Groups (tuples, in order of ``names``) of distinct names that differ only in case or in
    spaces around them (``Circle``, ``circle``, ``circle ``)."""
    groups = {}
    for name in names:
        variants = groups.setdefault(name.strip().casefold(), [])
        if name not in variants:
            variants.append(name)
    return [tuple(v) for v in groups.values() if len(v) > 1]


def parse_class_names(spec):
    """The class names of ``spec``, a file of one name a line or a comma list, stripped.
    FileNotFoundError for a missing ``.txt`` or path; ValueError for no name, a name given
    twice or names differing only in case."""
    spec = os.fspath(spec)
    if os.path.isfile(spec):
        with open(spec) as f:
            names, where = [line.strip() for line in f if line.strip()], spec
    elif spec.endswith(".txt") or os.sep in spec:
        raise FileNotFoundError(
            f"Class list file {spec!r} not found (give a file of one name a line, or the names "
            "separated by commas)"
        )
    else:
        names, where = [n.strip() for n in spec.split(",") if n.strip()], f"the list {spec!r}"
    if not names:
        raise ValueError(f"{where} names no class")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{where} gives {', '.join(map(repr, repeated))} more than once")
    close = near_duplicates(names)
    if close:
        shown = "; ".join(" and ".join(map(repr, group)) for group in close)
        raise ValueError(f"{where} has names that differ only in case: {shown}")
    return names


def save_class_names(output_dir, names):
    """Write ``names``, one a line, to ``output_dir/class_names.txt``; return its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, CLASS_NAMES_FILE)
    with open(path, "w") as f:
        f.write("".join(f"{name}\n" for name in names))
    return path


def saved_class_names(weights):
    """``(names, path)`` of the ``class_names.txt`` beside the checkpoint file ``weights``, or
    ``(None, None)`` when there is none."""
    if not weights or "://" in str(weights):
        return None, None
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), CLASS_NAMES_FILE)
    if not os.path.isfile(path):
        return None, None
    with open(path) as f:
        return [line.strip() for line in f if line.strip()], path

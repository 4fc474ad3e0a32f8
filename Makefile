# Two commands matter: `make demo` and `make test`. Both create .venv from the pinned versions when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench bench-segmentation bench-tools bench-explain bench-detection clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock torch==2.13.0
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/medattn demo --out demo_out --force

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# One worker per core, each test file whole on one worker: the README's blocks run in order on one shared folder.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=25

bench: $(STAMP)
	$(BIN)/python benchmarks/medmnist.py

bench-explain: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/explain.py

bench-segmentation: $(STAMP)
	$(BIN)/python benchmarks/segmentation.py

bench-tools: $(STAMP)
	$(BIN)/python benchmarks/tools.py

bench-detection: $(STAMP)
	$(BIN)/python benchmarks/detection.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache

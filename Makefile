# One command to run the main job, one to run the tests; both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job on embedded defaults: a multi-seed target-decay sweep through the harness.
demo: $(STAMP)
	$(BIN)/python -m benchmarks.train --algo toy --seeds 8 --sweep decay=0,0.5,0.9,0.99 \
	  --learning-rate 1.05 --on-nonfinite continue --total-steps 64000 --out runs/demo --no-resume

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache

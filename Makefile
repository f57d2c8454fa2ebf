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
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

# The main job on embedded defaults: the DQN target-network ablation on CartPole-v1 (no
# target, hard copy, EMA at two taus; 8 seeds each, 500k env steps, the default config).
# It writes runs/rl/dqn_targets/ and regenerates the README's table and figure in docs/.
demo: $(STAMP)
	$(BIN)/python -m benchmarks.rl_studies dqn-targets

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache

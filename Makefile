# The everyday tasks. Each target is one command you can also type yourself.
PY ?= python
PATHS = minireason tests tutorials
NOTEBOOKS = runs/notebooks
FAST ?= 0

.PHONY: test lint format demo notebooks bench

test:            ## the whole suite, as CI runs it
	$(PY) -m pytest -q

lint:            ## ruff's linter and formatter, checking only (the suite runs both too)
	ruff check $(PATHS)
	ruff format --check $(PATHS)

format:          ## apply ruff's formatter and the lint fixes it can make
	ruff format $(PATHS)
	ruff check --fix $(PATHS)

demo:            ## the whole job: data, prepare, train the tiny preset, explain, evaluate
	minireason demo

notebooks:       ## every tutorial as an executed notebook, figures inline, in runs/notebooks/ (FAST=1: fast mode)
	mkdir -p $(NOTEBOOKS)
	for t in tutorials/[0-9][0-9]_*.py; do \
		nb=$(NOTEBOOKS)/$$(basename $$t .py).ipynb; \
		jupytext --to notebook --output $$nb $$t && \
		env -u MPLBACKEND MINIREASON_FAST=$(FAST) MINIREASON_TUTORIAL_OUT=$(abspath $(NOTEBOOKS)) \
			jupyter-execute --inplace --timeout=1800 $$nb || exit 1; \
	done

bench:           ## training-step speed against PyTorch, then explanation latency and explain-all's rate on the demo run
	mkdir -p runs/bench
	minireason bench train --json runs/bench/train.json
	minireason bench explain --run runs/demo/run --prepared runs/demo/prepared --json runs/bench/explain.json
	minireason bench explain-all --run runs/demo/run --prepared runs/demo/prepared --json runs/bench/explain_all.json

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

notebooks:       ## every tutorial as an executed Jupyter notebook, figures inline, in runs/notebooks/ (needs .[notebooks]; FAST=1 for the fast mode)
	mkdir -p $(NOTEBOOKS)
	for t in tutorials/[0-9][0-9]_*.py; do \
		env -u MPLBACKEND MINIREASON_FAST=$(FAST) MINIREASON_TUTORIAL_OUT=$(CURDIR)/$(NOTEBOOKS) \
			jupytext --to notebook --execute --output $(NOTEBOOKS)/$$(basename $$t .py).ipynb $$t || exit 1; \
	done

bench:           ## training-step speed against PyTorch, then explanation latency on the demo run
	mkdir -p runs/bench
	minireason bench train --json runs/bench/train.json
	minireason bench explain --run runs/demo/run --prepared runs/demo/prepared --json runs/bench/explain.json

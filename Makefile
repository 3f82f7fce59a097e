# Two commands for a fresh machine: `make run` and `make test` (see README.md).
# `make bench` runs the benchmark suite (about 17 minutes) and rewrites docs/benchmarks.md and
# docs/capacity.md from what it measured.
.PHONY: run test lint typecheck pytest bench

UV := uv run --frozen

run:
	scripts/bootstrap.sh run
	$(UV) voxbus up

test:
	scripts/bootstrap.sh test
	$(MAKE) --no-print-directory lint typecheck pytest

lint:
	$(UV) ruff check .
	$(UV) ruff format --check .
	$(UV) python scripts/check_dependencies.py

typecheck:
	$(UV) mypy $(foreach p,common devinfra cli ingest transcoder writer echo telephony,-p voxbus.$(p))

pytest:
	$(UV) pytest

bench:
	scripts/bootstrap.sh test
	npm ci --prefix bench/loadgen --no-audit --no-fund --silent
	$(UV) python -m bench.suite

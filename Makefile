# Two commands for a fresh machine: `make run` and `make test` (see README.md).
# `make bench` runs the benchmark suite (about 17 minutes) and rewrites docs/benchmarks.md and
# docs/capacity.md from what it measured; `make soak` runs the 30-minute soak and rewrites docs/soak.md.
.PHONY: run test lint typecheck pytest bench soak

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
	$(UV) python -m bench.suite

soak:
	scripts/bootstrap.sh test
	$(UV) python -m bench.soak

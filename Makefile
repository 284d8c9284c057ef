# The two commands of the README's Quickstart, and a few more for development.
.PHONY: setup run test lint bench faults

setup:
	@scripts/setup.sh

run: setup  ## set everything up and run the daemon on the embedded defaults
	.venv/bin/python -m hub run

test: setup  ## set everything up, make sure the servers are up, run lint and the tests
	@scripts/services.sh
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/pytest

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: setup  ## the benchmarks, each beside its naive baseline (see docs/benchmarks.md)
	@scripts/services.sh
	.venv/bin/python -m bench.bus
	.venv/bin/python -m bench.orders
	.venv/bin/python -m bench.erp_writes
	.venv/bin/python -m bench.certificates

faults: setup  ## the full fault run on private servers (see docs/reliability.md), ~15 min
	.venv/bin/python -m tests.faults --orders 20000 --rate 30 --broker-restarts 10 --kills 20 \
		--mariadb-outages 2 --pg-restarts 1 --memory-alarms 1

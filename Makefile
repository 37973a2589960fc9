# Two commands on a fresh Debian 12 machine: `make demo` runs the product, `make test` runs the tests.
# Each installs what it needs first (scripts/bootstrap.sh: Debian packages, uv, .venv from uv.lock).
.PHONY: setup demo test lint typecheck proto proto-check bench cluster clean

PY := .venv/bin/python

setup:
	@scripts/bootstrap.sh

demo: setup
	@scripts/demo.sh

test: setup
	@scripts/test.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: setup
	.venv/bin/mypy

# Regenerates the committed gRPC code from proto/ (see proto/README.md).
proto: setup
	$(PY) -m scripts.gen_proto

proto-check: setup
	$(PY) -m scripts.gen_proto --check

bench: setup
	$(PY) bench/platform_rpc.py
	$(PY) bench/face_speed.py
	$(PY) bench/face_accuracy.py --pairs bench/data/face_pairs.csv

# PostgreSQL, three replicas and HAProxy on this machine (scripts/cluster.sh stop ends them).
cluster: setup
	@scripts/cluster.sh start

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache

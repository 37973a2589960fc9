#!/usr/bin/env bash
# Runs every check CI runs: generated code up to date, lint, types, then the test suite against a
# real PostgreSQL (started here), a real pcscd with the vpcd driver and Xvfb (started by fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== generated gRPC code is up to date"
python -m scripts.gen_proto --check
echo "== ruff"
ruff check .
echo "== mypy (strict)"
mypy
echo "== PostgreSQL"
PLATFORM_TEST_PG_URL="$(scripts/postgres.sh start)"
export PLATFORM_TEST_PG_URL
echo "== pytest"
python -m pytest -n 2 --dist loadgroup --durations=25 "$@"

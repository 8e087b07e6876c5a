#!/usr/bin/env bash
# Sets up (idempotently) and runs the whole test suite: lint, types, unit and
# integration tests against real PostgreSQL and Redis servers that the tests
# start on free loopback ports and always stop. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Sets up (idempotently) and runs the whole test suite: lint, types, unit and
# integration tests against real PostgreSQL and Redis servers that the tests
# start on free loopback ports and always stop. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/mypy
# Two workers, one test file each at a time (a file's module fixtures start its own
# servers, and some tests read what earlier ones in the file left), files handed out in
# pytest's order (integration, then the many short unit files that even out the end),
# not xdist's default by count of tests, which leaves the one-test benchmarks for last.
# Later arguments win: `-n 0` runs serially (needed for --pdb), `-n 3` three workers.
exec .venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"

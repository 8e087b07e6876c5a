#!/usr/bin/env bash
# Sets up (idempotently) and runs `mlscale demo`: a local cluster is started,
# measured and stopped; results land in ./results. Extra args go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mlscale demo "$@"

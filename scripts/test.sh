#!/usr/bin/env bash
# Runs the test suite on the emulated bench, after setting up what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/pytest "$@"

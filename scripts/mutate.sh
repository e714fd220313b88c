#!/usr/bin/env bash
# Mutation testing of the functions that enforce a security rule (scripts/mutate.toml):
# prints mutants tried, killed, survived (file:line), equivalent (scripts/mutate-equivalent.txt).
# Options: -j N (parallel children, default 2), --only FILE[::FUNCTION], --list. Exit 1 on an
# unexplained survivor. Not run in CI: minutes on 2 cores, see HACKING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh
exec .venv/bin/python scripts/mutate.py "$@"

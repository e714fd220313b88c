#!/usr/bin/env bash
# Runs the test suite on the emulated bench, after setting up what is missing.
# The suite is mostly waiting on devices, so it runs on pytest-xdist workers (one per core, at most
# 4: every worker's bench holds a vpcd slot) unless the arguments choose (-n, --numprocesses, -p no:xdist).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
workers=()
case " $* " in
    *" -n"*|*" --numprocesses"*|*"no:xdist"*) ;;
    *) n=$(nproc 2>/dev/null || echo 1); [ "$n" -gt 4 ] && n=4
       [ "$n" -gt 1 ] && workers=(-n "$n") ;;
esac
exec .venv/bin/pytest "${workers[@]}" "$@"

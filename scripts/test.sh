#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. Exit status 0 only if all pass.
#   scripts/test.sh               release build: unit, stress, multi-process and CLI tests
#   scripts/test.sh --sanitizers  also the asan (ASan+UBSan, whole suite) and tsan (in-process
#                                 multi-thread tests) presets
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
ctest --preset release --parallel 2 --timeout 600
if [[ "${1:-}" == "--sanitizers" ]]; then
  scripts/setup.sh asan
  ctest --preset asan --parallel 2 --timeout 900
  scripts/setup.sh tsan
  ctest --preset tsan --parallel 2 --timeout 900
fi
echo "test: all tests passed"

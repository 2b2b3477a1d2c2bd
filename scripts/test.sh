#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs everything it needs into .venv, lints,
# runs the whole suite, then runs the serving suite again in a torch-free .venv-serve, because
# the serving path must work without torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

run_pytest() {  # pytest exits 5 when it collected nothing: that is a failure here, said clearly
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests ($*)" >&2; fi
  return "$rc"
}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[cpu,train,dev,bench]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
run_pytest .venv/bin/python -m pytest -q

[ -x .venv-serve/bin/python ] || "$PYTHON" -m venv .venv-serve
.venv-serve/bin/python -m pip install -q --upgrade pip
.venv-serve/bin/python -m pip install -q -e '.[cpu,dev]'
if .venv-serve/bin/python -c 'import torch' 2>/dev/null; then
  echo "error: torch is installed in the serving environment" >&2
  exit 1
fi
run_pytest .venv-serve/bin/python -m pytest -q tests/serving

#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs everything it needs into .venv, lints,
# runs the whole suite, then runs the serving suite again in a torch-free .venv-serve, because
# the serving path must work without torch. Where there is no GPU it installs the CPU build of
# torch (scripts/torch-build.sh decides; SMS_TORCH=cpu|cuda overrides); as root it installs
# Debian's chromium for tests/browser when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

run_pytest() {  # pytest exits 5 when it collected nothing: that is a failure here, said clearly
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests ($*)" >&2; fi
  return "$rc"
}

TORCH_CPU='torch==2.13.0+cpu'  # within the [train] extra's range

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests" >&2
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null ||
    echo "warning: chromium did not install; the browser tests will skip" >&2
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
TORCH_BUILD=$(bash scripts/torch-build.sh)  # cpu or cuda
if [ "$TORCH_BUILD" = cpu ]; then
  .venv/bin/python -m pip install -q "$TORCH_CPU" || {
    echo "error: pip found no $TORCH_CPU: point it at the PyTorch CPU index, e.g." \
      "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu (README, Test)," \
      "or set SMS_TORCH=cuda for the CUDA build" >&2
    exit 1
  }
fi
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

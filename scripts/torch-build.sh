#!/usr/bin/env bash
# Which torch build scripts/test.sh installs: `cuda` where a GPU is present (nvidia-smi lists
# one) or SMS_TORCH=cuda asks; `cpu` otherwise (the CUDA wheels are 5.8 GB, useless without a
# GPU) or when SMS_TORCH=cpu asks.
set -euo pipefail
case "${SMS_TORCH:-auto}" in
  cpu | cuda) echo "$SMS_TORCH" ;;
  auto)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      echo cuda
    else
      echo cpu
    fi
    ;;
  *)
    echo "error: SMS_TORCH must be auto, cpu or cuda (it is '$SMS_TORCH')" >&2
    exit 2
    ;;
esac

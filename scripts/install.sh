#!/usr/bin/env bash
# Install msad and its dependencies into ./.venv (idempotent). torch and torchvision are pinned so that pip
# takes the builds this project is tested with; extras: MSAD_EXTRAS (default "dev,timm,tensorboard,export,fast-eval").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e ".[${MSAD_EXTRAS:-dev,timm,tensorboard,export,fast-eval}]"

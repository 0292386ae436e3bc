#!/usr/bin/env bash
# Create .venv and install the project (CPU torch from the local wheel, then everything else). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  # constraints.txt: the versions of a verified environment (pip freeze); without it pip's resolver backtracks for a
  # long time through s3fs/aiobotocore/botocore combinations that sagemaker's extras allow.
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
  touch "$stamp"
fi

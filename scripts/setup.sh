#!/usr/bin/env bash
# Create .venv and install the project (CPU torch from the local wheel, then everything else). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  # constraints.txt pins every package of a verified environment (pip freeze): install exactly that set without
  # resolving (a resolve from pyproject alone backtracked through aiobotocore sdists for 15+ minutes), then the
  # project itself, then check that every requirement holds.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r constraints.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  .venv/bin/pip check
  touch "$stamp"
fi

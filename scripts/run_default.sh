#!/usr/bin/env bash
# Set up, then run the DialogSum -> FLAN-T5 flow on the embedded default recipe (tiny offline T5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec .venv/bin/python -m flows.dialogsum_flan_t5 "$@"

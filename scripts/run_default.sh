#!/usr/bin/env bash
# Set up, then run the DialogSum -> FLAN-T5 flow on its default recipe (tiny offline T5); arguments go to
# `llmft run dialogsum-flan-t5`: [--recipe FILE] [key.sub=value ...].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec .venv/bin/llmft run dialogsum-flan-t5 "$@"

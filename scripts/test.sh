#!/usr/bin/env bash
# Set up, then run the test suite: two pytest workers (pytest-xdist; LLMFT_TEST_WORKERS=0 runs in one process), each
# taking whole test files so that a file's fixtures are built once. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec .venv/bin/python -m pytest -n "${LLMFT_TEST_WORKERS:-2}" --dist loadfile "$@"

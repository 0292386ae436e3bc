#!/usr/bin/env bash
# A local AWS stand-in for the SageMaker backend: a strict moto server (S3 + SageMaker APIs) on 127.0.0.1, state in memory.
#   bash scripts/moto_server.sh [PORT]          (default 5000; Ctrl-C stops it)
# Then point a recipe at it, e.g.
#   llmft run dialogsum-flan-t5 training.backend=sagemaker data.preparation_backend=sagemaker \
#       'sagemaker={role_arn: "arn:aws:iam::123456789012:role/llmft", bucket: llmft, endpoint_url: "http://127.0.0.1:5000", stand_in: true}'
# moto records jobs without running them; with sagemaker.stand_in the flow runs each job's container itself
# (llm_finetune/backends/sagemaker_contract.py); without it the endpoint is talked to as the real SageMaker API. moto lacks StopTrainingJob: stopping a job there only logs that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# moto with tests/strict_sagemaker.py installed: SageMaker requests the service would reject are refused (HTTP 400).
exec .venv/bin/python -m tests.strict_sagemaker -H 127.0.0.1 -p "${1:-5000}"

#!/usr/bin/env bash
# A local AWS stand-in for the SageMaker backend: a moto server (S3 + SageMaker APIs) on 127.0.0.1, state in memory.
#   bash scripts/moto_server.sh [PORT]          (default 5000; Ctrl-C stops it)
# Then point a recipe at it, e.g.
#   llmft run dialogsum-flan-t5 training.backend=sagemaker data.preparation_backend=sagemaker \
#       'sagemaker={role_arn: "arn:aws:iam::123456789012:role/llmft", bucket: llmft, endpoint_url: "http://127.0.0.1:5000", stand_in: true}'
# moto records jobs without running them; with sagemaker.stand_in the flow runs each job's container itself
# (llm_finetune/backends/sagemaker_contract.py); without it the endpoint is talked to as the real SageMaker API. moto lacks StopTrainingJob: stopping a job there only logs that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/moto_server -H 127.0.0.1 -p "${1:-5000}"

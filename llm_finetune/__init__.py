"""Core of llm-finetune-flows: data, models, training, metrics, registry and serving.

Nothing here imports Prefect, so the same code runs in a flow, a torchrun worker or a SageMaker container.
"""

import logging

# bitsandbytes (imported by peft, hence by transformers' Trainer, in every command) warns on CPUs with AVX512-BF16
# that the optional `kernels` package is missing; 4-bit layers run without it, so the notice is noise in every log.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

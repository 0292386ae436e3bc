"""Core of llm-finetune-flows: data, models, training, metrics, registry and serving.

Nothing here imports Prefect, so the same code runs in a flow, a torchrun worker or a SageMaker container.
"""

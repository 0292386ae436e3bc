"""Training entry points (run in-process, under torchrun, or inside a SageMaker container)."""

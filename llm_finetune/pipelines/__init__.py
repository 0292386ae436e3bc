"""SageMaker Pipelines: the pipeline definitions and the code their steps run in SageMaker containers."""

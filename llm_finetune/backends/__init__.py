"""Where a training job runs: a local process (torchrun for several), later a SageMaker training job."""

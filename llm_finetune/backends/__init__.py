"""Where a step runs: a local process (torchrun for several), or a SageMaker training / processing job
(`sagemaker.py`; `sagemaker_container.py` inside the container; `sagemaker_contract.py` runs the container locally
when the API is a local stand-in)."""

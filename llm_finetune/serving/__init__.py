"""A local HTTP endpoint speaking the SageMaker inference protocol, and its client."""

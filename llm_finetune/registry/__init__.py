"""MLflow tracking and model registry."""

"""MLflow "models from code" entry: logged as the model's code, so nothing is pickled (see log_and_register)."""

import mlflow

from llm_finetune.registry.pyfunc import TextModelPyfunc

mlflow.models.set_model(TextModelPyfunc())

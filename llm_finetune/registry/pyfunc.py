"""MLflow pyfunc wrapper, so a registered version loads and predicts anywhere MLflow runs."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from llm_finetune.generation import GenerationParams


class SummarizerPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a 'dialogue' column; params: GenerationParams fields. Output: one summary each."""

    def load_context(self, context):
        from llm_finetune.summarizer import Summarizer

        self.summarizer = Summarizer(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        # MLflow fills params left out by the caller from the signature's defaults (set at registration).
        generation = GenerationParams.model_validate(params or {})
        return self.summarizer.summarize(list(model_input["dialogue"]), generation)

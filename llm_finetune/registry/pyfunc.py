"""MLflow pyfunc wrapper, so a registered version loads and predicts anywhere MLflow runs."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd


class SummarizerPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a 'dialogue' column. Output: one summary per dialogue."""

    def load_context(self, context):
        from llm_finetune.summarizer import Summarizer

        self.summarizer = Summarizer(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        params = params or {}
        dialogues = list(model_input["dialogue"])
        return self.summarizer.summarize(
            dialogues,
            max_new_tokens=int(params.get("max_new_tokens", 64)),
            num_beams=int(params.get("num_beams", 1)),
        )

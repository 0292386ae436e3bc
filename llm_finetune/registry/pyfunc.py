"""MLflow pyfunc wrapper, so a registered version loads and predicts anywhere MLflow runs."""

from __future__ import annotations

import mlflow.pyfunc


class SummarizerPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a 'dialogue' column (or a list of strings). Output: one summary per dialogue."""

    def load_context(self, context):
        from llm_finetune.summarizer import Summarizer

        self.summarizer = Summarizer(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None):
        params = params or {}
        dialogues = list(model_input["dialogue"]) if hasattr(model_input, "columns") else list(model_input)
        return self.summarizer.summarize(
            dialogues,
            max_new_tokens=int(params.get("max_new_tokens", 64)),
            num_beams=int(params.get("num_beams", 1)),
        )

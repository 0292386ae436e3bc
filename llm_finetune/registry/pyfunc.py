"""MLflow pyfunc wrapper, so a registered version loads and predicts anywhere MLflow runs, in its served kind."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from llm_finetune.inference.served import load_text_model


class TextModelPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with the kind's input columns ('dialogue' for text2text-generation, 'prompt' for
    text-generation, 'text' for text-classification, 'question' and 'context' for question-answering); params:
    GenerationParams fields (generation kinds). Output: one text per row (the label, the answer span)."""

    def load_context(self, context):
        self.model = load_text_model(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        # MLflow fills params left out by the caller from the signature's defaults (set at registration).
        return self.model.predict_frame(model_input, params)

"""MLflow pyfunc wrapper, so a registered version loads and predicts anywhere MLflow runs, in its served kind."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from llm_finetune.generation import GenerationParams


class TextModelPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with the kind's input column ('dialogue' for text2text-generation, 'prompt' for
    text-generation); params: GenerationParams fields. Output: one text per row."""

    def load_context(self, context):
        from llm_finetune.serving.kinds import load_text_model

        self.model = load_text_model(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        from llm_finetune.serving.kinds import INPUT_COLUMNS

        # MLflow fills params left out by the caller from the signature's defaults (set at registration).
        generation = GenerationParams.model_validate(params or {})
        return self.model.generate(list(model_input[INPUT_COLUMNS[self.model.kind]]), generation)

"""Served kinds: what a registered model answers, in its Hugging Face inference-container (DLC) format.

| kind                   | model                          | request `inputs`  | response item         |
| text2text-generation   | encoder-decoder (T5, FLAN-T5)  | dialogue text     | {"summary_text": ..}  |
| text-generation        | decoder-only (Llama, Mixtral)  | prompt text       | {"generated_text": ..}|

The kind is read from `llmft_serving.json` in the model folder when a trainer wrote one, else from the model's
config (`is_encoder_decoder`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llm_finetune.generation import GenerationParams

ServedKind = Literal["text2text-generation", "text-generation"]
SERVING_FILE = "llmft_serving.json"
OUTPUT_KEYS: dict[str, str] = {"text2text-generation": "summary_text", "text-generation": "generated_text"}
INPUT_COLUMNS: dict[str, str] = {"text2text-generation": "dialogue", "text-generation": "prompt"}


def served_kind(model_dir: str | Path) -> ServedKind:
    model_dir = Path(model_dir)
    if (model_dir / SERVING_FILE).exists():
        return json.loads((model_dir / SERVING_FILE).read_text())["kind"]
    config = json.loads((model_dir / "config.json").read_text())
    return "text2text-generation" if config.get("is_encoder_decoder") else "text-generation"


@dataclass
class TextModel:
    """A loaded model of one served kind: `generate(inputs, settings)` returns one text per input."""

    kind: ServedKind
    impl: object

    @property
    def output_key(self) -> str:
        return OUTPUT_KEYS[self.kind]

    def generate(self, inputs: list[str], generation: GenerationParams) -> list[str]:
        if self.kind == "text2text-generation":
            return self.impl.summarize(inputs, generation)
        return self.impl.generate(inputs, params=generation)


def load_text_model(model_dir: str | Path) -> TextModel:
    kind = served_kind(model_dir)
    if kind == "text2text-generation":
        from llm_finetune.summarizer import Summarizer

        return TextModel(kind, Summarizer(model_dir))
    from llm_finetune.generation import CausalGenerator

    return TextModel(kind, CausalGenerator(model_dir))

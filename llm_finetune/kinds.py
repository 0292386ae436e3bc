"""Served kinds: what a registered model answers from the project's own server, in shapes after the Hugging Face
pipelines (text2text-generation answers as the summarization pipeline does; a real container answers in its own
format: llm_finetune.containers).

| kind                   | model                          | request `inputs`              | response                      |
| text2text-generation   | encoder-decoder (T5, FLAN-T5)  | dialogue text                 | [{"summary_text": ..}]        |
| text-generation        | decoder-only (Llama, Mixtral)  | prompt text, or chat messages | [{"generated_text": ..}]      |
| text-classification    | sequence classifier            | text or [texts]               | [{"label": .., "score": ..}]  |
| question-answering     | encoder with a span head       | {"question", "context"} or [] | {"answer", "score", "start", "end"} |

The kind is read from `llmft_serving.json` in the model folder when a trainer wrote one, else from the model's
config (architecture, `is_encoder_decoder`). The two generation kinds share the server's own request format
(`Invocation`, batched); the others bring theirs: `parse_request(body)` and `respond(request)` (serving/server.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

ServedKind = Literal["text2text-generation", "text-generation", "text-classification", "question-answering"]
SERVING_FILE = "llmft_serving.json"
OUTPUT_KEYS: dict[str, str] = {"text2text-generation": "summary_text", "text-generation": "generated_text",
                               "text-classification": "label", "question-answering": "answer"}
INPUT_COLUMNS: dict[str, str] = {"text2text-generation": "dialogue", "text-generation": "prompt",
                                 "text-classification": "text", "question-answering": "question"}
EXTRA_INPUT_COLUMNS: dict[str, tuple[str, ...]] = {"question-answering": ("context",)}
GENERATION_KINDS = ("text2text-generation", "text-generation")




class EndpointTestCase(BaseModel):
    """One request of an endpoint test: a validation record's input and its reference answer."""

    id: str
    inputs: str | dict[str, str]  # text, or {"question", "context"} for question-answering
    reference: str
    prompt: str | None = None  # inputs in the prompt template the model was trained on, for a container that takes
    # the model's input as sent (the project's own server applies the template itself)


def serving_setting(model_dir: str | Path, name: str) -> dict | None:
    """A setting training saved in the serving file for serving to share (truncation, windows); None without one."""
    path = Path(model_dir) / SERVING_FILE
    return json.loads(path.read_text()).get(name) if path.exists() else None


def served_kind(model_dir: str | Path) -> ServedKind:
    model_dir = Path(model_dir)
    if (model_dir / SERVING_FILE).exists():
        return json.loads((model_dir / SERVING_FILE).read_text())["kind"]
    config = json.loads((model_dir / "config.json").read_text())
    architectures = " ".join(config.get("architectures") or [])
    if "ForQuestionAnswering" in architectures:
        return "question-answering"
    if "ForSequenceClassification" in architectures:
        return "text-classification"
    return "text2text-generation" if config.get("is_encoder_decoder") else "text-generation"


def input_example(kind: ServedKind, samples: list[dict]):
    """A one-row DataFrame of the kind's input columns for the registered model's signature."""
    import pandas as pd

    columns = (INPUT_COLUMNS[kind], *EXTRA_INPUT_COLUMNS.get(kind, ()))
    sample = next((s for s in samples if all(isinstance(s.get(c), str) for c in columns)), None)
    return pd.DataFrame({c: [sample[c] if sample else "Hello."] for c in columns})

"""Served kinds: what a registered model answers, in its Hugging Face inference-container (DLC) format.

| kind                   | model                          | request `inputs`              | response                      |
| text2text-generation   | encoder-decoder (T5, FLAN-T5)  | dialogue text                 | [{"summary_text": ..}]        |
| text-generation        | decoder-only (Llama, Mixtral)  | prompt text                   | [{"generated_text": ..}]      |
| text-classification    | sequence classifier            | text or [texts]               | [{"label": .., "score": ..}]  |
| question-answering     | encoder with a span head       | {"question", "context"} or [] | {"answer", "score", "start", "end"} |

The kind is read from `llmft_serving.json` in the model folder when a trainer wrote one, else from the model's
config (architecture, `is_encoder_decoder`). The two generation kinds share the server's own request format
(`Invocation`); the others bring theirs: `parse_request(body)` and `respond(request)` (see serving/server.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from llm_finetune.generation import GenerationParams

ServedKind = Literal["text2text-generation", "text-generation", "text-classification", "question-answering"]
SERVING_FILE = "llmft_serving.json"
OUTPUT_KEYS: dict[str, str] = {"text2text-generation": "summary_text", "text-generation": "generated_text",
                               "text-classification": "label", "question-answering": "answer"}
INPUT_COLUMNS: dict[str, str] = {"text2text-generation": "dialogue", "text-generation": "prompt",
                                 "text-classification": "text", "question-answering": "question"}
EXTRA_INPUT_COLUMNS: dict[str, tuple[str, ...]] = {"question-answering": ("context",)}
GENERATION_KINDS = ("text2text-generation", "text-generation")


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

    def predict_frame(self, frame, params: dict | None) -> list[str]:
        """MLflow pyfunc: one text per row of the kind's input column."""
        return self.generate(list(frame[INPUT_COLUMNS[self.kind]]), GenerationParams.model_validate(params or {}))


# ---------------------------------------------------------------------------------------------------------------
# Kinds with their own request format


class RequestError(ValueError):
    """A request a kind's parser refuses (HTTP 400); the message names each bad field."""


def validate_request(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()]
        raise RequestError("; ".join(problems)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _non_empty_text(v):
    if not isinstance(v, str) or not v.strip():
        raise PydanticCustomError("text", "must be a non-empty string")
    return v


class ClassificationParameters(_Strict):
    top_k: int | None = Field(None, ge=1, description="Labels per input, best first; unset: the best one as a dict")


class _Request(_Strict):
    @field_validator("parameters", mode="before", check_fields=False)
    @classmethod
    def _null_is_defaults(cls, v):
        return {} if v is None else v


class ClassificationRequest(_Request):
    inputs: str | list[str] = Field(description="One text or a list of texts")
    parameters: ClassificationParameters = Field(default_factory=ClassificationParameters)

    @field_validator("inputs", mode="before")
    @classmethod
    def _texts(cls, v):
        if isinstance(v, list) and v:
            return [_non_empty_text(t) for t in v]
        if isinstance(v, list):
            raise PydanticCustomError("inputs", "must be a non-empty string or a non-empty list of non-empty strings")
        return _non_empty_text(v)


class QuestionContext(_Strict):
    question: str
    context: str

    @field_validator("question", "context", mode="before")
    @classmethod
    def _text(cls, v):
        return _non_empty_text(v)


class QAParameters(_Strict):
    max_answer_len: int | None = Field(None, ge=1, le=512, description="Longest answer in tokens")


class QARequest(_Request):
    """Several questions: {"inputs": [{"question", "context"}, ...]}."""

    inputs: list[QuestionContext] = Field(min_length=1)
    parameters: QAParameters = Field(default_factory=QAParameters)


class QASingleRequest(QARequest):
    """One question: {"inputs": {"question", "context"}} (answered with one dict, not a list)."""

    inputs: QuestionContext


class ClassificationModel:
    """text-classification, as the Hugging Face container answers it: one {'label', 'score'} per input; with
    `top_k`, a list of that many per input (for a single text: the list itself)."""

    kind: ServedKind = "text-classification"

    def __init__(self, model_dir: str | Path):
        from llm_finetune.classifier import TextClassifier

        self.impl = TextClassifier(model_dir)

    def parse_request(self, body: bytes) -> ClassificationRequest:
        return validate_request(ClassificationRequest, body)

    def respond(self, request: ClassificationRequest) -> list:
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        top_k = request.parameters.top_k
        ranked = self.impl.classify(texts, top_k=top_k or 1)
        if top_k is None:
            return [r[0] for r in ranked]
        return ranked[0] if isinstance(request.inputs, str) else ranked

    def predict_frame(self, frame, params: dict | None = None) -> list[str]:
        return [r[0]["label"] for r in self.impl.classify(list(frame[INPUT_COLUMNS[self.kind]]))]


class QuestionAnsweringModel:
    """question-answering, as the Hugging Face container answers it: {'answer', 'score', 'start', 'end'} (character
    offsets into the context) per {'question', 'context'}; a list in, a list out."""

    kind: ServedKind = "question-answering"

    def __init__(self, model_dir: str | Path):
        from llm_finetune.extractive import ExtractiveReader

        self.impl = ExtractiveReader(model_dir)

    def parse_request(self, body: bytes) -> QARequest:
        try:
            single = isinstance(json.loads(body).get("inputs"), dict)
        except (ValueError, AttributeError):  # not JSON, or not an object: let validation name the problem
            single = False
        return validate_request(QASingleRequest if single else QARequest, body)

    def respond(self, request: QARequest) -> dict | list[dict]:
        single = isinstance(request, QASingleRequest)
        items = [request.inputs] if single else request.inputs
        answers = self.impl.answer([i.question for i in items], [i.context for i in items],
                                   max_answer_length=request.parameters.max_answer_len)
        return answers[0] if single else answers

    def predict_frame(self, frame, params: dict | None = None) -> list[str]:
        return [a["answer"] for a in self.impl.answer(list(frame["question"]), list(frame["context"]))]


def load_text_model(model_dir: str | Path) -> TextModel | ClassificationModel | QuestionAnsweringModel:
    kind = served_kind(model_dir)
    if kind == "text-classification":
        return ClassificationModel(model_dir)
    if kind == "question-answering":
        return QuestionAnsweringModel(model_dir)
    if kind == "text2text-generation":
        from llm_finetune.summarizer import Summarizer

        return TextModel(kind, Summarizer(model_dir))
    from llm_finetune.generation import CausalGenerator

    return TextModel(kind, CausalGenerator(model_dir))


# ---------------------------------------------------------------------------------------------------------------
# Endpoint tests and registration: a request and an input example per kind


def endpoint_request(kind: ServedKind, inputs: str | dict, generation: GenerationParams) -> dict:
    """The /invocations body an endpoint test sends for one case."""
    if kind in GENERATION_KINDS:
        return {"inputs": inputs, "parameters": generation.model_dump()}
    return {"inputs": inputs}


def answer_text(kind: ServedKind, answer) -> str:
    """The text of an endpoint's answer to one input (the label, the answer span, the generated text)."""
    first = answer[0] if isinstance(answer, list) else answer
    return first[OUTPUT_KEYS[kind]]


def input_example(kind: ServedKind, samples: list[dict]):
    """A one-row DataFrame of the kind's input columns for the registered model's signature."""
    import pandas as pd

    columns = (INPUT_COLUMNS[kind], *EXTRA_INPUT_COLUMNS.get(kind, ()))
    sample = next((s for s in samples if all(isinstance(s.get(c), str) for c in columns)), None)
    return pd.DataFrame({c: [sample[c] if sample else "Hello."] for c in columns})

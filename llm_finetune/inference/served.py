"""Loaded models of each served kind (llm_finetune.kinds): encode, complete and answer requests in the kind's format.
Each kind registers its loader in LOADERS; the kind table itself holds no model code."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from llm_finetune.generation import CausalGenerator, Completion, GenerationParams, Prompt
from llm_finetune.inference.classifier import TextClassifier
from llm_finetune.inference.extractive import ExtractiveReader
from llm_finetune.inference.summarizer import Summarizer
from llm_finetune.kinds import INPUT_COLUMNS, OUTPUT_KEYS, ServedKind, served_kind


class PromptRejected(ValueError):
    """A prompt the model cannot take (too long, chat messages without a chat template): the request's 400."""


@dataclass
class Encoded:
    """Prompts ready to generate from: as given, as token ids, and each one's token budget when the request
    set max_length (None: max_new_tokens for all)."""

    prompts: list[Prompt]
    ids: list[list[int]]
    budgets: list[int] | None = None

    @staticmethod
    def join(parts: list[Encoded]) -> Encoded:
        budgets = [b for p in parts for b in p.budgets] if all(p.budgets for p in parts) else None
        return Encoded([x for p in parts for x in p.prompts], [x for p in parts for x in p.ids], budgets)


def batch_key(params: GenerationParams, max_length: int | None) -> Hashable | None:
    """Requests with equal keys may share one `generate` call; None: run alone.

    Seeded sampling always runs alone: its answer must depend on the request and its seed only, never on the
    requests it happens to share a batch with. The seed of a greedy or beam search request changes nothing."""
    if params.do_sample and params.seed is not None:
        return None
    return params.model_dump_json(exclude={"seed"}), max_length


class TextModel:
    """A loaded model of one served kind: encodes prompts and completes them (`generate` for the pyfunc)."""

    def __init__(self, kind: ServedKind, impl, name: str = ""):
        self.kind = kind
        self.impl = impl
        self.name = name

    @property
    def output_key(self) -> str:
        return OUTPUT_KEYS[self.kind]

    @property
    def tokenizer(self):
        return self.impl.tokenizer

    @property
    def causal_lm(self):
        """The transformers model of a text-generation kind (decoder-only: what continuous batching runs), or None."""
        return self.impl.model if self.kind == "text-generation" else None

    def generate(self, inputs: list[str], generation: GenerationParams) -> list[str]:
        if self.kind == "text2text-generation":
            return self.impl.summarize(inputs, generation)
        return self.impl.generate(inputs, params=generation)

    def predict_frame(self, frame, params: dict | None) -> list[str]:
        """MLflow pyfunc: one text per row of the kind's input column."""
        return self.generate(list(frame[INPUT_COLUMNS[self.kind]]), GenerationParams.model_validate(params or {}))

    def encode(self, prompts: list[Prompt], params: GenerationParams, max_length: int | None = None) -> Encoded:
        """Token ids and budgets, or PromptRejected naming the input that does not fit."""
        if self.kind == "text2text-generation":
            if not all(isinstance(p, str) for p in prompts):
                raise PromptRejected("messages: this text2text-generation model takes {\"inputs\": ...}, not chat")
            ids = self.impl.encode(prompts)
        else:
            try:
                ids = self.impl.prompt_ids(prompts, params.max_prompt_tokens)
            except ValueError as e:  # chat messages without a chat template
                raise PromptRejected(f"messages: {e}") from None
        budgets = None if max_length is None else [self._budget(i, len(t), max_length) for i, t in enumerate(ids)]
        self._check_context(ids, budgets or [params.max_new_tokens] * len(ids))
        return Encoded(prompts, ids, budgets)

    def complete(self, encoded: Encoded, params: GenerationParams, *, batch_size: int = 16,
                 **generate_extras) -> list[Completion]:
        return self.impl.complete(encoded.ids, params, batch_size=batch_size, budgets=encoded.budgets,
                                  **generate_extras)

    def _budget(self, index: int, prompt_tokens: int, max_length: int) -> int:
        # An encoder-decoder's max_length counts the decoder's start token; a decoder-only's counts the prompt.
        used = 1 if self.kind == "text2text-generation" else prompt_tokens
        if max_length <= used:
            raise PromptRejected(f"parameters.max_length: {max_length} leaves no room to generate after "
                                 f"input {index}'s {used} tokens")
        return max_length - used

    def _check_context(self, ids: list[list[int]], new_tokens: list[int]) -> None:
        context = getattr(self.impl.model.config, "max_position_embeddings", None)
        if self.kind != "text-generation" or not context:
            return
        for i, (prompt, new) in enumerate(zip(ids, new_tokens)):
            if len(prompt) + new > context:
                raise PromptRejected(
                    f"inputs: input {i} has {len(prompt)} tokens, and with {new} new tokens it exceeds the model's "
                    f"context of {context} tokens; shorten it or set parameters.max_prompt_tokens")


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

    def __init__(self, model_dir: str | Path, name: str = ""):
        self.impl = TextClassifier(model_dir)
        self.name = name

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

    def __init__(self, model_dir: str | Path, name: str = ""):
        self.impl = ExtractiveReader(model_dir)
        self.name = name

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


ServedModel = TextModel | ClassificationModel | QuestionAnsweringModel
LOADERS: dict[ServedKind, Callable[[Path, str], ServedModel]] = {}


def loads(kind: ServedKind):
    """Register a kind's loader `(model_dir, name) -> served model`: a new kind adds one, and no switchboard."""
    def register(loader: Callable[[Path, str], ServedModel]):
        LOADERS[kind] = loader
        return loader
    return register


@loads("text2text-generation")
def _text2text(model_dir: Path, name: str) -> TextModel:
    return TextModel("text2text-generation", Summarizer(model_dir), name)


@loads("text-generation")
def _causal(model_dir: Path, name: str) -> TextModel:
    return TextModel("text-generation", CausalGenerator(model_dir), name)


loads("text-classification")(ClassificationModel)
loads("question-answering")(QuestionAnsweringModel)


def load_text_model(model_dir: str | Path, name: str | None = None) -> ServedModel:
    """The model in a folder, loaded by its kind's loader (the kind: llm_finetune.kinds.served_kind)."""
    model = LOADERS[served_kind(model_dir)](Path(model_dir), name or Path(model_dir).name)
    if isinstance(model, TextModel):  # the tokenizer's one-time setup, before threads
        model.encode(["warm-up"], GenerationParams(max_new_tokens=1))
    return model

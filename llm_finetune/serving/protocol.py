"""What the endpoint reads and answers, in the shapes SageMaker's Hugging Face, TGI and LMI containers use.

- `{"inputs": str | [str], "parameters": {...}}` (HF inference containers, TGI `/generate`): `RequestParameters`
  are GenerationParams plus TGI's answer options; answered `[{"generated_text": ...}]` (`summary_text` for
  text2text-generation), with `details` when asked.
- `{"messages": [...], ...}` (TGI Messages API, SageMaker LMI, OpenAI): `ChatRequest`, answered as a
  `chat.completion` (or `chat.completion.chunk` events when streamed).

Where a field is left out, TGI's behaviour holds: `inputs` requests sample when do_sample is absent but temperature
(!= 1), top_p (< 1) or top_k (> 0) is given; chat requests sample when temperature > 0 (absent or 0: greedy).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from llm_finetune.generation import Completion, GenerationParams, not_a_boolean


class InvocationError(ValueError):
    """A request refused with 400; the message names each bad field."""


class RequestParameters(GenerationParams):
    """`parameters` of an `inputs` request: the generation settings plus TGI's answer options."""

    max_length: int | None = Field(
        None, ge=1, le=4096, description="Instead of max_new_tokens: prompt plus answer tokens (decoder-only "
        "models), answer tokens including the decoder's start token (encoder-decoder)")
    return_full_text: StrictBool = Field(False, description="text-generation: the prompt followed by the answer")
    details: StrictBool = Field(False, description="Add finish_reason, generated_tokens and seed to each answer")

    @field_validator("max_length", mode="before")
    @classmethod
    def _max_length_is_a_number(cls, v):
        return not_a_boolean(v)

    @model_validator(mode="after")
    def _tgi_defaults(self) -> RequestParameters:
        if self.max_length is not None and "max_new_tokens" in self.model_fields_set:
            raise PydanticCustomError("length_twice", "give max_new_tokens or max_length, not both")
        if "do_sample" not in self.model_fields_set:  # as TGI: a sampling setting asks for sampling
            given = self.model_fields_set
            self.do_sample = (("temperature" in given and self.temperature != 1.0)
                              or ("top_p" in given and self.top_p < 1.0) or ("top_k" in given and self.top_k > 0))
        return self

    def generation(self) -> GenerationParams:
        return GenerationParams.model_validate(self.model_dump(include=set(GenerationParams.model_fields)))


class Invocation(BaseModel):
    """The body of an `inputs` request."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(description="One input text (a dialogue, a prompt), or a list of them")
    parameters: RequestParameters = Field(default_factory=RequestParameters)

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not v or not all(isinstance(d, str) and d.strip() for d in v):
            raise PydanticCustomError(
                "inputs", "must be a non-empty string or a non-empty list of non-empty strings"
            )
        return v

    @field_validator("parameters", mode="before")
    @classmethod
    def _null_is_defaults(cls, v):
        return {} if v is None else v


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


# Chat fields that are generation settings, by their GenerationParams name (validated there, named as sent).
CHAT_SETTINGS = {"max_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                 "seed": "seed", "stop": "stop", "do_sample": "do_sample", "num_beams": "num_beams",
                 "repetition_penalty": "repetition_penalty", "no_repeat_ngram_size": "no_repeat_ngram_size"}


class ChatRequest(BaseModel):
    """The body of a chat request; generation settings are checked by `chat_generation`."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = Field(None, description="Accepted and ignored: the endpoint serves one model")
    n: Literal[1] = Field(1, description="Answers per request: only 1")
    stream: StrictBool = Field(False, description="Answer as server-sent chat.completion.chunk events")
    max_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    seed: Any = None
    stop: Any = None
    do_sample: Any = None
    num_beams: Any = None
    repetition_penalty: Any = None
    no_repeat_ngram_size: Any = None


def chat_generation(chat: ChatRequest) -> GenerationParams:
    """The request's generation settings; temperature 0 or absent is greedy, above 0 samples (unless do_sample
    says otherwise). Raises InvocationError naming the chat fields."""
    given = {CHAT_SETTINGS[k]: v for k, v in chat.model_dump(include=set(CHAT_SETTINGS)).items() if v is not None}
    problems = []
    temperature = given.get("temperature")
    if type(temperature) in (int, float) and temperature == 0:
        if given.get("do_sample") is True:
            problems.append("temperature: 0 means greedy decoding; give a temperature > 0 to sample")
        del given["temperature"]
    elif "temperature" in given and "do_sample" not in given:
        given["do_sample"] = True
    try:
        params = GenerationParams.model_validate(given)
    except ValidationError as e:
        names = {v: k for k, v in CHAT_SETTINGS.items()}
        problems += [_problem(err, rename=names) for err in e.errors()]
    if problems:
        raise InvocationError("; ".join(sorted(problems)))
    return params


def _problem(err: dict, rename: dict[str, str] | None = None) -> str:
    loc = [str(p) for p in err["loc"]]
    if loc and rename:
        loc[0] = rename.get(loc[0], loc[0])
    return f"{'.'.join(loc) or 'body'}: {err['msg']}"


def _validated(model: type[BaseModel], body: bytes | dict):
    try:
        return model.model_validate_json(body) if isinstance(body, bytes) else model.model_validate(body)
    except ValidationError as e:
        raise InvocationError("; ".join(_problem(err) for err in e.errors())) from None


def parse_invocation(body: bytes) -> Invocation:
    """The validated `inputs` request, or InvocationError naming every bad field ('parameters.num_beams: ...')."""
    return _validated(Invocation, body)


def parse_chat(body: bytes) -> tuple[ChatRequest, GenerationParams]:
    """The validated chat request and its generation settings, or InvocationError naming every bad field."""
    chat = _validated(ChatRequest, body)
    return chat, chat_generation(chat)


def parse_request(body: bytes) -> Invocation | tuple[ChatRequest, GenerationParams]:
    """/invocations takes both shapes: a JSON object with `messages` is a chat request."""
    try:
        data = pydantic_core.from_json(body)
    except ValueError:
        data = None  # the model's own parse reports where the JSON breaks
    if isinstance(data, dict) and "messages" in data:
        return parse_chat(body)
    return parse_invocation(body)


def generated_item(output_key: str, text: str, completion: Completion, details: bool, seed: int | None) -> dict:
    """One answer of an `inputs` request; `details` as TGI's (finish_reason, generated_tokens, seed)."""
    item: dict[str, Any] = {output_key: text}
    if details:
        item["details"] = {"finish_reason": completion.finish_reason,
                           "generated_tokens": completion.generated_tokens, "seed": seed}
    return item


def chat_finish_reason(completion: Completion) -> str:
    return "length" if completion.finish_reason == "length" else "stop"


def usage(completion: Completion) -> dict:
    return {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.generated_tokens,
            "total_tokens": completion.prompt_tokens + completion.generated_tokens}


class ChatAnswer:
    """Ids and timestamps shared by a chat answer and all of its streamed chunks."""

    def __init__(self, model: str):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def completion(self, completion: Completion) -> dict:
        return {**self._head("chat.completion"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                             "finish_reason": chat_finish_reason(completion)}],
                "usage": usage(completion)}

    def chunk(self, delta: dict, completion: Completion | None = None) -> dict:
        """A stream event; the last one carries finish_reason and usage."""
        chunk = {**self._head("chat.completion.chunk"),
                 "choices": [{"index": 0, "delta": delta,
                              "finish_reason": chat_finish_reason(completion) if completion else None}]}
        if completion:
            chunk["usage"] = usage(completion)
        return chunk

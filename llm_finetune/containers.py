"""Inference containers and their dialects: what an endpoint test sends to the container that serves the model and
where the answer's text is. Only the settings that are set go out, named and bounded as that container takes them.

| container | image repository                        | `parameters` sent                 | answer                     |
| hf-dlc    | huggingface-pytorch-inference           | generate kwargs (the pipeline's)  | [{HF_TASK pipeline's key}] |
| tgi       | huggingface-pytorch-tgi-inference, tgi* | TGI GenerateParameters            | [{"generated_text"}]       |
| lmi       | djl-inference                           | LMI GenerationParameters          | {"generated_text"}         |
| local     | (llm_finetune.serving.server)           | those unlike the server defaults  | [{kinds.OUTPUT_KEYS[kind]}]|

What each dialect relies on:
- HF DLC: sagemaker-huggingface-inference-toolkit calls `pipeline(inputs, **parameters)`, so every parameter is a
  generate kwarg and transformers refuses unused ones (`stop`, `seed`: "model_kwargs are not used"); the
  text2text-generation pipeline answers `generated_text`, summarization `summary_text`, text-generation the prompt
  plus the answer unless `return_full_text` is false.
- TGI: router/src/validation.rs refuses top_p outside (0, 1), top_k <= 0, temperature <= 0, max_new_tokens 0 and more
  than 4 `stop` strings (422); its SageMaker route answers a one-item list. It has no beam search and no
  no_repeat_ngram_size (unknown fields are ignored, so they are refused here instead); `truncate` keeps the last N
  input tokens.
- LMI (djl-serving rolling batch, docs.djl.ai "LMI handlers Inference API Schema"): `stop_sequences`; answers one
  object `{"generated_text"}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from llm_finetune.generation import GenerationParams
from llm_finetune.kinds import OUTPUT_KEYS, EndpointTestCase

SageMakerContainer = Literal["hf-dlc", "tgi", "lmi"]
Container = SageMakerContainer | Literal["local"]

# Image repository name (between the registry's '/' and the tag's ':') -> container; first match wins.
IMAGE_CONTAINERS: tuple[tuple[str, SageMakerContainer], ...] = (
    ("tgi", "tgi"), ("text-generation-inference", "tgi"), ("djl-inference", "lmi"),
    ("huggingface-pytorch-inference", "hf-dlc"))
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "seed")  # sent only when do_sample (GenerationParams says so)
GENERATION_TASKS = ("text2text-generation", "summarization", "text-generation")
# The answer key of each transformers pipeline task (what the HF DLC answers for its HF_TASK).
PIPELINE_OUTPUT_KEYS = {"text2text-generation": "generated_text", "summarization": "summary_text",
                        "text-generation": "generated_text", "text-classification": "label",
                        "question-answering": "answer"}
ALWAYS: tuple = ()  # a Setting sent whatever its value


class ContainerMismatch(ValueError):
    """Generation settings the serving container cannot take, or an answer not in its format."""


@dataclass(frozen=True)
class Setting:
    """How a GenerationParams field goes to a container: under `name` (None: the container has no such setting),
    left out when its value is one of `omitted` (what the container assumes when it is absent)."""

    name: str | None
    omitted: tuple = ALWAYS


@dataclass(frozen=True)
class Dialect:
    container: Container
    settings: dict[str, Setting]
    answer_keys: dict[str, str]  # task -> the key holding the answer's text
    one_object: bool = False  # answers one object, not a list
    max_stop: int | None = None
    task_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)  # sent for a task whatever the recipe
    applies_prompt_template: bool = False  # renders the model's prompt template itself (else the client sends it)

    def inputs_of(self, case: EndpointTestCase) -> str | dict:
        """What this container gets as a test case's input: the prompt rendered as in training unless it renders it."""
        return case.inputs if self.applies_prompt_template or case.prompt is None else case.prompt

    def problems(self, generation: GenerationParams, where: str = "endpoint.generation") -> list[str]:
        """Settings the container cannot take, named as recipe fields."""
        out = [f"{where}.{name}: the {self.container} container has no such setting; set it to "
               f"{json.dumps(self.settings[name].omitted[0])}" for name, _ in self._set(generation)
               if self.settings[name].name is None]
        if self.max_stop is not None and len(generation.stop) > self.max_stop:
            out.append(f"{where}.stop: the {self.container} container takes at most {self.max_stop} stop strings, "
                       f"not {len(generation.stop)}")
        return out

    def parameters(self, task: str, generation: GenerationParams) -> dict[str, Any]:
        """The request's `parameters`; ContainerMismatch naming every setting the container cannot take."""
        if problems := self.problems(generation):
            raise ContainerMismatch("; ".join(problems))
        sent = {self.settings[name].name: value for name, value in self._set(generation)}
        return {**sent, **self.task_parameters.get(task, {})}

    def request(self, task: str, inputs: str | dict, generation: GenerationParams) -> dict:
        """The /invocations body for one input; generation tasks carry the generation settings."""
        if task in GENERATION_TASKS:
            return {"inputs": inputs, "parameters": self.parameters(task, generation)}
        return {"inputs": inputs}

    def answer_text(self, task: str, answer: Any) -> str:
        """The text of the answer to one input, read where this container puts it for `task`."""
        key = self.answer_keys.get(task, "generated_text")
        first = answer[0] if isinstance(answer, list) and answer and not self.one_object else answer
        if not isinstance(first, dict) or key not in first:  # (one question-answering input: one object anywhere)
            shape = "{" if self.one_object else "[{"
            raise ContainerMismatch(f"the {self.container} container ({task}) answered {str(answer)[:200]!r}, "
                                    f"expected {shape}'{key}': ...")
        return first[key]

    def _set(self, generation: GenerationParams):
        for name, value in generation.model_dump().items():
            setting = self.settings[name]
            if name in SAMPLING_ONLY and not generation.do_sample:
                continue
            if setting.omitted and value in setting.omitted:
                continue
            yield name, value


def _named(**settings: Setting) -> dict[str, Setting]:
    if missing := set(GenerationParams.model_fields) - set(settings):  # a new GenerationParams field needs a row
        raise TypeError(f"a dialect must say how it sends {sorted(missing)}")
    return settings


# HF DLC: the settings the project's own generate pins (generation.generate_options) are always sent, so a model's
# generation_config.json cannot change answers between evaluation and endpoint; transformers takes top_p 1.0.
HF_DLC = Dialect("hf-dlc", _named(
    max_new_tokens=Setting("max_new_tokens"), num_beams=Setting("num_beams"), do_sample=Setting("do_sample"),
    temperature=Setting("temperature"), top_p=Setting("top_p"), top_k=Setting("top_k"),
    no_repeat_ngram_size=Setting("no_repeat_ngram_size"), repetition_penalty=Setting("repetition_penalty"),
    seed=Setting(None, (None,)), stop=Setting(None, ([],)), max_prompt_tokens=Setting(None, (None,))),
    PIPELINE_OUTPUT_KEYS, task_parameters={"text-generation": {"return_full_text": False}})

# TGI and LMI: absent settings are off, so the neutral values stay out (TGI refuses top_p 1.0 and top_k 0).
_SERVER_SETTINGS = {
    "max_new_tokens": Setting("max_new_tokens"), "do_sample": Setting("do_sample", (False,)),
    "temperature": Setting("temperature", (1.0,)), "top_p": Setting("top_p", (1.0,)), "top_k": Setting("top_k", (0,)),
    "repetition_penalty": Setting("repetition_penalty", (1.0,)), "seed": Setting("seed", (None,)),
    "num_beams": Setting(None, (1,)), "no_repeat_ngram_size": Setting(None, (0,))}
TGI = Dialect("tgi", _named(**_SERVER_SETTINGS, stop=Setting("stop", ([],)),
                            max_prompt_tokens=Setting("truncate", (None,))), {}, max_stop=4)
LMI = Dialect("lmi", _named(**_SERVER_SETTINGS, stop=Setting("stop_sequences", ([],)),
                            max_prompt_tokens=Setting(None, (None,))), {}, one_object=True)

# The project's own server: every setting under its own name, left out where it equals the server's default.
LOCAL = Dialect("local", _named(**{name: Setting(name, (info.get_default(call_default_factory=True),))
                                   for name, info in GenerationParams.model_fields.items()}), OUTPUT_KEYS,
                applies_prompt_template=True)

DIALECTS: dict[Container, Dialect] = {d.container: d for d in (HF_DLC, TGI, LMI, LOCAL)}


def container_for_image(image_uri: str) -> SageMakerContainer:
    """The container an inference image runs, from its repository name; ContainerMismatch when it is none we know."""
    repository = image_uri.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    for pattern, container in IMAGE_CONTAINERS:
        if pattern in repository:
            return container
    raise ContainerMismatch(f"image {image_uri!r} is no inference container this project knows (Hugging Face DLC, "
                            f"TGI, LMI): set endpoint.sagemaker.container to one of "
                            f"{', '.join(get_args(SageMakerContainer))}")

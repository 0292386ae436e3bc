"""The base model of a recipe: its Hub id / local path as given, or a tiny offline model built for its data.

Each model spec type registers its builder with `@builds(SpecType)`; a new use case adds a spec type and a builder,
and edits no switchboard. A registered base model (models:/name@alias) is fetched by the caller's `fetch_registered`
(the registry sits above this layer)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.raw_text import documents
from llm_finetune.data.shapes import tokenizer_corpus
from llm_finetune.fingerprint import fingerprint
from llm_finetune.models.gpt2 import build_gpt2
from llm_finetune.models.sources import bundled_model_path
from llm_finetune.models.tiny_causal import build_tiny_causal_for_instructions, build_tiny_causal_lm
from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization
from llm_finetune.recipes import (
    CausalModelSpec,
    ClassifierModelSpec,
    DataSource,
    InstructionData,
    ModelSpec,
    PretrainModelSpec,
)

FetchRegistered = Callable[[str], str]  # models:/name@alias -> a local model folder
Builder = Callable[[Any, DataSource, ValidatedData, Path, FetchRegistered | None], str]
BUILDERS: dict[type[BaseModel], Builder] = {}


class StartingModel(BaseModel):
    """The model a run trains: the registry's champion, or the recipe's base model when there is none yet."""

    path: str
    label: str  # 'champion v3' or 'base model'
    version: str | None = None


def builds(spec_type: type[BaseModel]) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        BUILDERS[spec_type] = builder
        return builder
    return register


def base_model_path(model: BaseModel, data: DataSource, validated: ValidatedData, cache_root: str | Path,
                    fetch_registered: FetchRegistered | None = None) -> str:
    """Name or local directory that `from_pretrained` accepts; a tiny model's tokenizer is trained on `data`."""
    if model.name_or_path:
        return model.name_or_path
    builder = next((BUILDERS[t] for t in type(model).__mro__ if t in BUILDERS), None)
    if builder is None:
        raise TypeError(f"no base-model builder for {type(model).__name__}: register one with @builds")
    return builder(model, data, validated, Path(cache_root), fetch_registered)


@builds(PretrainModelSpec)
def _gpt2_from_scratch(model: PretrainModelSpec, data, validated, cache_root, fetch_registered) -> str:
    corpus = documents(validated, "train", data.text_field, data.max_train_records)  # RawTextData
    return str(build_gpt2(model.config, corpus, cache_root,
                          corpus_key=fingerprint(validated.fingerprint, data.text_field, data.max_train_records)))


@builds(ClassifierModelSpec)
def _classifier_base(model: ClassifierModelSpec, data, validated, cache_root, fetch_registered) -> str:
    if model.bundled:
        return str(bundled_model_path(model.bundled))
    if model.gpt2:
        if model.gpt2.tokenizer != "gpt2":
            raise ValueError("model.gpt2.tokenizer: a classifier's GPT-2 base uses the GPT-2 tokenizer ('gpt2')")
        return str(build_gpt2(model.gpt2, [], cache_root, corpus_key=""))
    if model.registered:
        if fetch_registered is None:
            raise ValueError("a registered base model needs the recipe's tracking URI")
        return fetch_registered(model.registered)
    return _tiny_causal_for_text(model, data, validated, cache_root)


@builds(CausalModelSpec)
def _causal_base(model: CausalModelSpec, data, validated, cache_root, fetch_registered) -> str:
    if isinstance(data, InstructionData):
        return str(build_tiny_causal_for_instructions(model.tiny, data, validated, cache_root))
    return _tiny_causal_for_text(model, data, validated, cache_root)


def _tiny_causal_for_text(model: CausalModelSpec | ClassifierModelSpec, data, validated, cache_root: Path) -> str:
    # the corpus depends on the data and its fields, not on how long sequences are cut
    cut = {"max_length", "truncation", "head_fraction", "overlong_records", "max_validation_records"}
    key = fingerprint(validated.fingerprint, type(data).__name__, data.model_dump(exclude=cut))
    return str(build_tiny_causal_lm(model.tiny, tokenizer_corpus(validated, data), cache_root, corpus_key=key))


@builds(ModelSpec)
def _tiny_t5(model: ModelSpec, data, validated, cache_root, fetch_registered) -> str:
    return str(build_tiny_t5_for_summarization(model.tiny, data, validated, cache_root))

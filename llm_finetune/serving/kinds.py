"""Served kinds: what a registered model answers, in its Hugging Face inference-container (DLC) format.

| kind                   | model                          | request `inputs`  | response item         |
| text2text-generation   | encoder-decoder (T5, FLAN-T5)  | dialogue text     | {"summary_text": ..}  |
| text-generation        | decoder-only (Llama, Mixtral)  | prompt text, or chat messages | {"generated_text": ..}|

The kind is read from `llmft_serving.json` in the model folder when a trainer wrote one, else from the model's
config (`is_encoder_decoder`). A new kind (text-classification) adds a loader to `LOADERS` and its answer shape.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llm_finetune.generation import Completion, GenerationParams, Prompt

ServedKind = Literal["text2text-generation", "text-generation"]
SERVING_FILE = "llmft_serving.json"
OUTPUT_KEYS: dict[str, str] = {"text2text-generation": "summary_text", "text-generation": "generated_text"}
INPUT_COLUMNS: dict[str, str] = {"text2text-generation": "dialogue", "text-generation": "prompt"}


class PromptRejected(ValueError):
    """A prompt the model cannot take (too long, chat messages without a chat template): the request's 400."""


def served_kind(model_dir: str | Path) -> ServedKind:
    model_dir = Path(model_dir)
    if (model_dir / SERVING_FILE).exists():
        return json.loads((model_dir / SERVING_FILE).read_text())["kind"]
    config = json.loads((model_dir / "config.json").read_text())
    return "text2text-generation" if config.get("is_encoder_decoder") else "text-generation"


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

    def generate(self, inputs: list[str], generation: GenerationParams) -> list[str]:
        if self.kind == "text2text-generation":
            return self.impl.summarize(inputs, generation)
        return self.impl.generate(inputs, params=generation)

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


def _load_text2text(model_dir: str | Path):
    from llm_finetune.summarizer import Summarizer

    return Summarizer(model_dir)


def _load_causal(model_dir: str | Path):
    from llm_finetune.generation import CausalGenerator

    return CausalGenerator(model_dir)


LOADERS = {"text2text-generation": _load_text2text, "text-generation": _load_causal}


def load_text_model(model_dir: str | Path, name: str | None = None) -> TextModel:
    kind = served_kind(model_dir)
    model = TextModel(kind, LOADERS[kind](model_dir), name or Path(model_dir).name)
    model.encode(["warm-up"], GenerationParams(max_new_tokens=1))  # the tokenizer's one-time setup, before threads
    return model


def load_served_model(model: str, tracking_uri: str, cache_dir: str | Path) -> TextModel:
    """A model folder, or a registered version: 'models:/name/3' or 'models:/name@alias' (approved ones only)."""
    if not model.startswith("models:/"):
        return load_text_model(model)
    from llm_finetune.registry.mlflow_registry import download_registered_model

    return load_text_model(download_registered_model(tracking_uri, model, cache_dir), name=model)

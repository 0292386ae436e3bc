"""Generation: the settings (one home for their defaults and bounds: recipes, evaluation, pyfunc, endpoint
requests), and batched generation from a saved decoder-only model directory (Llama, Mixtral, GPT-2, ...) with chat
messages rendered by the tokenizer's chat template, or raw strings. `Summarizer` is the encoder-decoder peer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from llm_finetune.forms import in_declared_order

Prompt = str | list[dict]  # a raw string, or chat messages [{"role": ..., "content": ...}, ...]


class GenerationParams(BaseModel):
    """Keyword arguments for `model.generate`; every field is range-checked, unknown ones are refused.
    Greedy unless do_sample is set."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=in_declared_order)

    max_new_tokens: int = Field(64, ge=1, le=2048, description="Most tokens generated per answer")
    num_beams: int = Field(1, ge=1, le=16, description="1 is greedy search")
    do_sample: bool = Field(False, description="Sample instead of greedy / beam search")
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling only")
    top_p: float = Field(1.0, gt=0, le=1, description="Sampling only")
    top_k: int = Field(50, ge=0, description="Sampling only; 0 disables it")
    no_repeat_ngram_size: int = Field(
        0, ge=0, le=64, description="Never repeat an n-gram of this size; 0 turns it off"
    )
    # 1.2: the fine-tuned tiny model loops ("to to to ...") without it; it beat no_repeat_ngram_size 2 and 3 on
    # ROUGE-L, which also forbid the repeats that half the references contain (benchmarks/generation_settings.py).
    repetition_penalty: float = Field(
        1.2, gt=0, le=10, description="Above 1 discourages tokens already generated; 1.0 turns it off"
    )
    seed: int | None = Field(None, ge=0, le=2**64 - 1, description="Seeds torch before generating (sampling)")
    stop: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, max_length=16, description="Text is cut at the first of these strings (a string: one)"
    )
    max_prompt_tokens: int | None = Field(
        None, gt=0, description="Decoder-only models: keep only the last N prompt tokens"
    )

    @field_validator("max_new_tokens", "num_beams", "temperature", "top_p", "top_k", "no_repeat_ngram_size",
                     "repetition_penalty", "seed", "max_prompt_tokens", mode="before")
    @classmethod
    def _no_booleans(cls, v):
        return not_a_boolean(v)

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


def not_a_boolean(v):
    """A before-validator for numbers: pydantic would read true as 1; in a request that is a mistake."""
    if isinstance(v, bool):
        raise PydanticCustomError("number_not_bool", "Input should be a number, not a boolean")
    return v


def generate_options(params: GenerationParams, tokenizer) -> dict:
    """`model.generate` keyword arguments for these settings (sampling ones only when sampling)."""
    options = {
        "max_new_tokens": params.max_new_tokens,
        "num_beams": params.num_beams,
        "do_sample": params.do_sample,
        "repetition_penalty": params.repetition_penalty,
        "no_repeat_ngram_size": params.no_repeat_ngram_size,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if params.do_sample:  # greedy/beam search warns about sampling settings it ignores
        options.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    if params.stop:  # stop generating early too; the text is still cut exactly by cut_at_stop
        options.update(stop_strings=params.stop, tokenizer=tokenizer)
    return options


def render_prompt(tokenizer, prompt: Prompt) -> tuple[str, bool]:
    """(text, whether the tokenizer should still add its special tokens): chat messages go through the chat
    template, which writes its own BOS; raw strings are tokenized as they are."""
    if isinstance(prompt, str):
        return prompt, True
    if tokenizer.chat_template is None:
        raise ValueError("chat messages given, but the tokenizer has no chat_template: pass raw strings instead")
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True), False


def cut_at_stop(text: str, stop: list[str]) -> str:
    """`text` up to the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


FinishReason = Literal["length", "eos_token", "stop_sequence"]  # TGI's `details.finish_reason` values


@dataclass(frozen=True)
class Completion:
    """One generated answer: `text` cut at the first stop string and stripped, `raw_text` the same before stripping,
    token counts (generated ones include the EOS token, as TGI counts them) and why generation ended."""

    text: str
    raw_text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: FinishReason


def eos_token_ids(model, tokenizer) -> set[int]:
    """Every token id that ends an answer: the generation config's (an int or a list) and the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    return ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def completions(tokenizer, new_tokens, prompt_tokens: list[int], stop: list[str], eos_ids: set[int],
                budgets: list[int] | None = None) -> list[Completion]:
    """A Completion per row of generated token ids (pads after the end dropped); a row is cut to its budget first."""
    out = []
    for i, row in enumerate(new_tokens.tolist()):
        row = row[: budgets[i]] if budgets else row
        ended = next((k + 1 for k, t in enumerate(row) if t in eos_ids), None)
        if ended is None:  # rows that stopped early (stop strings) are padded up to the batch's longest row
            ended = len(row)
            while ended and row[ended - 1] == tokenizer.pad_token_id:
                ended -= 1
        decoded = tokenizer.decode(row[:ended], skip_special_tokens=True)
        raw = cut_at_stop(decoded, stop)
        reason: FinishReason = ("stop_sequence" if len(raw) < len(decoded) else
                                "eos_token" if ended and row[ended - 1] in eos_ids else "length")
        out.append(Completion(raw.strip(), raw, prompt_tokens[i], ended, reason))
    return out


def complete_in_batches(model, tokenizer, ids: list[list[int]], params: GenerationParams, options: dict, *,
                        batch_size: int, budgets: list[int] | None = None, **generate_extras) -> list[Completion]:
    """Generate for encoded prompts in batches of similar length (less padding), in input order. `budgets` caps
    each answer's tokens below max_new_tokens; `generate_extras` (a streamer, stopping criteria) go to generate."""
    import torch

    if params.seed is not None:
        torch.manual_seed(params.seed)
    eos_ids = eos_token_ids(model, tokenizer)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    outputs: list[Completion | None] = [None] * len(ids)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt").to(model.device)
        if budgets:  # greedy answers do not depend on max_new_tokens: generate the longest, cut the others
            options = {**options, "max_new_tokens": max(budgets[i] for i in idx)}
        with torch.inference_mode():
            generated = model.generate(**enc, **options, **generate_extras)
        # Decoder-only output repeats the (left-padded) prompt; an encoder-decoder's starts with the start token.
        new_tokens = generated[:, 1 if model.config.is_encoder_decoder else enc["input_ids"].shape[1] :]
        rows = completions(tokenizer, new_tokens, [len(ids[i]) for i in idx], params.stop, eos_ids,
                           [budgets[i] for i in idx] if budgets else None)
        for i, completion in zip(idx, rows):
            outputs[i] = completion
    return outputs


class CausalGenerator:
    def __init__(self, model_dir: str | Path, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # Decoder-only batches must be padded on the left: new tokens follow each prompt's last real token.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).to(self.device).eval()

    def prompt_ids(self, prompts: list[Prompt], max_prompt_tokens: int | None = None) -> list[list[int]]:
        """Token ids of each rendered prompt, cut on the left to max_prompt_tokens."""
        ids = []
        for prompt in prompts:
            text, add_special = render_prompt(self.tokenizer, prompt)
            tokens = self.tokenizer(text, add_special_tokens=add_special)["input_ids"]
            ids.append(tokens[-max_prompt_tokens:] if max_prompt_tokens else tokens)
        return ids

    def generate(
        self, prompts: list[Prompt], batch_size: int = 16, params: GenerationParams | None = None, **overrides
    ) -> list[str]:
        """New text only (prompt excluded), in input order; batches of similar-length prompts (less padding).

        Settings come from `params`, then keyword overrides (`max_new_tokens=32`), validated by GenerationParams."""
        params = GenerationParams.model_validate({**(params.model_dump() if params else {}), **overrides})
        ids = self.prompt_ids(prompts, params.max_prompt_tokens)
        return [c.text for c in self.complete(ids, params, batch_size=batch_size)]

    def complete(self, ids: list[list[int]], params: GenerationParams, *, batch_size: int = 16,
                 budgets: list[int] | None = None, **generate_extras) -> list[Completion]:
        """A Completion per prompt (token ids), in input order; see `complete_in_batches`."""
        return complete_in_batches(self.model, self.tokenizer, ids, params, self._generate_options(params),
                                   batch_size=batch_size, budgets=budgets, **generate_extras)

    def _generate_options(self, params: GenerationParams) -> dict:
        options = generate_options(params, self.tokenizer)
        if getattr(self.model.config, "output_router_logits", False):
            # MoE configs trained with the router's auxiliary loss: transformers 5 cannot compute that loss against
            # the attention mask of a cached decoding step (shape error); generation needs no loss anyway.
            options["output_router_logits"] = False
        return options

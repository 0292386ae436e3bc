"""Generation: the settings (one home for their defaults and bounds: recipes, evaluation, pyfunc, endpoint
requests), and batched generation from a saved decoder-only model directory (Llama, Mixtral, GPT-2, ...) with chat
messages rendered by the tokenizer's chat template, or raw strings. `Summarizer` is the encoder-decoder peer."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

Prompt = str | list[dict]  # a raw string, or chat messages [{"role": ..., "content": ...}, ...]


class GenerationParams(BaseModel):
    """Keyword arguments for `model.generate`; every field is range-checked, unknown ones are refused.
    Greedy unless do_sample is set."""

    model_config = ConfigDict(extra="forbid")

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
    seed: int | None = Field(None, description="Seeds torch before generating (sampling)")
    stop: list[str] = Field(default_factory=list, description="Text is cut at the first of these strings")
    max_prompt_tokens: int | None = Field(
        None, gt=0, description="Decoder-only models: keep only the last N prompt tokens"
    )

    @field_validator("max_new_tokens", "num_beams", "temperature", "top_p", "top_k", "no_repeat_ngram_size",
                     "repetition_penalty", "seed", "max_prompt_tokens", mode="before")
    @classmethod
    def _no_booleans(cls, v):
        # pydantic would read true as 1: in a request that is a mistake, not a number.
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
        self, prompts: list[Prompt], batch_size: int = 16, params: GenerationParams | None = None, *,
        strip: bool = True, **overrides
    ) -> list[str]:
        """New text only (prompt excluded), in input order; batches of similar-length prompts (less padding).
        Surrounding whitespace is stripped unless `strip` is False (code: the first line's indentation matters).

        Settings come from `params`, then keyword overrides (`max_new_tokens=32`), validated by GenerationParams."""
        import torch

        params = GenerationParams.model_validate({**(params.model_dump() if params else {}), **overrides})
        ids = self.prompt_ids(prompts, params.max_prompt_tokens)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        options = self._generate_options(params)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        outputs: list[str] = [""] * len(ids)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt")
            enc = enc.to(self.device)
            with torch.inference_mode():
                generated = self.model.generate(**enc, **options)
            new_tokens = generated[:, enc["input_ids"].shape[1] :]
            for i, text in zip(idx, self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                text = cut_at_stop(text, params.stop)
                outputs[i] = text.strip() if strip else text
        return outputs

    def _generate_options(self, params: GenerationParams) -> dict:
        options = generate_options(params, self.tokenizer)
        if getattr(self.model.config, "output_router_logits", False):
            # MoE configs trained with the router's auxiliary loss: transformers 5 cannot compute that loss against
            # the attention mask of a cached decoding step (shape error); generation needs no loss anyway.
            options["output_router_logits"] = False
        return options

"""Batched summary generation from a saved model directory: used by evaluation, MLflow pyfunc and the endpoint."""

from __future__ import annotations

import json
from pathlib import Path

from llm_finetune.data.summarization import build_prompt
from llm_finetune.generation import Completion, GenerationParams, complete_in_batches, generate_options

DEFAULT_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "


class Summarizer:
    def __init__(self, model_dir: str | Path, prompt_template: str | None = None, device: str | None = None):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).to(self.device).eval()
        prompt_file = Path(model_dir) / "llmft_prompt.json"
        if prompt_template is None and prompt_file.exists():
            prompt_template = json.loads(prompt_file.read_text())["prompt_template"]
        self.prompt_template = prompt_template or DEFAULT_PROMPT

    def summarize(
        self,
        dialogues: list[str],
        generation: GenerationParams | None = None,
        *,
        batch_size: int = 16,
        max_source_tokens: int = 512,
    ) -> list[str]:
        """Generate in batches of similar-length prompts (less padding), returned in input order."""
        ids = self.encode(dialogues, max_source_tokens)
        return [c.text for c in self.complete(ids, generation or GenerationParams(), batch_size=batch_size)]

    def encode(self, dialogues: list[str], max_source_tokens: int = 512) -> list[list[int]]:
        """Token ids of each dialogue's prompt, cut to max_source_tokens."""
        prompts = [build_prompt(self.prompt_template, d) for d in dialogues]
        return self.tokenizer(prompts, max_length=max_source_tokens, truncation=True)["input_ids"]

    def complete(self, ids: list[list[int]], generation: GenerationParams, *, batch_size: int = 16,
                 budgets: list[int] | None = None, **generate_extras) -> list[Completion]:
        """A Completion per encoded prompt, in input order; see `complete_in_batches`."""
        return complete_in_batches(self.model, self.tokenizer, ids, generation,
                                   generate_options(generation, self.tokenizer), batch_size=batch_size,
                                   budgets=budgets, **generate_extras)

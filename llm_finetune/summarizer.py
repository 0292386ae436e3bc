"""Batched summary generation from a saved model directory: used by evaluation, MLflow pyfunc and the endpoint."""

from __future__ import annotations

import json
from pathlib import Path

from llm_finetune.data.summarization import build_prompt
from llm_finetune.generation import GenerationParams, cut_at_stop, generate_options

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
        import torch

        generation = generation or GenerationParams()
        options = generate_options(generation, self.tokenizer)
        if generation.seed is not None:
            torch.manual_seed(generation.seed)

        prompts = [build_prompt(self.prompt_template, d) for d in dialogues]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
        outputs: list[str] = [""] * len(prompts)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [prompts[i] for i in idx],
                max_length=max_source_tokens,
                truncation=True,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                generated = self.model.generate(**enc, **options)
            for i, text in zip(idx, self.tokenizer.batch_decode(generated, skip_special_tokens=True)):
                outputs[i] = cut_at_stop(text, generation.stop).strip()
        return outputs

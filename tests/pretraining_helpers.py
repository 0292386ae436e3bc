"""Helpers for continued-pretraining tests: a tiny, fast recipe as overrides, and corpus files cut from the shared
data."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import SHARED_DATA as SHARED

# Tiny and fast: a 500-token BPE trained on the first corpus (the default recipe's GPT-2 tokenizer makes every step
# ~100x dearer: 50,257 logits per token), small blocks, few held-out documents.
SMALL = ("model.config.tokenizer=train", "model.config.vocab_size=500", "model.config.n_embd=32",
         "model.config.n_layer=1", "model.config.n_head=2", "model.config.n_positions=64", "data.block_size=32",
         "training.max_steps=30", "training.learning_rate=0.005", "training.per_device_train_batch_size=4",
         "training.warmup=0", "training.logging_steps=5", "training.save_steps=100", "training.precision=fp32",
         "evaluation.max_documents=8", "evaluation.num_samples_shown=1", "evaluation.batch_size=16",
         "evaluation.generation.max_new_tokens=8", "endpoint.num_test_records=1",
         "endpoint.generation.max_new_tokens=8",
         (f"evaluation.out_of_domain={{dialogsum: {{uri: {SHARED / 'dialogsum' / 'validation.jsonl'}, "
          "text_field: dialogue, max_documents: 8}}"),
         # the gate, over the whole 95% CI: in-domain better; dialogues (in the first corpus, then no more) at most
         # 15% worse
         "approval.min_relative_decrease={perplexity_in_domain: 0.0}",
         "approval.max_relative_increase={perplexity_out_of_domain: 0.15}")


def lines(name: str, field: str, start: int, stop: int) -> list[str]:
    """Records start..stop of a shared data file, as JSON lines with the text in `text`."""
    records = (SHARED / name).read_text().splitlines()[start:stop]
    return [json.dumps({"text": json.loads(r)[field]}) for r in records]


def write(path: Path, rows: list[str]) -> None:
    path.write_text("\n".join(rows) + "\n")

"""Collators: one that counts real and padded tokens (throughput measured, not estimated), and packed rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class TokenCountingCollator:
    inner: Callable[[list[dict]], dict[str, Any]]
    real_tokens: int = field(default=0)
    padded_tokens: int = field(default=0)

    def __call__(self, features: list[dict]) -> dict[str, Any]:
        batch = self.inner(features)
        if "attention_mask" in batch:
            self.real_tokens += int(batch["attention_mask"].sum())
            self.padded_tokens += int(batch["attention_mask"].numel())
        if "labels" in batch:
            self.real_tokens += int((batch["labels"] != -100).sum())
            self.padded_tokens += int(batch["labels"].numel())
        return batch


@dataclass
class PackedRowsCollator:
    """Packed rows (TRL 'bfd' packing) batched as rows, not flattened into one: position_ids restart at each record
    and there is no attention mask, so transformers bounds attention per record with one max_length^2 block mask per
    row. TRL's padding-free collator puts the whole batch in one row instead, whose (batch x max_length)^2 mask costs
    SDPA on CPU ~1.7x the time per token (benchmarks/packed_attention.py).

    Rows shorter than the longest are right-padded: pad positions get position 0 (each its own one-token record) and
    label -100; `packed_real_tokens` tells them from real tokens. As in TRL's padding-free collator, each record's
    first token is not a target (it would be predicted from the record before it).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict]) -> dict[str, Any]:
        """The batch TRL's DataCollatorForLanguageModeling(return_position_ids=True) makes, less its attention mask,
        built in numpy: its per-row `torch.tensor(list)` calls cost ~2 ms a batch of 4 x 512, 3% of a tiny step."""
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(examples), width), self.pad_token_id, dtype=np.int64)
        labels = np.full((len(examples), width), -100, dtype=np.int64)
        position_ids = np.zeros((len(examples), width), dtype=np.int64)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            input_ids[i, :n] = e["input_ids"]
            labels[i, :n] = e.get("labels", e["input_ids"])
            lengths = np.asarray(e.get("seq_lengths", [n]), dtype=np.int64)
            starts = np.cumsum(lengths) - lengths
            position_ids[i, :n] = np.arange(n) - np.repeat(starts, lengths)
        labels[position_ids == 0] = -100  # each record's first token; pads (position 0) too
        return {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
                "position_ids": torch.from_numpy(position_ids)}


def packed_real_tokens(input_ids, position_ids, pad_token_id: int):
    """Mask of the real tokens of a packed batch without an attention mask: all but each row's trailing padding
    (pad token at position 0). A pad token inside the text (Llama pads with <unk>) stays real: it is not at position
    0, which only a record's first token holds."""
    pad_like = (input_ids == pad_token_id) & (position_ids == 0)
    trailing = pad_like.flip(-1).cumprod(-1).flip(-1).bool()
    return ~trailing

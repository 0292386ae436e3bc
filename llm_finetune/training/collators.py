"""Collator wrapper that counts real and padded tokens, so throughput is measured, not estimated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


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
class CausalTokenCountingCollator:
    """For decoder-only batches, where labels overlap the inputs: real tokens are the attended ones (every token of a
    padding-free batch, which has no attention mask), padded tokens the batch's full size; loss tokens have a label."""

    inner: Callable[[list[dict]], dict[str, Any]]
    real_tokens: int = field(default=0)
    padded_tokens: int = field(default=0)
    loss_tokens: int = field(default=0)

    def __call__(self, features: list[dict]) -> dict[str, Any]:
        batch = self.inner(features)
        ids = batch["input_ids"]
        self.real_tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(ids.numel())
        self.padded_tokens += int(ids.numel())
        if "labels" in batch:
            self.loss_tokens += int((batch["labels"] != -100).sum())
        return batch

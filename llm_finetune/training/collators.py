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

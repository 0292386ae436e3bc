"""The running batch of continuous batching: decoder-only rows that join and leave between decode steps while
sharing one KV cache (`llm_finetune.serving.continuous` schedules it).

Each row's tokens sit right-aligned in the cache. A joining row is prefilled alone with its fellow newcomers, then
its cache and the running one are padded on the left to the same width and concatenated on the batch dimension; a
leaving row is dropped with index_select and columns no row uses any more are cut on the left. The running rows'
cache is never recomputed. Decoding is greedy with the repetition penalty, stop strings, EOS and a token budget per
row, so each answer equals `model.generate` on that prompt alone.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.generation.stopping_criteria import StopStringCriteria


@dataclass(eq=False)
class Row:
    """One prompt being answered; `tokens` are the new ones so far. `streamer` follows transformers' streamer
    protocol (`put(prompt ids)`, then `put` per token, then `end()`)."""

    prompt: list[int]
    max_new_tokens: int
    repetition_penalty: float = 1.0
    stop: StopStringCriteria | None = None
    streamer: object | None = None
    tokens: list[int] = field(default_factory=list)


def uses_plain_cache(model) -> bool:
    """Whether the model takes per-row position ids and caches every layer as a plain DynamicLayer (no sliding
    window, no static or hybrid layout): what this batch knows how to pad, merge and cut."""
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return False
    with torch.inference_mode():
        cache = model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=model.device), use_cache=True,
                      **forward_extras(model)).past_key_values
    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


def forward_extras(model) -> dict:
    """Keyword arguments for every forward: no router loss (MoE), logits for the last position only."""
    extras = {"output_router_logits": False} if getattr(model.config, "output_router_logits", False) else {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        extras["logits_to_keep"] = 1
    return extras


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    """A [batch, heads, seq, dim] tensor zero-padded on the left of the seq dimension to `width`."""
    return F.pad(t, (0, 0, width - t.shape[2], 0))


class RunningBatch:
    """Rows decoded together; `join` adds rows, `step` decodes one token for each. Both return the rows that
    finished (EOS, a stop string or the token budget), which have left the batch."""

    def __init__(self, model, eos_ids: set[int]):
        self.model = model
        self.eos_ids = eos_ids
        self.extras = forward_extras(model)
        self.sdpa = model.config._attn_implementation == "sdpa"
        self.rows: list[Row] = []
        self.cache: DynamicCache | None = None
        self.lengths = torch.zeros(0, dtype=torch.long)  # real tokens cached per row
        self.pending = torch.zeros(0, dtype=torch.long)  # each row's last token, not yet in the cache
        self.seen = None  # [rows, vocab] bool: tokens of each row's prompt and answer (repetition penalty)
        self.penalty = torch.ones(0, 1)

    @property
    def width(self) -> int:
        return self.cache.get_seq_length() if self.cache is not None else 0

    def mask(self, extra: int = 0) -> torch.Tensor:
        """The 2-D attention mask of the cache plus `extra` new columns of real tokens."""
        width = self.width + extra
        return (torch.arange(width)[None, :] >= width - (self.lengths + extra)[:, None]).long()

    @torch.inference_mode()
    def join(self, rows: list[Row]) -> list[Row]:
        """Prefill the new rows together (left-padded), choose their first tokens and merge their cache in."""
        lengths = torch.tensor([len(r.prompt) for r in rows])
        width = int(lengths.max())
        ids = torch.tensor([[0] * (width - len(r.prompt)) + r.prompt for r in rows])
        mask = (torch.arange(width)[None, :] >= width - lengths[:, None]).long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate: padding at position 0, masked anyway
        out = self.model(input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                         position_ids=positions.to(self.model.device), use_cache=True, **self.extras)
        logits = out.logits[:, -1, :].float()
        self._merge(out.past_key_values)
        first = len(self.rows)
        self._append(rows, lengths, self._seen_and_streamed(rows, logits.shape[-1]))
        return self._advance(logits, range(first, len(self.rows)))

    @torch.inference_mode()
    def step(self) -> list[Row]:
        """One decode forward for every row."""
        mask = self.mask(extra=1)
        if self.sdpa:  # one query per row: the padding mask is the whole mask; built here, transformers skips it
            mask = mask.bool()[:, None, None, :]
        device = self.model.device
        out = self.model(input_ids=self.pending[:, None].to(device), attention_mask=mask.to(device),
                         position_ids=self.lengths[:, None].to(device), past_key_values=self.cache, use_cache=True,
                         **self.extras)
        self.lengths = self.lengths + 1
        return self._advance(out.logits[:, -1, :].float(), range(len(self.rows)))

    def drop(self, rows: list[Row]) -> None:
        """Remove rows (finished or cancelled) and the cache columns only they used."""
        gone = {id(r) for r in rows}
        keep = [i for i, r in enumerate(self.rows) if id(r) not in gone]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache, self.seen = None, None
            self.lengths, self.pending, self.penalty = self.lengths[:0], self.pending[:0], self.penalty[:0]
            return
        index = torch.tensor(keep)
        self.lengths, self.pending = self.lengths[index], self.pending[index]
        self.seen, self.penalty = self.seen[index], self.penalty[index]
        lead = self.width - int(self.lengths.max())
        for layer in self.cache.layers:
            on_device = index.to(layer.keys.device)
            layer.keys = layer.keys.index_select(0, on_device)[:, :, lead:]
            layer.values = layer.values.index_select(0, on_device)[:, :, lead:]

    def _merge(self, cache: DynamicCache) -> None:
        """The newcomers' cache below the running rows': both padded on the left to the same width."""
        if self.cache is None:
            self.cache = cache
            return
        width = max(self.width, cache.get_seq_length())
        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)])
            mine.values = torch.cat([_pad_left(mine.values, width), _pad_left(theirs.values, width)])

    def _append(self, rows: list[Row], lengths: torch.Tensor, seen: torch.Tensor) -> None:
        """The newcomers' row state after the running rows': cached lengths, no pending token yet, seen tokens and
        penalties."""
        penalty = torch.tensor([[r.repetition_penalty] for r in rows])
        pending = torch.zeros(len(rows), dtype=torch.long)
        if not self.rows:
            self.lengths, self.pending, self.seen, self.penalty = lengths, pending, seen, penalty
        else:
            self.lengths = torch.cat([self.lengths, lengths])
            self.pending = torch.cat([self.pending, pending])
            self.seen = torch.cat([self.seen, seen])
            self.penalty = torch.cat([self.penalty, penalty])
        self.rows += rows

    @staticmethod
    def _seen_and_streamed(rows: list[Row], vocab: int) -> torch.Tensor:
        """[rows, vocab] tokens of each prompt (the repetition penalty's memory); streamers get their prompts."""
        seen = torch.zeros((len(rows), vocab), dtype=torch.bool)
        for i, r in enumerate(rows):
            seen[i, r.prompt] = True
            if r.streamer is not None:
                r.streamer.put(torch.tensor(r.prompt))
        return seen

    def _advance(self, logits: torch.Tensor, indices: range) -> list[Row]:
        """Pick the next token of rows `indices` (whose logits these are), as generate's greedy search does."""
        seen, penalty = self.seen[indices.start : indices.stop], self.penalty[indices.start : indices.stop]
        if bool((penalty != 1.0).any()):  # else the penalty changes nothing: x * 1.0 == x / 1.0 == x
            penalized = torch.where(logits < 0, logits * penalty, logits / penalty)  # RepetitionPenaltyLogitsProcessor
            logits = torch.where(seen, penalized, logits)
        chosen = logits.argmax(-1).cpu()
        self.pending[indices.start : indices.stop] = chosen
        self.seen[torch.arange(indices.start, indices.stop), chosen] = True
        finished = []
        for row, token in zip(self.rows[indices.start : indices.stop], chosen.tolist()):
            row.tokens.append(token)
            if row.streamer is not None:
                row.streamer.put(torch.tensor([token]))
            if (token in self.eos_ids or len(row.tokens) >= row.max_new_tokens
                    or (row.stop is not None and bool(row.stop(torch.tensor([row.prompt + row.tokens]), None)[0]))):
                finished.append(row)
        self.drop(finished)
        return finished

"""A running batch with its own decode forward for Llama-family models: the model's weights, a key/value cache
preallocated in slots (one row per slot), and the computation of transformers' Llama forward in fewer operations.

Why: on a small model a decode step costs per-operation overhead, not arithmetic. On the endpoint benchmark's tiny
Llama, transformers' forward took 1.55 ms of a 1.94 ms step for 16 rows (1.40 ms for one row), and a row joining
took 0.7 ms more to pad and concatenate every layer's cache. Here a step writes each row's new key and value in
place at that row's next column and attends over the columns in use; a joining row is prefilled into free slots; a
leaving row's slot is refilled by moving the last row into it. Answers equal transformers' greedy answers
(tests/llm_finetune/serving/test_continuous.py checks them against `generate` alone).

Taken only where it computes what transformers computes (`SlotBatch.supports`): a Llama or Mistral (no sliding
window) causal LM with plain `nn.Linear` layers (not LoRA-wrapped, not quantized) and rotary embeddings that do
not depend on the sequence length. Other decoder-only models keep `RunningBatch` and transformers' forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from llm_finetune.serving.running_batch import Row, RunningBatch

FAMILIES = ("llama", "mistral")
NORMS = ("LlamaRMSNorm", "MistralRMSNorm")  # the same computation, restated in _rms_norm
ROTARY = ("default", "linear", "llama3")  # position tables that do not change with the sequence length


class _Layer(NamedTuple):
    """One decoder layer's tensors, read once (a module attribute lookup per use costs more than the arithmetic)."""

    norm: torch.Tensor
    q: tuple[torch.Tensor, torch.Tensor | None]
    k: tuple[torch.Tensor, torch.Tensor | None]
    v: tuple[torch.Tensor, torch.Tensor | None]
    o: tuple[torch.Tensor, torch.Tensor | None]
    mlp_norm: torch.Tensor
    gate: tuple[torch.Tensor, torch.Tensor | None]
    up: tuple[torch.Tensor, torch.Tensor | None]
    down: tuple[torch.Tensor, torch.Tensor | None]


def _linear(module: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    return module.weight, module.bias


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm.forward, operation for operation (so the results are the same to the bit); its casts are
    skipped where they would not change anything (float32 in)."""
    if x.dtype == torch.float32:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """transformers' `x * cos + rotate_half(x) * sin`, with rotate_half(x) = cat(-x2, x1) taken as the halves
    swapped (one flip) times sin with its first half negated: the same products, so the same bits."""
    swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)
    return x * cos + swapped * signed_sin


class SlotBatch(RunningBatch):
    """`RunningBatch`'s rows and greedy choice, with the forward, the cache and the merge of its own."""

    @staticmethod
    def supports(model) -> bool:
        """Whether this forward computes what the model's own does (see the module docstring)."""
        config, inner = model.config, getattr(model, "model", None)
        if config.model_type not in FAMILIES or getattr(config, "sliding_window", None) is not None:
            return False
        if getattr(config, "pretraining_tp", 1) != 1 or inner is None or not hasattr(inner, "rotary_emb"):
            return False
        if getattr(inner.rotary_emb, "rope_type", "default") not in ROTARY:
            return False
        linears = [model.lm_head] + [m for layer in inner.layers for m in (
            layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
            layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)]
        norms = [inner.norm] + [n for layer in inner.layers for n in (layer.input_layernorm,
                                                                    layer.post_attention_layernorm)]
        return (type(inner.embed_tokens) is nn.Embedding and all(type(m) is nn.Linear for m in linears)
                and all(type(n).__name__ in NORMS for n in norms))

    def __init__(self, model, eos_ids: set[int]):
        super().__init__(model, eos_ids)
        inner, config = model.model, model.config
        self.inner = inner
        self.eps = inner.norm.variance_epsilon
        self.act: Callable[[torch.Tensor], torch.Tensor] = (F.silu if config.hidden_act == "silu"
                                                             else inner.layers[0].mlp.act_fn)
        self.layers = [_Layer(layer.input_layernorm.weight, _linear(layer.self_attn.q_proj),
                              _linear(layer.self_attn.k_proj), _linear(layer.self_attn.v_proj),
                              _linear(layer.self_attn.o_proj), layer.post_attention_layernorm.weight,
                              _linear(layer.mlp.gate_proj), _linear(layer.mlp.up_proj), _linear(layer.mlp.down_proj))
                       for layer in inner.layers]
        attention = inner.layers[0].self_attn
        self.head_dim, self.scaling = attention.head_dim, attention.scaling
        self.kv_heads = config.num_key_value_heads
        self.device, self.dtype = model.device, inner.embed_tokens.weight.dtype
        self.keys: list[torch.Tensor] = []  # per layer [slots, kv_heads, capacity, head_dim]
        self.values: list[torch.Tensor] = []
        # [positions, head_dim], the model's rotary tables; sin with its first half negated (see _rotary)
        self.cos = self.signed_sin = torch.zeros(0, self.head_dim)

    @property
    def width(self) -> int:
        return int(self.lengths.max()) if self.rows else 0

    @torch.inference_mode()
    def join(self, rows: list[Row]) -> list[Row]:
        """Prefill the new rows together (right-padded) into the next free slots and choose their first tokens."""
        lengths = torch.tensor([len(r.prompt) for r in rows])
        width, first = int(lengths.max()), len(self.rows)
        self._reserve(first + len(rows), width)
        ids = torch.tensor([r.prompt + [0] * (width - len(r.prompt)) for r in rows], device=self.device)
        slots = slice(first, first + len(rows))
        x = self._forward(ids, torch.arange(width, device=self.device)[None, :].expand(len(rows), -1), slots, None)
        last = x[torch.arange(len(rows), device=self.device), (lengths - 1).to(self.device)]
        logits = self._logits(last)
        self._append(rows, lengths, self._seen_and_streamed(rows, logits.shape[-1]))
        return self._advance(logits, range(first, len(self.rows)))

    @torch.inference_mode()
    def step(self) -> list[Row]:
        """One decode forward for every row: each row's pending token goes in at its next column."""
        self._reserve(len(self.rows), self.width + 1)
        positions = self.lengths.to(self.device)
        x = self._forward(self.pending[:, None].to(self.device), positions[:, None], slice(0, len(self.rows)),
                          positions)
        self.lengths = self.lengths + 1
        return self._advance(self._logits(x[:, -1]), range(len(self.rows)))

    @torch.inference_mode()  # the scheduler drops cancelled rows outside a forward; the cache is an inference tensor
    def drop(self, rows: list[Row]) -> None:
        """Remove rows: the last rows move into the slots of the leaving ones, so rows stay in slots 0..n-1. The
        cache grows by doubling (at most twice the slots and columns in use) and is freed when no row is left."""
        gone = {id(r) for r in rows}
        kept = [i for i, r in enumerate(self.rows) if id(r) not in gone]
        if len(kept) == len(self.rows):
            return
        n = len(kept)
        if n == 0:  # nothing runs: the cache goes (an idle endpoint holds none; the next join allocates)
            self.keys, self.values = [], []
        tail = iter(i for i in kept if i >= n)
        source = [i if id(self.rows[i]) not in gone else next(tail) for i in range(n)]
        moved = [(to, frm) for to, frm in enumerate(source) if to != frm]
        if moved:
            to, frm = (torch.tensor(side, device=self.device) for side in zip(*moved))
            used = int(self.lengths[[f for _, f in moved]].max())
            for cache in (*self.keys, *self.values):
                cache[to, :, :used] = cache[frm, :, :used]
        index = torch.tensor(source, dtype=torch.long)
        self.rows = [self.rows[i] for i in source]
        self.lengths, self.pending = self.lengths[index], self.pending[index]
        self.seen, self.penalty = self.seen[index], self.penalty[index]

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, slots: slice,
                 decoding: torch.Tensor | None) -> torch.Tensor:
        """The decoder layers on `ids` [rows, tokens] at `positions`, keys and values written to `slots`. Decoding
        (one token per row at column `decoding` of its slot): attention over each row's cached columns and the new
        one. Prefilling (decoding None): causal attention over the new tokens only, from column 0."""
        rows, tokens = ids.shape
        cos, sin = self.cos[positions][:, None], self.signed_sin[positions][:, None]  # [rows, 1, tokens, head_dim]
        if decoding is not None:
            width = int(decoding.max()) + 1
            mask = (torch.arange(width, device=self.device)[None, :] <= decoding[:, None])[:, None, None, :]
            at = torch.arange(rows, device=self.device)
        x = self.inner.embed_tokens(ids)
        for layer, keys, values in zip(self.layers, self.keys, self.values):
            h = _rms_norm(x, layer.norm, self.eps)
            q = F.linear(h, *layer.q).view(rows, tokens, -1, self.head_dim).transpose(1, 2)
            k = F.linear(h, *layer.k).view(rows, tokens, -1, self.head_dim).transpose(1, 2)
            v = F.linear(h, *layer.v).view(rows, tokens, -1, self.head_dim).transpose(1, 2)
            q, k = _rotary(q, cos, sin), _rotary(k, cos, sin)
            if decoding is None:
                keys[slots, :, :tokens], values[slots, :, :tokens] = k, v
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling, enable_gqa=True)
            else:
                keys[at, :, decoding], values[at, :, decoding] = k[:, :, 0], v[:, :, 0]
                o = F.scaled_dot_product_attention(q, keys[slots, :, :width], values[slots, :, :width],
                                                   attn_mask=mask, scale=self.scaling, enable_gqa=True)
            x = x + F.linear(o.transpose(1, 2).reshape(rows, tokens, -1), *layer.o)
            h = _rms_norm(x, layer.mlp_norm, self.eps)
            x = x + F.linear(self.act(F.linear(h, *layer.gate)) * F.linear(h, *layer.up), *layer.down)
        return x

    def _logits(self, last: torch.Tensor) -> torch.Tensor:
        """[rows, vocab] float logits of the last hidden states [rows, hidden]."""
        head = self.model.lm_head
        return F.linear(_rms_norm(last, self.inner.norm.weight, self.eps), head.weight, head.bias).float()

    def _reserve(self, rows: int, columns: int) -> None:
        """Grow the slots and the rotary tables (doubling) to hold `rows` rows of `columns` positions."""
        slots, capacity = (self.keys[0].shape[0], self.keys[0].shape[2]) if self.keys else (0, 0)
        if rows > slots or columns > capacity:
            slots = max(rows, 2 * slots) if rows > slots else slots
            capacity = max(columns, 2 * capacity) if columns > capacity else capacity
            shape = (slots, self.kv_heads, capacity, self.head_dim)
            grown = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(2 * len(self.layers))]
            for new, old in zip(grown, (*self.keys, *self.values)):
                new[: old.shape[0], :, : old.shape[2]] = old
            self.keys, self.values = grown[: len(self.layers)], grown[len(self.layers):]
        if columns > self.cos.shape[0]:
            positions = torch.arange(max(columns, 2 * self.cos.shape[0]), device=self.device)[None, :]
            cos, sin = self.inner.rotary_emb(self.inner.embed_tokens.weight[:1], positions)
            half = self.head_dim // 2
            self.cos, self.signed_sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)

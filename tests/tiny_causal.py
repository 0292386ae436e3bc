"""Test helpers: tiny Llama / Mixtral model directories with a locally trained chat tokenizer, and Dolly records
as chat messages. Built from configs in seconds, no Hub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import SHARED_DATA

DOLLY = SHARED_DATA / "dolly"
SYSTEM = "Answer the question."


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run tiny models on one intra-op thread: on a busy 2-core machine two threads made batched generation of a
    tiny Llama 30-50x slower (spinning on contended cores), one thread restores it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def dolly_records(split: str = "train", limit: int | None = None, max_words: int = 24) -> list[dict]:
    """Dolly records as {'prompt': [system, user], 'completion': [assistant], 'category'}, texts cut to max_words."""
    lines = (DOLLY / f"{split}.jsonl").read_text().splitlines()[:limit]
    records = []
    for line in lines:
        r = json.loads(line)
        question = " ".join(f"{r['instruction']} {r['context']}".split()[:max_words])
        records.append({
            "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": " ".join(r["response"].split()[:max_words])}],
            "category": r["category"],
        })
    return records


def build_tiny_causal(out: Path, family: str = "llama", seed: int = 0, init_std: float = 0.2) -> Path:
    """A random tiny Llama or Mixtral (4 experts, top-2) from the project's builder, tokenizer trained on the Dolly
    sample; returns its folder under `out`.

    A large init_std gives peaked next-token distributions, so greedy outputs do not hinge on float noise."""
    from llm_finetune.models.tiny_causal import build_tiny_causal_lm
    from llm_finetune.recipes import TinyCausalSpec

    texts = []
    for split in ("train", "validation"):
        for line in (DOLLY / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            texts += [r["instruction"], r["context"], r["response"]]
    spec = TinyCausalSpec(family=family, vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                          max_position_embeddings=512, initializer_range=init_std, seed=seed)
    return build_tiny_causal_lm(spec, texts, out, corpus_key="dolly-sample-texts")


def bias_router_toward(model_dir: Path, out: Path, expert: int = 0) -> Path:
    """Copy of a tiny Mixtral whose routers always pick `expert`.

    Routers have no bias term, so one hidden dimension becomes a constant input feature (every token embedding
    gets 10.0 there) and each router weighs that feature for `expert` only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 10.0  # dominates the residual stream at init_std 0.2
        for layer in model.model.layers:
            gate = layer.mlp.gate.weight
            gate[:, 0] = 0.0
            gate[expert, 0] = 10.0
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def overfit(model_dir: Path, out: Path, records: list[dict], steps: int = 10, lr: float = 1e-2) -> Path:
    """A stand-in fine-tune: full-batch AdamW on the response tokens of `records`; saves to out."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = []
    for r in records:
        prompt = tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        rows.append((ids, [-100] * n_prompt + ids[n_prompt:]))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(ids) for ids, _ in rows])[:, None]).long()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

"""Pretraining throughput: packed blocks (this project) vs one padded document per row (seed-style), same model,
same documents, same Trainer settings, in one run.

1. packed: the movie-plot training documents tokenized, EOS after each, cut into blocks of `block_size` tokens
   (`llm_finetune.data.raw_text.prepare_blocks`), trained by `llm_finetune.training.pretrain.train_pretraining`.
2. padded: each document on its own row, cut at `block_size` tokens and padded to it (labels -100 on padding),
   plain `Trainer` with `default_data_collator`, the same `TrainingArguments`.
Real tokens are counted at the model's forward (attention_mask.sum(); every token of a packed block is real) over
trainer.train()'s wall time. Also shown: the share of the fed tokens that is padding, and the share of the corpus's
tokens one epoch trains on (truncation drops the rest of every long document).

The model is the default recipe's tiny GPT-2 (GPT-2 tokenizer, 64 wide, 2 layers) or, with --model medium, a GPT-2
256 wide with 4 layers: tiny models are overhead-bound, so compare the ratio on both.

    source scripts/env.sh
    python -m benchmarks.pretrain_throughput [--steps 20] [--block-size 256] [--model tiny|medium]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from benchmarks.machine import cpu_model

REPO = Path(__file__).resolve().parent.parent
PLOTS = REPO.parent / "shared" / "data" / "movie_plots" / "train.jsonl"
MODELS = {"tiny": {"n_embd": 64, "n_layer": 2, "n_head": 4}, "medium": {"n_embd": 256, "n_layer": 4, "n_head": 4}}


def padded_rows(tokenizer, texts: list[str], block_size: int):
    """Seed-style rows: one document each, truncated to block_size (EOS appended when it fits), padded to it."""
    import datasets

    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
        ids = (ids + [tokenizer.eos_token_id])[:block_size]
        pad = block_size - len(ids)
        rows["input_ids"].append(ids + [tokenizer.pad_token_id] * pad)
        rows["attention_mask"].append([1] * len(ids) + [0] * pad)
        rows["labels"].append(ids + [-100] * pad)
    return datasets.Dataset.from_dict(rows)


class StepTimer(TrainerCallback):
    """Real and fed tokens and wall time from the end of the first step to the end of the last: start-up and the
    first step's one-time costs are left out."""

    def __init__(self):
        self.counter = None
        self.start = self.end = 0.0
        self.first_real = self.first_fed = 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from llm_finetune.training.common import TrainingTokenCounter

        self.counter = TrainingTokenCounter(model)

    def on_step_end(self, args, state, control, **kwargs):
        self.end = time.perf_counter()
        if state.global_step == 1:
            self.start, self.first_real, self.first_fed = self.end, self.counter.real_tokens, self.counter.padded_tokens

    @property
    def real_tokens(self) -> int:
        return self.counter.real_tokens - self.first_real

    @property
    def fed_tokens(self) -> int:
        return self.counter.padded_tokens - self.first_fed

    @property
    def rate(self) -> float:
        return self.real_tokens / (self.end - self.start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=11)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each case, alternated")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, default_data_collator

    from llm_finetune.data.raw_text import prepare_blocks, tokenize_documents
    from llm_finetune.models.gpt2 import build_gpt2
    from llm_finetune.recipes import GPT2ConfigSpec, PretrainParams
    from llm_finetune.training.pretrain import pretrain_job, train_pretraining, training_arguments

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    texts = [json.loads(line)["text"] for line in PLOTS.read_text().splitlines()]
    params = PretrainParams(max_steps=args.steps, per_device_train_batch_size=args.batch_size, logging_steps=10**6,
                            save_steps=10**6, precision="fp32", warmup=0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = GPT2ConfigSpec(tokenizer="gpt2", n_positions=max(1024, args.block_size), **MODELS[args.model])
        base = str(build_gpt2(spec, [], work / "base", corpus_key="gpt2"))
        tokenizer = AutoTokenizer.from_pretrained(base)
        corpus_tokens = sum(len(ids) + 1 for ids in tokenize_documents(tokenizer, texts))
        packed = prepare_blocks(texts, base, args.block_size, work / "blocks")

        rows = padded_rows(tokenizer, texts, args.block_size)
        packed_runs, padded_runs = [], []
        for repeat in range(args.repeats):  # alternated, so load from other processes hits both alike
            timer = StepTimer()
            result = train_pretraining(pretrain_job(base, packed, params, work / f"packed-{repeat}"), callbacks=[timer])
            packed_runs.append(timer)
            model = AutoModelForCausalLM.from_pretrained(base)
            model.config.use_cache = False
            timer = StepTimer()
            args_ = training_arguments(pretrain_job(base, packed, params, work / f"padded-{repeat}"), "fp32")
            Trainer(model=model, args=args_, train_dataset=rows, data_collator=default_data_collator,
                    callbacks=[timer]).train()
            padded_runs.append(timer)
    packed_best, padded_best = max(packed_runs, key=lambda t: t.rate), max(padded_runs, key=lambda t: t.rate)

    per_epoch_padded = sum(sum(m) for m in rows["attention_mask"])
    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"model: GPT-2 {args.model} {MODELS[args.model]} ({result.parameters:,} parameters, vocabulary "
          f"{len(tokenizer):,}); {len(texts)} movie plots, {corpus_tokens:,} tokens; block_size {args.block_size}, "
          f"batch {args.batch_size}, {args.steps} steps, fp32\n")
    print(f"| case | real tokens/s (best of {args.repeats}; all runs) | padding share of fed tokens | corpus tokens "
          "trained per epoch | ratio |")
    print("|---|---|---|---|---|")
    print(f"| packed blocks (train_pretraining) | {packed_best.rate:,.0f} ({_rates(packed_runs)}) | "
          f"{1 - packed_best.real_tokens / packed_best.fed_tokens:.1%} | {packed.tokens / corpus_tokens:.1%} | "
          f"{packed_best.rate / padded_best.rate:.2f}x |")
    print(f"| one padded document per row | {padded_best.rate:,.0f} ({_rates(padded_runs)}) | "
          f"{1 - padded_best.real_tokens / padded_best.fed_tokens:.1%} | {per_epoch_padded / corpus_tokens:.1%} "
          "| 1.00x |")
    print(f"\n(steps 2..{args.steps} of each run are timed: the first step's one-time costs are left out)")


def _rates(runs: list[StepTimer]) -> str:
    return ", ".join(f"{t.rate:,.0f}" for t in runs)


if __name__ == "__main__":
    main()

"""Causal-LM SFT throughput and memory on the Dolly sample, tiny and ~27M-parameter Llama recipes, against plain
baselines, in one run.

1. This machine: CPU model, torch threads, and fp32 / bf16 2048x2048 GEMM GFLOP/s (best of a few), the peaks that
   model FLOP utilisation is measured against.
2. Per recipe (recipes/dolly_llama2_tiny.yaml, recipes/dolly_llama2_27m.yaml): real (non-pad) training tokens/s,
   model FLOP utilisation and peak RSS, each case in its own process (ru_maxrss is per process), same records,
   model, batch size, max_length and max_steps:
   a) seed-style script: every record padded to max_length, loss on the whole sequence (prompt too), plain
      transformers `Trainer` with `default_data_collator`, the recipe's LoRA;
   b) TRL `SFTTrainer` with its defaults (prompt-completion data, same LoRA) apart from batch size, max_length and
      max_steps: on a CPU that is bf16 autocast and activation checkpointing;
   c) this project's `train_causal_lm` with the recipe's settings (packing, packing_layout auto: packed rows fed as
      rows without padding between records on CPU, precision auto), LoRA;
   c') the same with packing_layout flat: TRL's padding-free collator, the batch flattened into one row;
   c'') (c) with TRL's fused LM head scoring every position, as TRL does on a CPU (the project scores only the
      labelled ones, with plain logits where they fit: use_labelled_logits_on_cpu);
   d) the same, full fine-tune (lora.enabled=false);
   e) and f) (c) and (d) with training.compile=true (TrainingArguments torch_compile);
   g) and h) a bare training loop on (c)'s and (d)'s own model and packed rows: the project's trainer is built
      (model from the recipe, LoRA adapters, packed-rows collator) but never trained; its data loader's batches go
      through decoder -> LM head on the labelled positions only -> cross-entropy, backward, gradient clipping at 1.0
      and fused AdamW (the Trainer's optimizer) under the same precision (bf16 autocast where the case's is bf16);
   g') and h') the same with the decoder torch.compile'd (the LM head and loss stay eager: their shape follows
      the labelled positions).
   Real tokens are counted at the model's forward (attention_mask.sum(); packed rows: all but their trailing padding)
   over trainer.train()'s wall time ("real tok/s"), and over the steps after the first --warmup ones ("steady tok/s";
   "warm-up s" is the time of those first steps, a compile's included), for the trainer and the bare loop alike; the
   trainer's steady tokens/s is then given as a share of the best bare loop's (with or without compile). Peak RSS is
   taken at the end of training (before any merge); "train +MB" is peak minus the RSS when training began.
   MFU = model FLOPs per real token x real tokens/s / the GEMM peak of the case's precision, with 6 N FLOPs per
   token for a full fine-tune and 4 N under LoRA (frozen weights need no weight gradient), N = the parameters in
   matmuls (all but the input embedding). Padding and recomputation are not model FLOPs.
3. Model FLOP utilisation of a bare training loop (AdamW, random tokens) on a ~27M-parameter Llama (hidden 512,
   6 layers, vocab 8k, batch 8 x 256), fp32 vs bf16 autocast: 6 * parameters * tokens/s against the GEMM peak of
   the same dtype (where bf16 is emulated the small model's matmuls can beat the 2048^2 GEMM, so >100% can show).

Speeds on a shared machine vary from run to run: compare the ratios within one run.

    source scripts/env.sh
    python -m benchmarks.sft_throughput [--quick] [--steps 20] [--warmup 2] [--recipes tiny 27m] [--cases ...]
        [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_model

RECIPES = {name: Path(__file__).resolve().parent.parent / "recipes" / f"dolly_llama2_{name}.yaml"
           for name in ("tiny", "27m")}
CASES = {
    "seed_padded": "a) seed-style: pad to max_length, loss on all",
    "trl_defaults": "b) TRL SFTTrainer defaults",
    "project_lora": "c) train_causal_lm (LoRA)",
    "project_lora_flat": "c') the same, packed rows flattened (TRL's)",
    "project_lora_all_positions": "c'') (c), LM head over every position",
    "project_full": "d) train_causal_lm (full fine-tune)",
    "project_lora_compiled": "e) (c), training.compile=true",
    "project_full_compiled": "f) (d), training.compile=true",
    "bare_lora": "g) bare loop on (c)'s model and rows",
    "bare_lora_compiled": "g') (g), decoder torch.compile'd",
    "bare_full": "h) bare loop on (d)'s model and rows",
    "bare_full_compiled": "h') (h), decoder torch.compile'd",
}
# Trainer cases -> the bare loops on their model and rows.
BARE_LOOPS = {"project_lora": ("bare_lora", "bare_lora_compiled"), "project_full": ("bare_full", "bare_full_compiled")}
BARE_LOOPS |= {f"{case}_compiled": loops for case, loops in BARE_LOOPS.items()}
BATCH_SIZE = 4


def gemm_gflops(dtype_name: str, n: int = 2048, repeats: int = 5, budget_s: float = 5.0) -> float:
    """Best n x n matmul rate over up to `repeats` timings (fewer once `budget_s` is spent: emulated bf16 is slow);
    2 n^3 floating-point operations each."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    timings, began = [], time.perf_counter()
    for _ in range(repeats + 1):  # the first is a warm-up unless it alone uses the budget
        start = time.perf_counter()
        torch.mm(a, b)
        timings.append(time.perf_counter() - start)
        if time.perf_counter() - began > budget_s:
            break
    best = min(timings[1:] or timings)
    return 2 * n**3 / best / 1e9


def native_bf16() -> bool:
    """AVX512-BF16 or AMX on this CPU (torch.cpu's own checks); without them bf16 matmuls are emulated."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


# ---------------------------------------------------------------------------------------------------------------
# Training cases (each in a child process)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class StepMarks:
    """(seconds since training began, real tokens so far) at the end of every step, read from a token counter."""

    def __init__(self):
        self.counter = None  # a TrainingTokenCounter, set before training
        self.start = 0.0
        self.marks: list[tuple[float, int]] = []

    def begin(self) -> None:
        self.start = time.perf_counter()

    def step_done(self) -> None:
        self.marks.append((time.perf_counter() - self.start, self.counter.real_tokens))


# The token counters train_causal_lm creates in this process (the probe reads the newest); see run_case.
PROJECT_COUNTERS: list = []


def memory_probe():
    """Trainer callback: RSS when training begins, the process's peak RSS when it ends, and step marks."""
    from transformers import TrainerCallback

    class MemoryProbe(TrainerCallback, StepMarks):
        start_mb = peak_mb = 0.0

        def on_train_begin(self, args, state, control, **kw):
            self.start_mb = rss_mb()
            self.counter = self.counter or PROJECT_COUNTERS[-1]
            self.begin()

        def on_step_end(self, args, state, control, **kw):
            self.step_done()

        def on_train_end(self, args, state, control, **kw):
            self.peak_mb = peak_rss_mb()

    return MemoryProbe()


def timed_train(trainer, probe) -> dict:
    from llm_finetune.training.common import TrainingTokenCounter, parameter_counts

    counter = probe.counter = TrainingTokenCounter(trainer.model)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"real_tokens": counter.real_tokens, "padded_tokens": counter.padded_tokens, "seconds": seconds,
            "trainable": parameter_counts(trainer.model)[0], "precision": "bf16" if trainer.args.bf16 else "fp32",
            "start_mb": probe.start_mb, "peak_mb": probe.peak_mb, "marks": probe.marks}


def seed_padded(recipe, base: str, validated, out: Path, steps: int) -> dict:
    """A seed-style script: render, pad to max_length, labels = every real token, plain Trainer."""
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator, set_seed

    from llm_finetune.data.instructions import instruction_dataset, render_ids
    from llm_finetune.training.causal_lm import load_tokenizer, lora_config

    set_seed(recipe.training.seed)
    tokenizer = load_tokenizer(base)
    length = recipe.data.max_length
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for e in instruction_dataset(validated, "train", recipe.data):
        ids = render_ids(tokenizer, e["prompt"] + e["completion"])[:length]
        pad = length - len(ids)
        rows["input_ids"].append(ids + [tokenizer.pad_token_id] * pad)
        rows["attention_mask"].append([1] * len(ids) + [0] * pad)
        rows["labels"].append(ids + [-100] * pad)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), lora_config(recipe.lora))
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH_SIZE,
                             learning_rate=recipe.training.learning_rate, use_cpu=True, save_strategy="no",
                             report_to="none", disable_tqdm=True, seed=recipe.training.seed, logging_steps=steps)
    probe = memory_probe()
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(rows),
                      data_collator=default_data_collator, callbacks=[probe])
    return timed_train(trainer, probe)


def trl_defaults(recipe, base: str, validated, out: Path, steps: int) -> dict:
    """TRL SFTTrainer as its docs start: model path, conversational prompt-completion data, SFTConfig defaults."""
    from trl import SFTConfig, SFTTrainer

    from llm_finetune.data.instructions import instruction_dataset
    from llm_finetune.training.causal_lm import load_tokenizer, lora_config

    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH_SIZE,
                     max_length=recipe.data.max_length, use_cpu=True, save_strategy="no", report_to="none",
                     disable_tqdm=True, logging_steps=steps)
    probe = memory_probe()
    trainer = SFTTrainer(model=base, args=args, train_dataset=instruction_dataset(validated, "train", recipe.data),
                         processing_class=load_tokenizer(base), peft_config=lora_config(recipe.lora), callbacks=[probe])
    return timed_train(trainer, probe)


def project_job(recipe, base: str, validated, out: Path, steps: int, *, lora: bool, layout: str | None = None,
                compile_model: bool = False):
    """The causal-LM job of the project cases: the recipe's settings, this benchmark's steps and batch size."""
    from llm_finetune.training.causal_lm import causal_job

    params = recipe.training.model_copy(update={"max_steps": steps, "save_steps": steps + 1, "logging_steps": steps,
                                                "per_device_train_batch_size": BATCH_SIZE, "compile": compile_model,
                                                "packing_layout": layout or recipe.training.packing_layout})
    return causal_job(base, validated, recipe.data, recipe.lora.model_copy(update={"enabled": lora}), params, out)


def project(job) -> dict:
    from llm_finetune.training.causal_lm import train_causal_lm

    probe = memory_probe()
    result = train_causal_lm(job, callbacks=[probe])
    return {"real_tokens": result.real_tokens, "padded_tokens": result.padded_tokens,
            "seconds": result.train_runtime_s, "trainable": result.trainable_parameters,
            "precision": result.precision, "start_mb": probe.start_mb, "peak_mb": probe.peak_mb,
            "marks": probe.marks}


def bare_loop(job, *, compiled: bool) -> dict:
    """The job's model and packed rows as the project's trainer prepares them, trained by a plain loop (see g/h)."""
    import contextlib
    import itertools

    import torch
    from transformers import set_seed

    from llm_finetune.data.shapes import sft_examples
    from llm_finetune.training.causal_lm import build_trainer, load_tokenizer
    from llm_finetune.training.common import TrainingTokenCounter, load_base_model, parameter_counts, resolve_precision

    set_seed(job.params.seed)
    tokenizer = load_tokenizer(job.base_model)
    examples = sft_examples(job.validated, "train", job.data, tokenizer, job.data.max_train_records)
    model = load_base_model(job.base_model, job.lora, precision=job.params.precision,
                            attn_implementation=job.params.attn_implementation)
    trainer = build_trainer(job, model, tokenizer, examples)  # never trained: its model (adapters on) and rows
    model = trainer.model.train()
    batches = list(itertools.islice(itertools.cycle(trainer.get_train_dataloader()), job.params.max_steps))
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = causal.model, causal.lm_head
    probe = StepMarks()
    probe.counter = TrainingTokenCounter(decoder, tokenizer.pad_token_id)  # counts as the trainer's counter does
    if compiled:
        decoder.compile()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=job.params.learning_rate, weight_decay=job.params.weight_decay,
                                  fused=True)
    precision = resolve_precision(job.params.precision)
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

    start_mb = rss_mb()
    probe.begin()
    for batch in batches:
        with cast():
            hidden = decoder(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                             use_cache=False).last_hidden_state
            targets = batch["labels"][:, 1:]
            scored = targets != -100
            logits = head(hidden[:, :-1][scored])
        loss = torch.nn.functional.cross_entropy(logits.float(), targets[scored])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        probe.step_done()
    seconds, real_tokens = probe.marks[-1]
    return {"real_tokens": real_tokens, "padded_tokens": probe.counter.padded_tokens, "seconds": seconds,
            "trainable": parameter_counts(model)[0], "precision": precision, "start_mb": start_mb,
            "peak_mb": peak_rss_mb(), "marks": probe.marks}


def load_inputs(work: Path, recipe_name: str):
    from llm_finetune.data.shapes import load_data
    from llm_finetune.models.tiny_causal import build_tiny_causal_for_instructions
    from llm_finetune.recipes import load_recipe
    from llm_finetune.recipes.instruction import InstructionRecipe

    path = RECIPES[recipe_name]
    dolly = path.parent.parent.parent / "shared" / "data" / "dolly"
    recipe = load_recipe(path, InstructionRecipe, overrides=[f"data.train_uri={dolly / 'train.jsonl'}",
                                                               f"data.validation_uri={dolly / 'validation.jsonl'}"])
    validated = load_data(recipe.data, work)
    base = build_tiny_causal_for_instructions(recipe.model.tiny, recipe.data, validated, work / "models")
    return recipe, str(base), validated


def run_case(case: str, recipe_name: str, work: Path, steps: int) -> None:
    recipe, base, validated = load_inputs(work, recipe_name)
    out = work / case
    if case == "seed_padded":
        row = seed_padded(recipe, base, validated, out, steps)
    elif case == "trl_defaults":
        row = trl_defaults(recipe, base, validated, out, steps)
    else:
        import llm_finetune.training.causal_lm as causal_lm

        if case == "project_lora_all_positions":
            causal_lm.use_labelled_logits_on_cpu = lambda: None  # this case's own process: TRL's CPU default

        class RecordedCounter(causal_lm.TrainingTokenCounter):  # so the probe reads train_causal_lm's own counter
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                PROJECT_COUNTERS.append(self)

        causal_lm.TrainingTokenCounter = RecordedCounter
        job = project_job(recipe, base, validated, out, steps, lora="full" not in case,
                          layout="flat" if case == "project_lora_flat" else None,
                          compile_model=case.endswith("_compiled"))
        row = bare_loop(job, compiled=case.endswith("_compiled")) if case.startswith("bare_") else project(job)
    print("CASE_RESULT " + json.dumps(row), flush=True)


def case_in_child(case: str, recipe_name: str, work: Path, steps: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sft_throughput", "--case", case, "--recipes", recipe_name,
                           "--work", str(work), "--steps", str(steps)], capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("CASE_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"case {case} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("CASE_RESULT "))


# ---------------------------------------------------------------------------------------------------------------
# Model FLOP utilisation of a bare loop


def bare_loop_tokens_per_s(quick: bool, bf16: bool, steps: int, warmup: int = 1) -> tuple[float, int]:
    """Tokens/s of forward+backward+AdamW over `steps` after `warmup` steps, and the parameter count."""
    import contextlib

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if quick:
        sizes = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 4}
        batch, seq = 2, 64
    else:  # ~27M parameters
        sizes = {"vocab_size": 8192, "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 6,
                 "num_attention_heads": 8, "num_key_value_heads": 8}
        batch, seq = 8, 256
    model = LlamaForCausalLM(LlamaConfig(**sizes, max_position_embeddings=seq, tie_word_embeddings=False)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, sizes["vocab_size"], (batch, seq))
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        with cast():
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return batch * seq * steps / (time.perf_counter() - start), sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------


def steady(row: dict, warmup: int) -> tuple[float | None, float]:
    """Real tokens/s over the steps after the first `warmup` (None when there are none) and those steps' seconds."""
    marks = row["marks"]
    if len(marks) <= warmup:
        return None, marks[-1][0]
    (t0, n0), (t1, n1) = marks[warmup - 1] if warmup else (0.0, 0), marks[-1]
    return (n1 - n0) / (t1 - t0), t0


def matmul_parameters(model_dir: str) -> int:
    """Parameters in matmuls: all but the input embedding (a lookup); the untied LM head counts."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def print_trainer_vs_bare(rows: dict, warmup: int) -> dict[str, float]:
    """Each trainer case's steady tokens/s as a share of the best bare loop on its model and rows (returned too)."""
    ratios = {}
    for case, loops in BARE_LOOPS.items():
        rates = {loop: steady(rows[loop], warmup)[0] for loop in loops if loop in rows}
        rates = {loop: rate for loop, rate in rates.items() if rate}
        trainer_rate = steady(rows[case], warmup)[0] if case in rows else None
        if not rates or not trainer_rate:
            continue
        best = max(rates, key=rates.get)
        ratios[case] = trainer_rate / rates[best]
        others = ", ".join(f"{loop} {rate:.0f}" for loop, rate in rates.items())
        print(f"steady tokens/s, {case} {trainer_rate:.0f} vs best bare loop {best}: {ratios[case]:.2f}x "
              f"(bare loops: {others})")
    return ratios


def print_ratio_spread(ratios: list[dict[str, float]]) -> None:
    """Over rounds: each trainer case's median ratio to its best bare loop, with the lowest and highest."""
    for case in BARE_LOOPS:
        seen = sorted(r[case] for r in ratios if case in r)
        if len(seen) > 1:
            print(f"{case} vs best bare loop over {len(seen)} rounds: median {statistics.median(seen):.2f}x "
                  f"(range {seen[0]:.2f}x-{seen[-1]:.2f}x)")


def run_cases(cases: list[str], recipe_name: str, work: Path, steps: int, warmup: int, n: int, peak: dict,
              header: str) -> dict[str, float]:
    """One process per case, a table row each; the trainer cases' ratios to their bare loops."""
    print(header)
    print("-" * len(header))
    rows = {}
    for case, label in CASES.items():
        if case not in cases:
            continue
        shutil.rmtree(work / case, ignore_errors=True)  # an earlier round's run folder would be resumed, not trained
        r = rows[case] = case_in_child(case, recipe_name, work, steps)
        tokens_s = r["real_tokens"] / r["seconds"]
        steady_s, warmup_s = steady(r, warmup)
        flops_per_token = (4 if r["trainable"] < n / 2 else 6) * n  # LoRA: no weight gradients
        mfu = 100 * flops_per_token * tokens_s / 1e9 / peak[r["precision"]]
        pad = 100 * (1 - r["real_tokens"] / r["padded_tokens"]) if r["padded_tokens"] else 0.0
        steady_text = f"{steady_s:>12.0f}" if steady_s else f"{'-':>12}"
        print(f"{label:<44} {r['precision']:>5} {r['trainable']:>10,} {tokens_s:>10.0f} {steady_text} "
              f"{warmup_s:>9.1f} {mfu:>6.1f} {pad:>6.1f} {r['peak_mb']:>8.0f} "
              f"{r['peak_mb'] - r['start_mb']:>9.0f}")
    if "seed_padded" in rows:
        baseline = rows["seed_padded"]["real_tokens"] / rows["seed_padded"]["seconds"]
        print("real tokens/s vs seed-style: " + ", ".join(
            f"{case} {rows[case]['real_tokens'] / rows[case]['seconds'] / baseline:.2f}x" for case in rows))
    return print_trainer_vs_bare(rows, warmup)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run: few steps, tiny recipe, small MFU model")
    parser.add_argument("--steps", type=int, default=None, help="training steps per case (default 20, quick 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="first steps left out of the steady tokens/s (a compile runs in them; default 2, quick 1)")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=None,
                        help="recipes to train (default: tiny and 27m; quick: tiny)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                        help="cases to run (TRL's defaults train in bf16: very slow where bf16 is emulated)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the cases this many times, alternating, and print each trainer case's median ratio "
                             "to its bare loop (one process per case moves a ratio by ~10%% from run to run)")
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)  # one case, in a child process
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps = args.steps or (3 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    recipes = args.recipes or (["tiny"] if args.quick else list(RECIPES))
    if args.case:
        run_case(args.case, recipes[0], Path(args.work), steps)
        return

    import torch

    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads"
          f" (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    repeats = 2 if args.quick else 5
    peak = {"fp32": gemm_gflops("float32", repeats=repeats), "bf16": gemm_gflops("bfloat16", repeats=repeats)}
    print(f"2048x2048 GEMM: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s "
          f"({'native' if native_bf16() else 'emulated: no AVX512-BF16 or AMX'} bf16)")

    for recipe_name in recipes:
        with tempfile.TemporaryDirectory(prefix="llmft-sft-bench-") as tmp:
            work = Path(tmp)
            recipe, base, _ = load_inputs(work, recipe_name)  # builds the model once; the children reuse it
            n = matmul_parameters(base)
            print(f"\nTraining: Dolly sample, recipe {recipe_name} (Llama, hidden {recipe.model.tiny.hidden_size}, "
                  f"{recipe.model.tiny.num_hidden_layers} layers, {n / 1e6:.1f}M matmul parameters), max_length "
                  f"{recipe.data.max_length}, batch {BATCH_SIZE}, {steps} steps ({warmup} warm-up), one process per "
                  "case")
            header = (f"{'case':<44} {'prec':>5} {'trainable':>10} {'real tok/s':>10} {'steady tok/s':>12} "
                      f"{'warm-up s':>9} {'MFU %':>6} {'pad %':>6} {'peak MB':>8} {'train +MB':>9}")
            ratios = []
            for round_ in range(1, args.rounds + 1):
                if args.rounds > 1:
                    print(f"round {round_} of {args.rounds}")
                ratios.append(run_cases(args.cases, recipe_name, work, steps, warmup, n, peak, header))
            print_ratio_spread(ratios)

    mfu_steps = 2 if args.quick else 3
    print(f"\nBare loop, {'tiny quick' if args.quick else '~27M'} Llama, AdamW, {mfu_steps} steps after 1 warm-up:")
    fp32 = None
    for name, bf16 in (("fp32", False), ("bf16 autocast", True)):
        if bf16 and not native_bf16() and not args.quick:
            print(f"  {name:<14} skipped: bf16 is emulated on this CPU ({peak['bf16']:.1f} GFLOP/s GEMM), minutes a "
                  "step")
            continue
        tokens_s, n = bare_loop_tokens_per_s(args.quick, bf16, mfu_steps)
        gflops = 6 * n * tokens_s / 1e9
        fp32 = fp32 or tokens_s
        print(f"  {name:<14} {n / 1e6:.1f}M params  {tokens_s:8.0f} tokens/s ({tokens_s / fp32:.2f}x)  "
              f"6NT {gflops:6.1f} GFLOP/s = {100 * gflops / peak['bf16' if bf16 else 'fp32']:.0f}% of the "
              f"{'bf16' if bf16 else 'fp32'} GEMM peak")


if __name__ == "__main__":
    main()

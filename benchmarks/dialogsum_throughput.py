"""Throughput of this project's DialogSum pipeline against plain baselines, on the same data and tiny T5.

Measured in one run, in a fresh temporary work dir (nothing reused from .llmft):

1. Training tokens/s. This project: `train_seq2seq` (Seq2SeqTrainer, DataCollatorForSeq2Seq dynamic padding,
   group_by_length). Baseline: every record padded to max_source_tokens / max_target_tokens, plain `Trainer` with
   `default_data_collator` and random sampling. Same model, seed, batch size, learning rate and max_steps. Both
   collators are wrapped in TokenCountingCollator: real tokens = attention_mask.sum() + (labels != -100).sum() over
   the batches actually fed, divided by the wall time of trainer.train(). (train_seq2seq also writes a resumable
   checkpoint at its last step inside trainer.train(); that save time is reported separately, not subtracted.)
2. Evaluation records/s: `Summarizer.summarize` with batch_size=16 vs batch_size=1, greedy, same records and
   max_new_tokens, on the model trained in 1; also whether the two sets of outputs are identical.
3. Orchestration overhead: the training process launched bare (`run_training_process(job)`) vs the same training through the Prefect task
   `tasks.training.train_model` in a minimal flow (fresh output dirs for both), and the Prefect ephemeral
   server start-up (first trivial flow run minus a second one).

    cd /work/main && source scripts/env.sh
    .venv/bin/python -m benchmarks.dialogsum_throughput [--records 128] [--steps 40] [--eval-records 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from llm_finetune.data.shapes import load_data
from llm_finetune.data.summarization import build_prompt, prepare_summarization_dataset, summarization_records
from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization
from llm_finetune.recipes import load_recipe
from llm_finetune.training.collators import TokenCountingCollator
from llm_finetune.training.seq2seq import Seq2SeqTrainJob, train_seq2seq

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "dialogsum_flan_t5_tiny.yaml"


def save_timer():
    """Trainer callback: seconds spent writing checkpoints inside trainer.train()."""
    from transformers import TrainerCallback

    class SaveTimer(TrainerCallback):
        seconds, _t = 0.0, 0.0

        def on_step_end(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_save(self, args, state, control, **kw):
            self.seconds += time.perf_counter() - self._t

    return SaveTimer()


def train_padded_baseline(base_model: str, validated, data, params, output_dir: str) -> dict:
    """Seed-style baseline: pad everything to the maximum length, plain Trainer, random sampling."""
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    set_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSeq2SeqLM.from_pretrained(base_model)

    def tokenize(batch: dict) -> dict:
        prompts = [build_prompt(data.prompt_template, d) for d in batch[data.dialogue_field]]
        enc = tokenizer(prompts, max_length=data.max_source_tokens, truncation=True, padding="max_length")
        labels = tokenizer(
            text_target=batch[data.summary_field], max_length=data.max_target_tokens, truncation=True, padding="max_length"
        )["input_ids"]
        enc["labels"] = [[t if t != tokenizer.pad_token_id else -100 for t in row] for row in labels]
        return enc

    raw = validated.load("train", data.max_train_records)
    train = raw.map(tokenize, batched=True, remove_columns=raw.column_names)
    collator = TokenCountingCollator(default_data_collator)
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=params.max_steps,
        learning_rate=params.learning_rate,
        per_device_train_batch_size=params.per_device_train_batch_size,
        logging_steps=params.logging_steps,
        seed=params.seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        train_sampling_strategy="random",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start
    return dict(
        steps=output.global_step, seconds=seconds, real=collator.real_tokens, padded=collator.padded_tokens
    )


def time_generation(model_dir: str, dialogues: list[str], batch_size: int, max_new_tokens: int, max_source: int):
    """Greedy summaries of `dialogues` and the seconds they took (after a one-record warm-up)."""
    from llm_finetune.generation import GenerationParams
    from llm_finetune.inference.summarizer import Summarizer

    summarizer = Summarizer(model_dir)
    generation = GenerationParams(max_new_tokens=max_new_tokens, num_beams=1)
    summarizer.summarize(dialogues[:1], generation, batch_size=1, max_source_tokens=max_source)
    start = time.perf_counter()
    outputs = summarizer.summarize(dialogues, generation, batch_size=batch_size, max_source_tokens=max_source)
    return outputs, time.perf_counter() - start


def orchestration(job: Seq2SeqTrainJob, prepared, work: Path) -> dict:
    """The training process launched bare vs by the Prefect task in a minimal flow; Prefect is imported only here."""
    from prefect import flow

    from llm_finetune.backends.local import run_training_process
    from tasks.training import train_model

    @flow(name="bench-noop")
    def noop() -> int:
        return 1

    @flow(name="bench-train")
    def train_flow(output_dir: str):
        return train_model(job.model_copy(update={"output_dir": output_dir}))

    times = {}
    for key in ("first_noop", "second_noop"):
        start = time.perf_counter()
        noop()
        times[key] = time.perf_counter() - start

    start = time.perf_counter()
    bare = run_training_process(job.model_copy(update={"output_dir": str(work / "orch-bare")}))
    times["bare"] = time.perf_counter() - start

    start = time.perf_counter()
    flowed = train_flow(str(work / "orch-flow"))
    times["flow"] = time.perf_counter() - start
    assert not bare.reused and not flowed.reused and bare.global_step == flowed.global_step == job.params.max_steps
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=128, help="training records")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps for every training run")
    parser.add_argument("--eval-records", type=int, default=32, help="validation records to summarize")
    args = parser.parse_args(argv)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]

    recipe = load_recipe(RECIPE, overrides=[f"data.max_train_records={args.records}",
                                            f"data.max_validation_records={args.eval_records}",
                                            f"training.max_steps={args.steps}"])
    data, params = recipe.data, recipe.training
    with tempfile.TemporaryDirectory(prefix="llmft-bench-") as tmp:
        work = Path(tmp)
        validated = load_data(data, work)
        base = str(build_tiny_t5_for_summarization(recipe.model.tiny, data, validated, work / "base-models"))
        prepared = prepare_summarization_dataset(data, validated, base, work / "datasets")
        job = Seq2SeqTrainJob(
            base_model=base,
            dataset_dir=prepared.path,
            output_dir=str(work / "project"),
            prompt_template=data.prompt_template,
            params=params,
        )

        # 1. training throughput
        save = save_timer()
        ours = train_seq2seq(job, callbacks=[save])
        seed = train_padded_baseline(base, validated, data, params, str(work / "baseline"))
        assert ours.global_step == seed["steps"] == args.steps

        # 2. evaluation throughput, on the model trained in 1
        dialogues = [r["dialogue"] for r in summarization_records(validated, "validation", data, args.eval_records)]
        max_new = recipe.evaluation.generation.max_new_tokens
        batched, t_batched = time_generation(ours.model_dir, dialogues, 16, max_new, data.max_source_tokens)
        single, t_single = time_generation(ours.model_dir, dialogues, 1, max_new, data.max_source_tokens)
        identical = sum(a == b for a, b in zip(batched, single))

        # 3. orchestration overhead
        orch = orchestration(job, prepared, work)

    seed_tps = seed["real"] / seed["seconds"]
    n = len(dialogues)

    def row(name, ours_v, base_v, fmt="{:,.1f}", ratio=True):
        r = f"{ours_v / base_v:.2f}x" if ratio and base_v else "-"
        cell = lambda v: v if isinstance(v, str) else fmt.format(v)  # noqa: E731
        return f"| {name} | {cell(ours_v)} | {cell(base_v)} | {r} |"

    lines = [
        f"DialogSum sample, tiny T5 ({prepared.num_train} train records, {args.steps} steps x batch "
        f"{params.per_device_train_batch_size}, {n} eval records, max_new_tokens {max_new}, "
        f"max lengths {data.max_source_tokens}/{data.max_target_tokens})",
        "",
        "| measurement | this project | baseline | ratio |",
        "|---|---|---|---|",
        row("train: real tokens/s (dynamic padding + group_by_length vs pad-to-max)", ours.tokens_per_second,
            seed_tps),
        row("train: real (non-pad) tokens fed", ours.real_tokens, seed["real"], "{:,.0f}"),
        row("train: padded tokens fed", ours.padded_tokens, seed["padded"], "{:,.0f}"),
        row("train: padding fraction", 1 - ours.real_tokens / ours.padded_tokens,
            1 - seed["real"] / seed["padded"], "{:.1%}"),
        row("train: trainer.train() wall s", ours.train_runtime_s, seed["seconds"], "{:.2f}"),
        row("train: of which checkpoint save s (baseline saves none)", save.seconds, "-", "{:.2f}", ratio=False),
        row("eval: records/s (batch 16 vs batch 1)", n / t_batched, n / t_single, "{:.2f}"),
        row("eval: generation wall s", t_batched, t_single, "{:.2f}"),
        row("eval: outputs identical to batch 1", f"{identical}/{n}", "-", ratio=False),
        row("orchestration: train wall s (Prefect flow+task vs bare call)", orch["flow"], orch["bare"], "{:.2f}"),
        row("orchestration: overhead s (flow - bare)", orch["flow"] - orch["bare"], "-", "{:.2f}", ratio=False),
        row("orchestration: trivial flow run s (first, incl. server start-up, vs second)", orch["first_noop"],
            orch["second_noop"], "{:.2f}", ratio=False),
        row("orchestration: ephemeral server start-up s (first - second trivial run)",
            orch["first_noop"] - orch["second_noop"], "-", "{:.2f}", ratio=False),
        "",
        f"total benchmark wall time: {time.perf_counter() - t0:.1f} s; 1-min load average {load0:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end, on {os.cpu_count()} CPUs (other CPU-bound processes skew every figure)",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()

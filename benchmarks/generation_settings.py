"""ROUGE and repetition loops of the fine-tuned default model under several anti-repetition generation settings.

In one run, in a fresh temporary work dir: build the recipe's tiny T5, tokenize, fine-tune with the recipe's full
training settings (the core functions the flow calls), then summarize the validation records the flow evaluates
(`evaluation.max_records`) once per setting, greedy, with the recipe's max_new_tokens. The first row turns both
settings off (the old behaviour). A "loop" is any 1- to 3-word n-gram repeated 3 times back to back. Also printed:
how many reference summaries repeat a token n-gram themselves (no_repeat_ngram_size=n can never reproduce those).

    source scripts/env.sh
    .venv/bin/python -m benchmarks.generation_settings [--recipe recipes/dialogsum_flan_t5_tiny.yaml]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_model
from llm_finetune.data.shapes import load_data
from llm_finetune.data.summarization import prepare_summarization_dataset, summarization_records
from llm_finetune.evaluation.rouge import ROUGE_KEYS, evaluate_summarizer
from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization
from llm_finetune.recipes import load_recipe
from llm_finetune.training.seq2seq import Seq2SeqTrainJob, train_seq2seq

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "dialogsum_flan_t5_tiny.yaml"
# (no_repeat_ngram_size, repetition_penalty); the first is "off", the old default.
SETTINGS = [(0, 1.0), (3, 1.0), (2, 1.0), (0, 1.2), (0, 1.5), (3, 1.2), (3, 1.5), (2, 1.2)]


def has_loop(text: str, max_ngram: int = 3, repeats: int = 3) -> bool:
    """Whether some n-gram of words (n <= max_ngram) occurs `repeats` times in a row."""
    words = text.split()
    for n in range(1, max_ngram + 1):
        for i in range(len(words) - n * repeats + 1):
            if all(words[i + k * n : i + (k + 1) * n] == words[i : i + n] for k in range(1, repeats)):
                return True
    return False


def repeats_ngram(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) != len(set(grams))


def share_repeating_ngrams(model_dir: str, texts: list[str]) -> dict[int, float]:
    """{n: share of texts whose tokens (the model's tokenizer) repeat an n-gram} for n = 2, 3."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return {n: sum(repeats_ngram(i, n) for i in ids) / len(texts) for n in (2, 3)}




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE), help="YAML recipe (a tiny-model one: it is trained here)")
    args = parser.parse_args(argv)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]

    recipe = load_recipe(args.recipe)
    data, evaluation = recipe.data, recipe.evaluation
    with tempfile.TemporaryDirectory(prefix="llmft-gen-bench-") as tmp:
        work = Path(tmp)
        validated = load_data(data, work)
        base = str(build_tiny_t5_for_summarization(recipe.model.tiny, data, validated, work / "base-models"))
        prepared = prepare_summarization_dataset(data, validated, base, work / "datasets")
        trained = train_seq2seq(Seq2SeqTrainJob(base_model=base, dataset_dir=prepared.path,
                                                output_dir=str(work / "run"), prompt_template=data.prompt_template,
                                                params=recipe.training))
        records = summarization_records(validated, "validation", data, evaluation.max_records)
        reference_repeats = share_repeating_ngrams(trained.model_dir, [r["summary"] for r in records])
        rows = []
        for ngram, penalty in SETTINGS:
            generation = evaluation.generation.model_copy(
                update={"no_repeat_ngram_size": ngram, "repetition_penalty": penalty}
            )
            result = evaluate_summarizer(trained.model_dir, records, data.prompt_template,
                                         batch_size=evaluation.batch_size, generation=generation,
                                         max_source_tokens=data.max_source_tokens)
            loops = sum(has_loop(p) for p in result.predictions) / len(records)
            rows.append((ngram, penalty, result, loops))

    lines = [
        f"{recipe.name}: {prepared.num_train} train records, {trained.global_step} steps "
        f"(final mean loss {trained.train_loss}), {len(records)} validation records, greedy, "
        f"max_new_tokens {evaluation.generation.max_new_tokens}",
        "",
        "| no_repeat_ngram_size | repetition_penalty | " + " | ".join(ROUGE_KEYS) + " | outputs with a loop | "
        "mean words |",
        "|---|---|" + "---|" * len(ROUGE_KEYS) + "---|---|",
    ]
    for ngram, penalty, result, loops in rows:
        scores = " | ".join(f"{result.metrics[k]:.4f}" for k in ROUGE_KEYS)
        words = sum(len(p.split()) for p in result.predictions) / len(records)
        lines.append(f"| {ngram} | {penalty} | {scores} | {loops:.0%} | {words:.1f} |")
    reference_words = sum(len(r["summary"].split()) for r in records) / len(records)
    lines += ["", f"references: mean {reference_words:.1f} words; "
              + ", ".join(f"{share:.0%} repeat a token {n}-gram" for n, share in reference_repeats.items())]
    best = max(rows, key=lambda r: r[2].metrics["rougeL"])
    lines += ["", f"best rougeL: no_repeat_ngram_size={best[0]}, repetition_penalty={best[1]}", "",
              "sample outputs (first record):"]
    lines += [f"  ({ngram}, {penalty}): {result.predictions[0]!r}" for ngram, penalty, result, _ in rows]
    lines += ["", f"total wall time {time.perf_counter() - t0:.0f} s on {cpu_model()} ({os.cpu_count()} CPUs); "
              f"1-min load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""IMDB sequence-classification throughput and memory, this project's trainer against the seed's way, in one run.

1. Real (non-pad) tokens/s, same IMDB records, same GPT-2 (a tiny config built on the sample), same batch size,
   max_length and steps, each training case in its own process:
   a) seed's way: every review padded to max_length, random batches (`pad_to_max_length: true`,
      `group_by_length: false`);
   b) this project: each batch padded to its longest review, length-grouped batches (the defaults).
   Training: real tokens counted at the model's forward over trainer.train()'s wall time. Evaluation, on the model
   of b): the validation reviews scored in batches padded to max_length in file order (seed) vs `TextClassifier`
   (batches sorted by length, padded to their longest); the predictions must agree.
2. Peak RSS (ru_maxrss, per process) of training at gpt2-large width (1280, 20 heads) with 2 layers: LoRA on a 4-bit
   NF4 base (classification head in full) vs a full fine-tune, `--memory-steps` steps each at max_length 256.

    source scripts/env.sh
    python -m benchmarks.classification_throughput [--steps 20] [--memory-steps 3] [--max-length 512]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_model

REPO = Path(__file__).resolve().parent.parent
IMDB = REPO.parent / "shared" / "data" / "imdb"
SPEED_MODEL = {"family": "gpt2", "vocab_size": 4000, "hidden_size": 256, "num_hidden_layers": 4,
               "num_attention_heads": 4, "intermediate_size": 1024, "max_position_embeddings": 1024}
LARGE_WIDTH = {"family": "gpt2", "vocab_size": 4000, "hidden_size": 1280, "num_hidden_layers": 2,
               "num_attention_heads": 20, "intermediate_size": 5120, "max_position_embeddings": 1024}
CASES = {"seed_padded": "a) seed's way: pad to max_length, random batches",
         "project": "b) dynamic padding, length-grouped batches",
         "qlora_large": "4-bit NF4 + LoRA, gpt2-large width, 2 layers",
         "full_large": "full fine-tune, gpt2-large width, 2 layers"}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, work: Path, steps: int, max_length: int, batch_size: int, memory_steps: int) -> dict:
    """Train (and for the speed cases evaluate) one case in this process; a JSON-able result."""
    import torch

    from llm_finetune.data.shapes import load_data
    from llm_finetune.models.base import base_model_path
    from llm_finetune.recipes import ClassificationData, ClassifierModelSpec, LoraSpec, TinyCausalSpec, TrainerParams
    from llm_finetune.training.classification import classification_job, train_classifier

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    large = case.endswith("_large")
    data = ClassificationData(train_uri=str(IMDB / "train.jsonl"), validation_uri=str(IMDB / "validation.jsonl"),
                              max_length=256 if large else max_length, truncation="head")
    validated = load_data(data, work)
    base = base_model_path(ClassifierModelSpec(tiny=TinyCausalSpec(**(LARGE_WIDTH if large else SPEED_MODEL))), data,
                           validated, work / "models")
    lora = (LoraSpec(r=16, alpha=32, dropout=0.0, quantization={"load_in_4bit": True}) if case == "qlora_large"
            else LoraSpec(enabled=False))
    params = TrainerParams(max_steps=memory_steps if large else steps, per_device_train_batch_size=batch_size, learning_rate=1e-3, warmup=0,
                           logging_steps=steps, save_steps=10_000, pad_to_max_length=case == "seed_padded",
                           group_by_length=case != "seed_padded", seed=7)
    before = rss_mb()
    result = train_classifier(classification_job(base, validated, data, lora, params, work / case))
    out = {"case": case, "train_real_tokens": result.real_tokens, "train_padded_tokens": result.padded_tokens,
           "train_s": result.train_runtime_s, "train_tokens_per_s": result.tokens_per_second,
           "peak_rss_mb": rss_mb(), "rss_before_train_mb": before,
           "trainable_parameters": result.trainable_parameters, "total_parameters": result.total_parameters}
    if case == "project":  # one model scored both ways, so the predictions must agree
        for way in ("padded", "dynamic"):
            out[way] = evaluate(result.model_dir, validated, data, padded=way == "padded", batch_size=16)
    return out


def evaluate(model_dir: str, validated, data, *, padded: bool, batch_size: int) -> dict:
    """Real tokens/s scoring the validation reviews: padded to max_length in file order, or TextClassifier."""
    import torch

    from llm_finetune.inference.classifier import TextClassifier

    classifier = TextClassifier(model_dir)
    texts = list(validated.load("validation")[data.text_field])
    ids = classifier.encoder.encode(texts)["input_ids"]
    real = sum(len(i) for i in ids)
    start = time.perf_counter()
    if padded:
        predictions = []
        for b in range(0, len(ids), batch_size):
            batch = classifier.tokenizer.pad({"input_ids": ids[b:b + batch_size]}, padding="max_length",
                                             max_length=data.max_length, return_tensors="pt")
            with torch.inference_mode():
                predictions += classifier.model(**batch).logits.argmax(-1).tolist()
        fed = len(ids) * data.max_length
    else:
        probs = classifier.probabilities(texts, batch_size)
        predictions = [max(range(len(p)), key=p.__getitem__) for p in probs]
        fed = None
    seconds = time.perf_counter() - start
    return {"eval_real_tokens": real, "eval_s": seconds, "eval_tokens_per_s": real / seconds,
            "eval_predictions": predictions, "eval_fed_tokens": fed}


def spawn(case: str, work: Path, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.classification_throughput", "--case", case, "--work", str(work),
           "--steps", str(args.steps), "--max-length", str(args.max_length), "--batch-size", str(args.batch_size),
           "--memory-steps", str(args.memory_steps)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--case", choices=list(CASES))
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.case:  # child process
        print(json.dumps(run_case(args.case, Path(args.work), args.steps, args.max_length, args.batch_size,
                                  args.memory_steps)))
        return

    print(f"CPU: {cpu_model()}; load average {os.getloadavg()[0]:.1f}; torch threads "
          f"{os.environ.get('BENCH_THREADS', '1')}; {args.steps} steps x batch {args.batch_size}, "
          f"max_length {args.max_length}; model gpt2 hidden {SPEED_MODEL['hidden_size']} x "
          f"{SPEED_MODEL['num_hidden_layers']} layers")
    with tempfile.TemporaryDirectory(prefix="llmft-cls-bench-") as tmp:
        results = {}
        for case, title in CASES.items():  # each case as it ends, so a stopped run keeps what it measured
            results[case] = spawn(case, Path(tmp), args)
            r = results[case]
            print(f"{title}: train {r['train_tokens_per_s']:,.0f} real tokens/s, peak RSS {r['peak_rss_mb']:,.0f} MB",
                  flush=True)
    seed, ours = results["seed_padded"], results["project"]
    padded_eval, dynamic_eval = ours["padded"], ours["dynamic"]
    assert padded_eval["eval_predictions"] == dynamic_eval["eval_predictions"], "padding changed the predictions"
    rows = [
        ("train: real tokens/s", seed["train_tokens_per_s"], ours["train_tokens_per_s"]),
        ("train: padding share of tokens fed", 1 - seed["train_real_tokens"] / seed["train_padded_tokens"],
         1 - ours["train_real_tokens"] / ours["train_padded_tokens"]),
        ("train: wall s", seed["train_s"], ours["train_s"]),
        ("eval: real tokens/s (200 reviews, same model, same predictions)", padded_eval["eval_tokens_per_s"],
         dynamic_eval["eval_tokens_per_s"]),
    ]
    print("\n| measurement | seed's way | this project | ratio |\n|---|---|---|---|")
    for name, base, mine in rows:
        print(f"| {name} | {base:,.3f} | {mine:,.3f} | {mine / base if base else float('nan'):.2f}x |")
    q, f = results["qlora_large"], results["full_large"]
    print("\n| gpt2-large width, 2 layers | trainable / total params | peak RSS MB | load + train +MB |\n|---|---|---|---|")
    for name, r in (("full fine-tune", f), ("LoRA on 4-bit NF4", q)):
        print(f"| {name} | {r['trainable_parameters']:,} / {r['total_parameters']:,} | {r['peak_rss_mb']:,.0f} | "
              f"{r['peak_rss_mb'] - r['rss_before_train_mb']:,.0f} |")


if __name__ == "__main__":
    main()

"""Which part of a long IMDB review to keep: head, tail or head+tail, measured on the real MiniLM (bundled) with the
same records, steps and seed; accuracy and macro-F1 on the validation reviews. One model per side, in this process.

    source scripts/env.sh
    python -m benchmarks.truncation_sides [--max-length 128] [--train-records 800] [--epochs 2]

A first try with 400 reviews, 1 epoch at 5e-5 left MiniLM at the majority class (accuracy 0.54 = 107/200 negative):
too little training to compare sides; hence the defaults (6-8 min per side with 1 thread; README has the figures).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_model

IMDB = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "imdb"


def main() -> None:
    import torch

    from llm_finetune.data.shapes import load_data
    from llm_finetune.evaluation.classification import classification_eval_records, evaluate_classifier
    from llm_finetune.models.sources import bundled_model_path
    from llm_finetune.recipes import ClassificationData, LoraSpec, TrainerParams
    from llm_finetune.training.classification import classification_job, train_classifier

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-records", type=int, default=800)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    base = str(bundled_model_path("minilm-l6"))
    print(f"CPU: {cpu_model()}; MiniLM-L6 full fine-tune; {args.train_records} train reviews, {args.epochs} epoch(s), "
          f"lr {args.learning_rate}, "
          f"max_length {args.max_length}, seed {args.seed}; 200 validation reviews\n")
    print("| truncation | accuracy | macro-F1 | reviews cut (train) | train s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="llmft-trunc-") as tmp:
        for side in ("head", "tail", "head+tail"):
            data = ClassificationData(train_uri=str(IMDB / "train.jsonl"), validation_uri=str(IMDB / "validation.jsonl"),
                                      max_train_records=args.train_records, max_length=args.max_length,
                                      truncation=side)
            validated = load_data(data, tmp)
            params = TrainerParams(epochs=args.epochs, learning_rate=args.learning_rate, per_device_train_batch_size=16,
                                   warmup=0.1, logging_steps=50, save_steps=10_000, seed=args.seed)
            start = time.perf_counter()
            result = train_classifier(classification_job(base, validated, data, LoraSpec(enabled=False), params, tmp))
            seconds = time.perf_counter() - start
            scores = evaluate_classifier(result.model_dir, classification_eval_records(validated, data, None), data,
                                         batch_size=32).metrics
            print(f"| {side} | {scores['accuracy']:.4f} | {scores['macro_f1']:.4f} | {result.truncated_records} / "
                  f"{result.records} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()

"""Extractive question answering as the Hugging Face `run_qa` example does it: question + context windows of
max_length tokens with `doc_stride` tokens of overlap, span labels in token positions, and predictions mapped back to
character offsets of the context through each window's offset mapping. Used by training, evaluation, the endpoint
and the MLflow pyfunc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_finetune.kinds import serving_setting


@dataclass(frozen=True)
class WindowSettings:
    """Saved beside a trained model so serving windows contexts as training did."""

    max_length: int = 384
    doc_stride: int = 128
    n_best_size: int = 20
    max_answer_length: int = 30


def windows(tokenizer, questions: list[str], contexts: list[str], settings: WindowSettings) -> dict:
    """Tokenized windows of every (question, context): only the context is cut ('only_second'); a long context
    gives several windows. Keys: input_ids, attention_mask, [token_type_ids], offset_mapping, example_index."""
    pad_on_right = tokenizer.padding_side == "right"
    # run_qa strips the question's left whitespace: some questions have lots of it, which wastes the window.
    questions = [q.lstrip() for q in questions]
    enc = tokenizer(questions if pad_on_right else contexts, contexts if pad_on_right else questions,
                    truncation="only_second" if pad_on_right else "only_first", max_length=settings.max_length,
                    stride=settings.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    enc["example_index"] = enc.pop("overflow_to_sample_mapping")
    context_id = 1 if pad_on_right else 0
    # Offsets of non-context tokens become None, so no answer can be read from the question or special tokens.
    enc["context_offsets"] = [
        [o if enc.sequence_ids(i)[k] == context_id else None for k, o in enumerate(offsets)]
        for i, offsets in enumerate(enc["offset_mapping"])
    ]
    return enc


def span_labels(enc, answer_spans: list[tuple[int, int]], cls_token_id: int | None) -> tuple[list[int], list[int]]:
    """Start/end token positions of each window's answer, or the CLS position when the window does not hold the
    whole answer (run_qa's rule). `answer_spans`: (start_char, end_char) per example."""
    starts, ends = [], []
    for i, offsets in enumerate(enc["context_offsets"]):
        ids = enc["input_ids"][i]
        cls = ids.index(cls_token_id) if cls_token_id in ids else 0
        start_char, end_char = answer_spans[enc["example_index"][i]]
        context_tokens = [k for k, o in enumerate(offsets) if o is not None]
        first, last = context_tokens[0], context_tokens[-1]
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(cls)
            ends.append(cls)
            continue
        s = first
        while s <= last and offsets[s][0] <= start_char:
            s += 1
        e = last
        while e >= first and offsets[e][1] >= end_char:
            e -= 1
        starts.append(s - 1)
        ends.append(e + 1)
    return starts, ends


def best_spans(enc, start_logits, end_logits, contexts: list[str], settings: WindowSettings) -> list[dict]:
    """Per example, the best span over all its windows: {'answer', 'score', 'start', 'end'} with character offsets
    into the context; score is the softmax of the best candidate over all candidates (as run_qa)."""
    candidates: list[list[tuple[float, int, int]]] = [[] for _ in contexts]
    for i, offsets in enumerate(enc["context_offsets"]):
        s_logits, e_logits = np.asarray(start_logits[i]), np.asarray(end_logits[i])
        top_s = np.argsort(s_logits)[-1: -settings.n_best_size - 1: -1]
        top_e = np.argsort(e_logits)[-1: -settings.n_best_size - 1: -1]
        for s in top_s:
            for e in top_e:
                if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                    continue
                if e < s or e - s + 1 > settings.max_answer_length:
                    continue
                candidates[enc["example_index"][i]].append(
                    (float(s_logits[s] + e_logits[e]), offsets[s][0], offsets[e][1]))
    answers = []
    for context, found in zip(contexts, candidates):
        if not found:
            answers.append({"answer": "", "score": 0.0, "start": 0, "end": 0})
            continue
        scores = np.array([c[0] for c in found])
        probs = np.exp(scores - scores.max())
        best = int(scores.argmax())
        _, start, end = found[best]
        answers.append({"answer": context[start:end], "score": float(probs[best] / probs.sum()), "start": start,
                        "end": end})
    return answers


def saved_window_settings(model_dir: str | Path) -> WindowSettings | None:
    settings = serving_setting(model_dir, "windows")
    return WindowSettings(**settings) if settings else None


class ExtractiveReader:
    """A model with a span head answering questions about contexts, in batches of windows."""

    def __init__(self, model_dir: str | Path, settings: WindowSettings | None = None, device: str | None = None):
        import torch
        import transformers
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.settings = settings or saved_window_settings(model_dir) or WindowSettings()
        transformers.logging.set_verbosity_error()  # a base model's new span head is reported as missing weights
        self.model = AutoModelForQuestionAnswering.from_pretrained(model_dir).to(self.device).eval()

    def answer(self, questions: list[str], contexts: list[str], batch_size: int = 16,
               max_answer_length: int | None = None) -> list[dict]:
        import torch

        settings = self.settings
        if max_answer_length is not None:
            settings = WindowSettings(**{**settings.__dict__, "max_answer_length": max_answer_length})
        enc = windows(self.tokenizer, questions, contexts, settings)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        starts, ends = [], []
        for b in range(0, len(enc["input_ids"]), batch_size):
            batch = self.tokenizer.pad({k: enc[k][b:b + batch_size] for k in keys}, return_tensors="pt")
            with torch.inference_mode():
                out = self.model(**batch.to(self.device))
            starts += out.start_logits.float().cpu().tolist()
            ends += out.end_logits.float().cpu().tolist()
        # padded positions have no offsets, so best_spans never reads them
        return best_spans(enc, starts, ends, contexts, settings)

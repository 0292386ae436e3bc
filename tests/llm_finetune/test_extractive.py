"""run_qa windows: an answer inside the overlap of two windows is labelled in both and maps back to the right
characters from either; a window without the whole answer is labelled at CLS."""

import numpy as np
import pytest

from llm_finetune.inference.extractive import WindowSettings, best_spans, span_labels, windows


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from llm_finetune.models.sources import bundled_model_path

    return AutoTokenizer.from_pretrained(bundled_model_path("minilm-l6"))


def test_answer_in_two_windows_maps_back_to_its_characters(tokenizer):
    words = [f"filler{i}" for i in range(40)]
    context = " ".join(words[:20]) + " the Golden Gate Bridge " + " ".join(words[20:])
    start = context.index("Golden Gate Bridge")
    end = start + len("Golden Gate Bridge")
    settings = WindowSettings(max_length=48, doc_stride=32, n_best_size=5, max_answer_length=10)
    enc = windows(tokenizer, ["Which bridge?"], [context], settings)
    assert len(enc["input_ids"]) >= 3 and set(enc["example_index"]) == {0}

    starts, ends = span_labels(enc, [(start, end)], tokenizer.cls_token_id)
    holding = [i for i, s in enumerate(starts) if s != enc["input_ids"][i].index(tokenizer.cls_token_id)]
    assert len(holding) >= 2  # the answer sits in the overlap of neighbouring windows
    for i in holding:
        offsets = enc["context_offsets"][i]
        assert context[offsets[starts[i]][0]:offsets[ends[i]][1]] == "Golden Gate Bridge"
    without = [i for i in range(len(starts)) if i not in holding]
    assert without and all(starts[i] == ends[i] == 0 for i in without)  # CLS is position 0 for BERT

    # Logits peaking at the answer in the second window that holds it: the span comes back in context characters.
    width = max(len(ids) for ids in enc["input_ids"])
    start_logits, end_logits = np.zeros((len(starts), width)), np.zeros((len(starts), width))
    start_logits[holding[1], starts[holding[1]]] = end_logits[holding[1], ends[holding[1]]] = 10.0
    best = best_spans(enc, start_logits, end_logits, [context], settings)[0]
    assert (best["start"], best["end"], best["answer"]) == (start, end, "Golden Gate Bridge")
    assert 0 < best["score"] <= 1


def test_spans_never_come_from_the_question_or_past_max_answer_length(tokenizer):
    context = "Paris is the capital of France and has many bridges over the Seine river."
    settings = WindowSettings(max_length=64, doc_stride=16, n_best_size=20, max_answer_length=3)
    enc = windows(tokenizer, ["What is the capital?"], [context], settings)
    n = len(enc["input_ids"][0])
    start_logits, end_logits = np.zeros((1, n)), np.zeros((1, n))
    start_logits[0, 1] = end_logits[0, 1] = 50.0  # a question token
    context_tokens = [k for k, o in enumerate(enc["context_offsets"][0]) if o is not None]
    start_logits[0, context_tokens[0]] = 5.0
    end_logits[0, context_tokens[-1]] = 5.0  # whole context: longer than 3 tokens
    end_logits[0, context_tokens[0]] = 4.0
    best = best_spans(enc, start_logits, end_logits, [context], settings)[0]
    assert best["answer"] == "Paris" and best["start"] == 0

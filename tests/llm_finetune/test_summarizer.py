from itertools import pairwise

from llm_finetune.data.summarization import summarization_records
from llm_finetune.generation import GenerationParams
from llm_finetune.inference.summarizer import Summarizer


def repeated_bigrams(ids: list[int]) -> set[tuple[int, int]]:
    seen, repeated = set(), set()
    for bigram in pairwise(ids):
        (repeated if bigram in seen else seen).add(bigram)
    return repeated


def generated_ids(summarizer: Summarizer, dialogues: list[str], generation: GenerationParams) -> list[list[int]]:
    """Token ids `model.generate` returned inside `summarize` (pads dropped)."""
    calls = []
    generate = summarizer.model.generate
    summarizer.model.generate = lambda **kw: calls.append(generate(**kw)) or calls[-1]
    try:
        summarizer.summarize(dialogues, generation)
    finally:
        summarizer.model.generate = generate
    pad = summarizer.tokenizer.pad_token_id
    return [[t for t in row.tolist() if t != pad] for batch in calls for row in batch]


def test_no_repeat_ngram_size_reaches_generate(trained_tiny_model):
    recipe = trained_tiny_model["recipe"]
    dialogues = [r["dialogue"] for r in summarization_records(trained_tiny_model["validated"], "validation", recipe.data, 4)]
    summarizer = Summarizer(trained_tiny_model["finetuned"])
    plain = GenerationParams(max_new_tokens=32, no_repeat_ngram_size=0, repetition_penalty=1.0)
    looping = generated_ids(summarizer, dialogues, plain)
    assert any(repeated_bigrams(ids) for ids in looping)  # the setting has something to prevent
    guarded = generated_ids(summarizer, dialogues, plain.model_copy(update={"no_repeat_ngram_size": 2}))
    assert len(guarded) == 4 and all(len(ids) > 2 and not repeated_bigrams(ids) for ids in guarded)

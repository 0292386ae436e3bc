import pytest

from llm_finetune.data.summarization import summarization_records
from llm_finetune.evaluation.rouge import evaluate_summarizer, rouge_scores
from llm_finetune.generation import GenerationParams
from llm_finetune.inference.summarizer import Summarizer


def test_identical_and_disjoint_texts():
    same = rouge_scores(["Tom buys a red car."], ["Tom buys a red car."])
    assert same == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}
    none = rouge_scores(["alpha beta"], ["gamma delta"])
    assert set(none.values()) == {0.0}


def test_partial_overlap_is_averaged_over_records():
    scores = rouge_scores(["the cat sat", "xyz"], ["the cat sat", "the dog ran"])
    assert scores["rouge1"] == pytest.approx(0.5)


def test_rouge_lsum_uses_sentence_structure():
    pred, ref = "c d. a b.", "a b. c d."  # same sentences, other order
    assert rouge_scores([pred], [ref])["rougeLsum"] > rouge_scores([pred], [ref])["rougeL"]


def test_length_mismatch_rejected():
    with pytest.raises(ValueError, match="1 predictions vs 2 references"):
        rouge_scores(["a"], ["a", "b"])


def test_batched_generation_matches_one_at_a_time(trained_tiny_model):
    recipe = trained_tiny_model["recipe"]
    records = summarization_records(trained_tiny_model["validated"], "validation", recipe.data, 6)
    summarizer = Summarizer(trained_tiny_model["finetuned"])
    dialogues = [r["dialogue"] for r in records]
    batched = summarizer.summarize(dialogues, GenerationParams(max_new_tokens=24), batch_size=4)
    single = [summarizer.summarize([d], GenerationParams(max_new_tokens=24), batch_size=1)[0] for d in dialogues]
    assert batched == single
    assert all(batched)


def test_finetuned_beats_base_side_by_side(trained_tiny_model):
    recipe = trained_tiny_model["recipe"]
    records = summarization_records(trained_tiny_model["validated"], "validation", recipe.data, 16)
    base, tuned = (
        evaluate_summarizer(m, records, recipe.data.prompt_template, batch_size=8,
                            generation=GenerationParams(max_new_tokens=32))
        for m in (trained_tiny_model["base"], trained_tiny_model["finetuned"])
    )
    assert tuned.metrics["rougeL"] > base.metrics["rougeL"]
    assert tuned.num_records == base.num_records == 16 and tuned.records_per_second > 0


def test_no_stemming_as_evaluate_by_default():
    # evaluate's rouge defaults to use_stemmer=False: "cats" is not "cat", "ran" is not "runs".
    assert rouge_scores(["the cats ran"], ["the cat runs"])["rouge1"] == pytest.approx(1 / 3)


def test_rouge_lsum_keeps_abbreviations_inside_a_sentence():
    # One sentence each side, so the summary-level LCS is the plain LCS. Splitting at "Dr." and "U.S." would cut both
    # into pieces and credit the moved "on Monday".
    scores = rouge_scores(["On Monday Dr. Smith flew to the U.S."], ["Dr. Smith flew to the U.S. on Monday."])
    assert scores["rougeL"] < 1.0 and scores["rougeLsum"] == pytest.approx(scores["rougeL"])

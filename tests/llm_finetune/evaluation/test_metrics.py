"""SQuAD v1.1 EM/F1 on worked examples, and classification scores."""

import pytest

from llm_finetune.evaluation.metrics import (
    classification_scores,
    confusion,
    exact_match,
    normalize_answer,
    squad_per_question,
    squad_scores,
    token_f1,
)


@pytest.mark.parametrize("text, normalized", [
    ("The Eiffel Tower", "eiffel tower"),                 # lowercase, article dropped
    ("  an   apple, a pear. ", "apple pear"),             # punctuation, articles, whitespace
    ("Theatre", "theatre"),                               # 'the' only as a whole word
    ("U.S.A.", "usa"),                                    # punctuation removed inside words, no space left
    ("rock-n-roll", "rocknroll"),
    ("A", ""),
])
def test_normalisation_follows_the_official_script(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_and_f1_worked_examples():
    assert exact_match("the Denver Broncos!", "Denver Broncos") == 1.0
    assert exact_match("Denver", "Denver Broncos") == 0.0
    # pred "denver" vs gold "denver broncos": precision 1/1, recall 1/2 -> F1 2/3
    assert token_f1("Denver", "Denver Broncos") == pytest.approx(2 / 3)
    # pred "broncos won in denver" (4 tokens), gold "denver broncos": 2 common -> P 1/2, R 1 -> F1 2/3
    assert token_f1("The Broncos won in Denver", "Denver Broncos") == pytest.approx(2 / 3)
    assert token_f1("Carolina", "Denver Broncos") == 0.0
    assert token_f1("the", "a") == 0.0  # both normalise to nothing: no common token


def test_several_gold_answers_take_the_best():
    per_q = squad_per_question(["Santa Clara", "1990"],
                               [["Levi's Stadium", "Santa Clara, California", "Santa Clara"], ["1991", "in 1990s"]])
    assert per_q[0] == {"exact_match": 1.0, "f1": 1.0}
    assert per_q[1]["exact_match"] == 0.0 and per_q[1]["f1"] == 0.0  # "1990" vs "1990s": different tokens
    scores = squad_scores(["Santa Clara", "California"], [["Santa Clara"], ["Santa Clara, California"]])
    # second: pred 1 token, gold 3 tokens, 1 common -> P 1, R 1/3 -> F1 0.5
    assert scores == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(75.0)}


def test_squad_scores_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="2 predictions vs 1"):
        squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one gold"):
        squad_scores(["a"], [[]])


def test_classification_scores_and_confusion():
    y_true, y_pred = [0, 0, 0, 1, 1], [0, 0, 1, 1, 1]
    scores = classification_scores(y_true, y_pred, 2)
    assert scores["accuracy"] == pytest.approx(0.8)
    # class 0: P 1, R 2/3 -> 0.8; class 1: P 2/3, R 1 -> 0.8
    assert scores["macro_f1"] == pytest.approx(0.8)
    assert confusion(y_true, y_pred, 2) == [[2, 1], [0, 2]]
    always_zero = classification_scores([0, 1], [0, 0], 2)
    assert always_zero["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)

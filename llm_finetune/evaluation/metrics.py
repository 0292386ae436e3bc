"""Metrics written once for every flow: SQuAD v1.1 exact match / F1 (the official script's normalisation) and
classification accuracy / macro-F1 / confusion matrix; `METRICS` names them for recipes and reports."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation, in the official order: lowercase, drop punctuation, drop articles, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (bag of tokens, as the official script)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(metric: Callable[[str, str], float], prediction: str, golds: Sequence[str]) -> float:
    """The official script scores a prediction against every gold answer and keeps the best."""
    if not golds:
        raise ValueError("a question needs at least one gold answer")
    return max(metric(prediction, g) for g in golds)


def squad_per_question(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> list[dict[str, float]]:
    """Per question: {'exact_match', 'f1'} in 0..1, each the maximum over that question's gold answers."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions vs {len(golds)} gold answer lists")
    return [{"exact_match": best_over_golds(exact_match, p, g), "f1": best_over_golds(token_f1, p, g)}
            for p, g in zip(predictions, golds)]


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Exact match and F1 averaged over questions, in percent (0-100) as the official SQuAD v1.1 script reports."""
    per_question = squad_per_question(predictions, golds)
    if not per_question:
        raise ValueError("no predictions to score")
    n = len(per_question)
    return {k: 100.0 * sum(q[k] for q in per_question) / n for k in ("exact_match", "f1")}


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (every class weighs the same, absent predictions count as F1 0)."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"{len(y_pred)} predictions vs {len(y_true)} labels")
    labels = list(range(num_labels))
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))}


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(range(num_labels))).tolist()


# Metric name -> (higher is better). Recipes' approval thresholds and reports use these names.
METRICS: dict[str, bool] = {"exact_match": True, "f1": True, "accuracy": True, "macro_f1": True}

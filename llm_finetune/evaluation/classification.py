"""Text classification evaluation: accuracy, macro-F1 and confusion matrix of a base (new, seeded head) and a
fine-tuned classifier on the same records, side by side, with misclassified samples."""

from __future__ import annotations

import time

from pydantic import BaseModel

from llm_finetune.data.classification import TruncationRule, label_ids
from llm_finetune.data.intake import ValidatedData
from llm_finetune.evaluation.comparison import ReleaseEvidence, paired_means
from llm_finetune.evaluation.metrics import classification_scores, confusion
from llm_finetune.inference.classifier import TextClassifier
from llm_finetune.recipes import ClassificationData

METRIC_KEYS = ("accuracy", "macro_f1")


class ClassificationEval(BaseModel):
    model: str
    metrics: dict[str, float]
    confusion: list[list[int]]  # rows: true label, columns: predicted (labels in recipe order)
    predictions: list[int]
    scores: list[float]  # probability of the predicted label
    correct: list[float] = []  # per record, 1.0 when the prediction is the label
    num_records: int
    records_per_second: float


def classification_eval_records(validated: ValidatedData, data: ClassificationData,
                                limit: int | None) -> list[dict]:
    """Validation records as {'id', 'text', 'label' (id)}: the first `limit` (and data.max_validation_records)."""
    _, label2id = label_ids(data)
    limit = min((n for n in (limit, data.max_validation_records) if n is not None), default=None)
    rows = validated.load("validation", limit).to_list()
    return [{"id": str(r[data.id_field]) if data.id_field and r.get(data.id_field) is not None else str(i),
             "text": r[data.text_field], "label": label2id[r[data.label_field]]} for i, r in enumerate(rows)]


def evaluate_classifier(model_dir: str, records: list[dict], data: ClassificationData, *, batch_size: int,
                        seed: int = 0, new_head: bool = False) -> ClassificationEval:
    """Score one model; `new_head` puts a seeded, untrained head on a base model (the before-fine-tuning score)."""
    head = None
    if new_head:
        id2label, label2id = label_ids(data)
        head = {"num_labels": len(id2label), "id2label": id2label, "label2id": label2id}
    classifier = TextClassifier(model_dir, TruncationRule.of(data), head=head, seed=seed)
    start = time.perf_counter()
    probs = classifier.probabilities([r["text"] for r in records], batch_size)
    seconds = time.perf_counter() - start
    predictions = [max(range(len(p)), key=p.__getitem__) for p in probs]
    truth = [r["label"] for r in records]
    return ClassificationEval(
        model=str(model_dir), metrics=classification_scores(truth, predictions, len(data.labels)),
        confusion=confusion(truth, predictions, len(data.labels)), predictions=predictions,
        scores=[p[k] for p, k in zip(probs, predictions)], num_records=len(records),
        correct=[float(t == p) for t, p in zip(truth, predictions)],
        records_per_second=len(records) / seconds if seconds > 0 else 0.0)


def confusion_markdown(matrix: list[list[int]], labels: list[str]) -> str:
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(str(n) for n in row) + " |" for label, row in zip(labels, matrix)]
    return "\n".join(lines)


class ClassificationComparison(BaseModel):
    base: ClassificationEval
    finetuned: ClassificationEval
    labels: list[str]
    samples: list[dict]  # misclassified by the fine-tuned model first

    def metric_rows(self) -> list[dict]:
        return [{"metric": k, "base": round(self.base.metrics[k], 4), "fine_tuned": round(self.finetuned.metrics[k], 4),
                 "gain": round(self.finetuned.metrics[k] - self.base.metrics[k], 4)} for k in METRIC_KEYS]

    def markdown(self) -> str:
        lines = ["| metric | base | fine-tuned | gain |", "|---|---|---|---|"]
        lines += [f"| {r['metric']} | {r['base']} | {r['fine_tuned']} | {r['gain']:+} |" for r in self.metric_rows()]
        lines += ["", f"### Confusion matrix, fine-tuned ({self.finetuned.num_records} records)", "",
                  confusion_markdown(self.finetuned.confusion, self.labels),
                  "", "### Confusion matrix, base", "", confusion_markdown(self.base.confusion, self.labels)]
        for s in self.samples:
            lines += ["", f"### {s['id']}: {s['label']} -> {s['finetuned']} ({s['score']:.2f})", s["text"][:500]]
        return "\n".join(lines)

    def evidence(self) -> ReleaseEvidence:
        return ReleaseEvidence(base_metrics=self.base.metrics, finetuned_metrics=self.finetuned.metrics,
                               samples=self.samples, report_markdown=self.markdown(),
                               num_records=self.finetuned.num_records,
                               per_record=paired_means({"accuracy": self.base.correct},
                                                       {"accuracy": self.finetuned.correct}))


def compare_classifiers(base: ClassificationEval, finetuned: ClassificationEval, records: list[dict],
                        labels: list[str], num_samples: int) -> ClassificationComparison:
    wrong = [i for i, (r, p) in enumerate(zip(records, finetuned.predictions)) if r["label"] != p]
    right = [i for i in range(len(records)) if i not in set(wrong)]
    samples = [{"id": records[i]["id"], "text": records[i]["text"], "label": labels[records[i]["label"]],
                "finetuned": labels[finetuned.predictions[i]], "base": labels[base.predictions[i]],
                "score": finetuned.scores[i]} for i in (wrong + right)[:num_samples]]
    return ClassificationComparison(base=base, finetuned=finetuned, labels=labels, samples=samples)

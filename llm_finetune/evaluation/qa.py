"""Question-answering evaluation: SQuAD v1.1 exact match and F1 of a base and a fine-tuned model on the same
validation questions, the questions whose answer the context cut removed (generative), and the worst-F1 questions."""

from __future__ import annotations

import time

from pydantic import BaseModel

from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.qa import generative_eval_set
from llm_finetune.evaluation.comparison import ReleaseEvidence, paired_means
from llm_finetune.evaluation.metrics import squad_per_question, squad_scores
from llm_finetune.generation import CausalGenerator, GenerationParams
from llm_finetune.inference.extractive import ExtractiveReader
from llm_finetune.recipes import QAData, QAEvaluationParams

METRIC_KEYS = ("exact_match", "f1")


class QAEval(BaseModel):
    model: str
    metrics: dict[str, float]  # exact_match, f1 in percent
    predictions: list[str]
    f1: list[float]  # per question, 0..1
    exact_match: list[float] = []  # per question, 0 or 1
    num_records: int
    records_per_second: float
    contexts_cut: int | None = None  # generative: prompts whose context was cut to fit max_length
    answers_lost: int | None = None  # generative: ... and no longer held the gold answer


def _scored(model: str, predictions: list[str], golds: list[list[str]], seconds: float, **extra) -> QAEval:
    per_question = squad_per_question(predictions, golds)
    return QAEval(model=model, metrics=squad_scores(predictions, golds), predictions=predictions,
                  f1=[q["f1"] for q in per_question], exact_match=[q["exact_match"] for q in per_question],
                  num_records=len(predictions),
                  records_per_second=len(predictions) / seconds if seconds > 0 else 0.0, **extra)


def eval_limit(data: QAData, params: QAEvaluationParams) -> int | None:
    return min((n for n in (params.max_records, data.max_validation_records) if n is not None), default=None)


def evaluate_generative(model_dir: str, validated: ValidatedData, data: QAData, params: QAEvaluationParams) -> QAEval:
    """Greedy answers after the prompt (context cut from its start to fit), first line only."""
    generator = CausalGenerator(model_dir)
    evalset = generative_eval_set(validated, data, generator.tokenizer, eval_limit(data, params),
                                  params.max_new_tokens)
    settings = GenerationParams(max_new_tokens=params.max_new_tokens, repetition_penalty=1.0, stop=["\n"])
    start = time.perf_counter()
    predictions = generator.generate(evalset.prompts, batch_size=params.batch_size, params=settings)
    return _scored(str(model_dir), predictions, evalset.answers, time.perf_counter() - start,
                   contexts_cut=evalset.contexts_cut, answers_lost=evalset.answers_lost)


def evaluate_extractive(model_dir: str, records: list[dict], settings, params: QAEvaluationParams,
                        seed: int = 0) -> QAEval:
    """Best span over all windows of each context; a base model without a span head gets a new one, seeded."""
    import torch

    torch.manual_seed(seed)
    reader = ExtractiveReader(model_dir, settings)
    start = time.perf_counter()
    answers = reader.answer([r["question"] for r in records], [r["context"] for r in records], params.batch_size)
    return _scored(str(model_dir), [a["answer"] for a in answers], [r["answers"] for r in records],
                   time.perf_counter() - start)


class QAComparison(BaseModel):
    base: QAEval
    finetuned: QAEval
    worst: list[dict]  # fine-tuned model's lowest-F1 questions: question, prediction, gold answers, f1
    samples: list[dict]

    def metric_rows(self) -> list[dict]:
        return [{"metric": k, "base": round(self.base.metrics[k], 2), "fine_tuned": round(self.finetuned.metrics[k], 2),
                 "gain": round(self.finetuned.metrics[k] - self.base.metrics[k], 2)} for k in METRIC_KEYS]

    def markdown(self) -> str:
        lines = ["| metric (0-100) | base | fine-tuned | gain |", "|---|---|---|---|"]
        lines += [f"| {r['metric']} | {r['base']} | {r['fine_tuned']} | {r['gain']:+} |" for r in self.metric_rows()]
        if self.finetuned.answers_lost is not None:
            lines += ["", f"{self.finetuned.answers_lost} of {self.finetuned.num_records} questions lost their answer "
                      f"to truncation (the context was cut for {self.finetuned.contexts_cut})."]
        lines += ["", "### Worst F1 (fine-tuned)", "", "| id | question | prediction | gold | F1 |", "|---|---|---|---|---|"]
        lines += [f"| {w['id']} | {w['question']} | {w['prediction']} | {' / '.join(w['gold'])} | {w['f1']:.2f} |"
                  for w in self.worst]
        return "\n".join(lines)

    def evidence(self) -> ReleaseEvidence:
        return ReleaseEvidence(base_metrics=self.base.metrics, finetuned_metrics=self.finetuned.metrics,
                               samples=self.samples, report_markdown=self.markdown(),
                               num_records=self.finetuned.num_records,
                               per_record=paired_means(self._per_question(self.base),
                                                       self._per_question(self.finetuned), scale=100.0))

    @staticmethod
    def _per_question(run: QAEval) -> dict[str, list[float]]:
        return {"f1": run.f1, "exact_match": run.exact_match}


def compare_qa(base: QAEval, finetuned: QAEval, records: list[dict], num_worst: int) -> QAComparison:
    """records: {'id', 'question', 'context', 'answers'} in the order both models answered them."""
    order = sorted(range(len(records)), key=lambda i: finetuned.f1[i])[:num_worst]
    worst = [{"id": records[i]["id"], "question": records[i]["question"], "prediction": finetuned.predictions[i],
              "gold": records[i]["answers"], "f1": finetuned.f1[i]} for i in order]
    samples = [{"id": r["id"], "question": r["question"], "context": r["context"], "reference": r["answers"][0],
                "base": b, "finetuned": f}
               for r, b, f in list(zip(records, base.predictions, finetuned.predictions))[:3]]
    return QAComparison(base=base, finetuned=finetuned, worst=worst, samples=samples)

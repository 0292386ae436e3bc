"""Context + question -> answer data (Hugging Face `squad` schema): intake rules, the answer_start check, and the
two formats built from it.

Generative: prompt (context and question) / completion (" answer" + EOS) strings for the SFT trainer. A context
too long for max_length is cut to a window of whole tokens: around the answer for training, from its start for
evaluation (where the answer is not known), counting the questions whose answer the cut removed.
Extractive: see llm_finetune.inference.extractive (the run_qa windows and their mapping back to characters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from llm_finetune.data.intake import FieldRule, ValidatedData
from llm_finetune.data.shapes import DataShape
from llm_finetune.errors import DataValidationError, RecordProblem
from llm_finetune.fingerprint import fingerprint
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.recipes import QAData

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation")
SPLIT_LIMITS = {"train": "max_train_records", "validation": "max_validation_records"}
TEMPLATE_SLACK = 4  # tokens kept free: a cut context may tokenize a token or two longer inside the prompt


def qa_rules(data: QAData) -> list[FieldRule]:
    return [FieldRule(data.id_field, types=(str, int)), FieldRule(data.context_field),
            FieldRule(data.question_field), FieldRule(data.answers_field, types=(dict,))]


def answer_problem(record: dict, data: QAData) -> str | None:
    """Why a record's answers do not sit where answer_start says, or None when every one does."""
    answers = record[data.answers_field]
    texts, starts = answers.get("text"), answers.get("answer_start")
    if not isinstance(texts, list) or not isinstance(starts, list) or not texts or len(texts) != len(starts):
        return "must hold 'text' and 'answer_start', two lists of the same non-zero length"
    context = record[data.context_field]
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
            return f"answer {text!r} at {start!r}: text must be a non-empty string and answer_start an integer"
        found = context[start:start + len(text)] if 0 <= start <= len(context) else None
        if found != text:
            where = f"{found!r}" if found is not None else "nothing (past the end of the context)"
            return (f"record id {record[data.id_field]}: answer_start {start} points at {where}, not at the answer "
                    f"{text!r}" + (f" (it occurs at {context.find(text)})" if text in context else ""))
    return None


def check_answers(validated: ValidatedData, data: QAData) -> None:
    """Raise one DataValidationError naming every record (file, line, record id) whose answer_start is wrong."""
    problems = []
    for split in SPLITS:
        for row, record in enumerate(validated.load(split)):
            message = answer_problem(record, data)
            if message:
                path, number, unit = validated.sources[split].rows(row)
                problems.append(RecordProblem(path, number, data.answers_field, message, unit=unit))
    if problems:
        raise DataValidationError(problems)


def gold_answers(record: dict, data: QAData) -> list[str]:
    return list(record[data.answers_field]["text"])


def build_prompt(template: str, context: str, question: str) -> str:
    # str.replace, not str.format: contexts may contain braces.
    return template.replace("{question}", question.strip()).replace("{context}", context)


# ---------------------------------------------------------------------------------------------------------------
# Generative: prompt / completion strings with a context window that fits


class ContextWindow(BaseModel):
    """The characters [start, end) of a context kept in the prompt, and whether the first answer is inside."""

    start: int
    end: int
    cut: bool
    answer_kept: bool


def context_budget(tokenizer, data: QAData, question: str, reserve: int) -> int:
    """Context tokens that fit: max_length minus the prompt without context, `reserve` tokens for the answer and
    a little slack."""
    frame = len(tokenizer(build_prompt(data.prompt_template, "", question))["input_ids"])
    return data.max_length - frame - reserve - TEMPLATE_SLACK


def context_window(tokenizer, context: str, budget: int, answer: tuple[int, int] | None) -> ContextWindow:
    """A window of at most `budget` whole tokens of `context`: centred on the answer span (characters) when one is
    given, else the start of the context."""
    if budget <= 0:
        return ContextWindow(start=0, end=0, cut=bool(context), answer_kept=answer is None)
    offsets = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= budget:
        return ContextWindow(start=0, end=len(context), cut=False, answer_kept=True)
    first = 0
    if answer is not None:
        a_first = next((i for i, (_, e) in enumerate(offsets) if e > answer[0]), len(offsets) - 1)
        a_last = next((i for i, (s, _) in reversed(list(enumerate(offsets))) if s < answer[1]), a_first)
        span = a_last - a_first + 1
        first = max(0, min(a_first - (budget - span) // 2, len(offsets) - budget))
    last = first + budget - 1
    start, end = (offsets[first][0] if first else 0), offsets[last][1]
    kept = answer is None or (start <= answer[0] and answer[1] <= end)
    return ContextWindow(start=start, end=end, cut=True, answer_kept=kept)


def generative_example(record: dict, data: QAData, tokenizer, *, for_training: bool,
                       max_new_tokens: int = 0) -> tuple[dict, ContextWindow]:
    """{'id', 'prompt', 'completion', 'answers'} for one record, and the context window it uses.

    Training keeps a window around the first answer and reserves room for its tokens; evaluation keeps the head of
    the context and reserves max_new_tokens."""
    context, question = record[data.context_field], record[data.question_field]
    answer_text = record[data.answers_field]["text"][0]
    answer_start = record[data.answers_field]["answer_start"][0]
    completion = f" {answer_text.strip()}{tokenizer.eos_token or ''}"
    reserve = len(tokenizer(completion, add_special_tokens=False)["input_ids"]) if for_training else max_new_tokens
    window = context_window(tokenizer, context, context_budget(tokenizer, data, question, reserve),
                            (answer_start, answer_start + len(answer_text)))
    if not for_training:  # the answer is unknown when answering: keep the head, and count what was lost
        head = context_window(tokenizer, context, context_budget(tokenizer, data, question, reserve), None)
        window = head.model_copy(update={"answer_kept": head.start <= answer_start and
                                         answer_start + len(answer_text) <= head.end})
    prompt = build_prompt(data.prompt_template, context[window.start:window.end], question)
    return ({"id": str(record[data.id_field]), "prompt": prompt, "completion": completion,
             "answers": gold_answers(record, data)}, window)


def qa_sft_examples(validated: ValidatedData, split: str, data: QAData, tokenizer,
                    limit: int | None = None) -> datasets.Dataset:
    """The split as TRL prompt/completion strings, each context cut to a window that holds its answer."""
    import datasets
    import pyarrow as pa

    rows = validated.load(split, limit).to_list()
    examples = [generative_example(r, data, tokenizer, for_training=True)[0] for r in rows]
    columns = {"prompt": [e["prompt"] for e in examples], "completion": [e["completion"] for e in examples]}
    # A given fingerprint: else datasets hashes the table with dill, whose disassembly a task under log_prints logs.
    key = fingerprint("qa-sft-examples-v1", validated.fingerprint, split, limit, data, tokenizer.name_or_path)
    return datasets.Dataset(pa.Table.from_pydict(columns), fingerprint=key)


class GenerativeEvalSet(BaseModel):
    """Validation prompts for answering, their gold answers, and how many lost their answer to truncation."""

    ids: list[str]
    prompts: list[str]
    answers: list[list[str]]
    questions: list[str]
    contexts_cut: int
    answers_lost: int  # the context window kept for the prompt no longer holds the (first) gold answer


def generative_eval_set(validated: ValidatedData, data: QAData, tokenizer, limit: int | None,
                        max_new_tokens: int) -> GenerativeEvalSet:
    rows = validated.load("validation", limit).to_list()
    built = [generative_example(r, data, tokenizer, for_training=False, max_new_tokens=max_new_tokens) for r in rows]
    return GenerativeEvalSet(
        ids=[e["id"] for e, _ in built], prompts=[e["prompt"] for e, _ in built],
        answers=[e["answers"] for e, _ in built], questions=[r[data.question_field] for r in rows],
        contexts_cut=sum(w.cut for _, w in built), answers_lost=sum(not w.answer_kept for _, w in built))


def qa_records(validated: ValidatedData, split: str, data: QAData, limit: int | None = None) -> list[dict]:
    """Records as {'id', 'question', 'context', 'answers'} (answers: the gold texts)."""
    return [{"id": str(r[data.id_field]), "question": r[data.question_field], "context": r[data.context_field],
             "answers": gold_answers(r, data)} for r in validated.load(split, limit).to_list()]


def tokenizer_corpus(validated: ValidatedData, data: QAData) -> list[str]:
    """Texts a tiny model's tokenizer is trained on: contexts, questions, answers and the prompt's own words."""
    rows = validated.load("train", data.max_train_records).to_list()
    return ([r[data.context_field] for r in rows] + [r[data.question_field] for r in rows]
            + [" " + a for r in rows for a in gold_answers(r, data)] + [build_prompt(data.prompt_template, "", "")])


def qa_test_cases(validated: ValidatedData, data: QAData, kind: str, tokenizer_dir: str, limit: int,
                  max_new_tokens: int = 0):
    """Validation questions as endpoint test requests: the prompt text (text-generation) or {question, context}
    (question-answering); the reference is the first gold answer."""
    records = qa_records(validated, "validation", data, limit)
    if kind == "question-answering":
        inputs = [{"question": r["question"], "context": r["context"]} for r in records]
    else:
        from transformers import AutoTokenizer

        rows = validated.load("validation", limit).to_list()
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        inputs = [generative_example(r, data, tokenizer, for_training=False, max_new_tokens=max_new_tokens)[0]["prompt"]
                  for r in rows]
    return [EndpointTestCase(id=r["id"], inputs=i, reference=r["answers"][0]) for r, i in zip(records, inputs)]


class _QAShape(DataShape):
    def rules(self, data):
        return qa_rules(data)

    def check(self, validated, data):
        check_answers(validated, data)

    def sft_examples(self, validated, split, data, tokenizer, limit):
        return qa_sft_examples(validated, split, data, tokenizer, limit)

    def tokenizer_corpus(self, validated, data):
        return tokenizer_corpus(validated, data)


SHAPE = _QAShape()

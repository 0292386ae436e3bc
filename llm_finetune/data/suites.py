"""Prompt suites: chat (single turns), assistant (multi-turn with a system prompt) and chain-of-thought (arithmetic word
problems with known answers) records, read by the intake layer and checked record by record; the prompts each suite
sends; and the generator of the shipped arithmetic suite.

    python -m llm_finetune.data.suites cot suites/cot_arithmetic.jsonl [--count 27] [--examples 3] [--seed 0]

Records (JSON Lines; any intake format that holds nested fields):
  chat, assistant: {"id", "messages": [{"role": "system"|"user"|"assistant", "content"}, ...], "reference"?}
  cot:             {"id", "question", "answer": number, "solution"?, "use": "test"|"example"}
                   (examples are the few-shot worked solutions; their solution must end on their answer)
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from llm_finetune.data.answers import extract_final_answer, is_correct
from llm_finetune.data.intake import decode_utf8, read_split
from llm_finetune.errors import DataValidationError, RecordProblem
from llm_finetune.recipes.base import Strict
from llm_finetune.recipes.chat_inference import CotStyle, PromptSuiteSpec, Route, SuiteKind

Role = Literal["system", "user", "assistant"]

# Chain-of-thought prompts. Zero-shot: Kojima et al. 2022 ("Let's think step by step"); few-shot: Wei et al. 2022
# (worked solutions before the question). Every style asks for the same closing sentence, which the scorer reads.
COT_SYSTEM = "Solve the arithmetic word problem. End with 'The answer is N.' where N is a number."
COT_USER = {
    "direct": "{question}\nReply with the final number only.",
    "zero_shot_cot": "{question}\nLet's think step by step.",
    "few_shot_cot": "{question}",
}
COT_TEXT = {  # the inputs route: plain text a base model continues
    "direct": "Question: {question}\nAnswer (a number only):",
    "zero_shot_cot": "Question: {question}\nAnswer: Let's think step by step.",
    "few_shot_cot": "Question: {question}\nAnswer:",
}


class Message(Strict):
    role: Role
    content: str = Field(min_length=1)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise PydanticCustomError("blank", "is empty")
        return v


class ChatRecord(Strict):
    """A chat or assistant record: the conversation so far, ending with the user's turn."""

    id: str = Field(min_length=1, coerce_numbers_to_str=True)
    messages: list[Message] = Field(min_length=1)
    reference: str | None = Field(None, description="A good answer, shown beside the outputs")
    category: str | None = None


class CotRecord(Strict):
    """An arithmetic word problem with its known answer; `use: example` records are few-shot worked examples."""

    id: str = Field(min_length=1, coerce_numbers_to_str=True)
    question: str = Field(min_length=1)
    answer: float = Field(strict=True)  # a number, never a string such as "1,200"
    solution: str | None = None
    use: Literal["test", "example"] = "test"
    category: str | None = None


class PromptSuite(BaseModel):
    """A checked suite: its records in file order, and where each came from ('chat.jsonl, line 3')."""

    name: str
    kind: SuiteKind
    path: str
    records: list[dict]
    origins: list[str]


class SuitePrompt(BaseModel):
    """One request a suite makes: chat messages or plain text, and what a right answer is (cot)."""

    record_id: str
    style: CotStyle | None = None
    messages: list[dict] | None = None
    text: str | None = None
    expected: float | None = None
    reference: str | None = None


def _without_none(value):
    """Columnar formats fill fields a record lacks with null: treat those as absent."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _exact_json(files: list[str]) -> list[dict]:
    """JSON records as written: `datasets` unifies a column's types (a string "42" among numbers comes back as 42),
    which would hide exactly the mistakes a suite check is for."""
    rows = []
    for path in files:
        text = decode_utf8(Path(path), path)
        parsed = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines()
                                                                           if x.strip()]
        rows += parsed
    return rows


def _field(loc: tuple) -> str:
    """('messages', 2, 'role') -> 'messages[2].role'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _role_problem(kind: SuiteKind, roles: list[str]) -> str | None:
    if kind == "chat":
        if roles not in (["user"], ["system", "user"]):
            return f"a chat record is one user turn, optionally after a system message; got roles {roles}"
        return None
    turns = roles[1:]
    alternating = all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(turns))
    if not roles or roles[0] != "system" or not turns or not alternating or turns[-1] != "user":
        return ("an assistant record is a system message, then user and assistant turns alternating, ending with "
                f"the user's; got roles {roles}")
    return None


def _check(kind: SuiteKind, raw: dict) -> tuple[dict | None, list[tuple[str | None, str]]]:
    """The validated record and its problems as (field, message)."""
    model = CotRecord if kind == "cot" else ChatRecord
    try:
        record = model.model_validate(raw)
    except ValidationError as e:
        return None, [(_field(err["loc"]) or None, "missing" if err["type"] == "missing" else err["msg"])
                      for err in e.errors()]
    problems = []
    if isinstance(record, ChatRecord):
        if (problem := _role_problem(kind, [m.role for m in record.messages])) is not None:
            problems.append(("messages", problem))
    elif record.use == "example":
        given = extract_final_answer(record.solution or "")
        if not record.solution:
            problems.append(("solution", "missing: a worked example needs its solution"))
        elif not is_correct(given, record.answer):
            problems.append(("solution", f"ends on {given if given is None else format(given, 'g')}, but 'answer' is "
                                         f"{record.answer:g}"))
    return record.model_dump(exclude_none=True), problems


def load_suite(name: str, spec: PromptSuiteSpec, work_dir: str | Path) -> PromptSuite:
    """Read and check a suite; every problem of the file is raised at once, by file, line and field."""
    ds, source = read_split(spec.path, fmt=None, split="test", cache_dir=Path(work_dir))
    rows = _exact_json(source.files) if source.format == "json" else ds.to_list()
    records, origins, problems, seen = [], [], [], {}
    for row, raw in enumerate(rows):
        label, number, unit = source.rows(row)
        record, found = _check(spec.kind, _without_none(raw))
        if record is not None and record["id"] in seen:
            found.append(("id", f"duplicate of {unit} {seen[record['id']]}"))
        problems += [RecordProblem(label, number, field, message, unit=unit) for field, message in found]
        if record is not None:
            seen.setdefault(record["id"], number)
            records.append(record)
            origins.append(source.rows.describe(row))
    if not len(ds):
        problems.append(RecordProblem(spec.path, None, None, "no records (file is empty)"))
    problems += _suite_problems(spec, records) if not problems else []
    if problems:
        raise DataValidationError(problems)
    return PromptSuite(name=name, kind=spec.kind, path=spec.path, records=records, origins=origins)


def _suite_problems(spec: PromptSuiteSpec, records: list[dict]) -> list[RecordProblem]:
    if spec.kind != "cot":
        return []
    examples = sum(r["use"] == "example" for r in records)
    problems = []
    if examples == len(records):
        problems.append(RecordProblem(spec.path, None, "use", "no test records (every record is use: example)"))
    if "few_shot_cot" in spec.styles and examples < spec.few_shot:
        problems.append(RecordProblem(spec.path, None, "use", (
            f"few_shot_cot needs {spec.few_shot} records with use: example, the file has {examples}; add worked "
            "examples or lower the suite's few_shot")))
    return problems


def suite_prompts(suite: PromptSuite, spec: PromptSuiteSpec) -> list[SuitePrompt]:
    """The requests of a suite in file order (cot: each test problem in each style)."""
    if suite.kind != "cot":
        return [SuitePrompt(record_id=r["id"], messages=r["messages"], reference=r.get("reference"))
                for r in suite.records[: spec.max_records]]
    examples = [r for r in suite.records if r["use"] == "example"][: spec.few_shot]
    tests = [r for r in suite.records if r["use"] == "test"][: spec.max_records]
    return [cot_prompt(r, style, examples, spec.route) for r in tests for style in spec.styles]


def cot_prompt(record: dict, style: CotStyle, examples: list[dict], route: Route) -> SuitePrompt:
    """One problem in one style: chat messages (system, worked examples as earlier turns, question) or plain text."""
    shots = examples if style == "few_shot_cot" else []
    prompt = SuitePrompt(record_id=record["id"], style=style, expected=record["answer"])
    if route == "inputs":
        solved = "".join(COT_TEXT["few_shot_cot"].format(question=e["question"]) + f" {e['solution']}\n\n"
                         for e in shots)
        prompt.text = solved + COT_TEXT[style].format(question=record["question"])
        return prompt
    messages = [{"role": "system", "content": COT_SYSTEM}]
    for e in shots:
        messages += [{"role": "user", "content": COT_USER["few_shot_cot"].format(question=e["question"])},
                     {"role": "assistant", "content": e["solution"]}]
    prompt.messages = messages + [{"role": "user", "content": COT_USER[style].format(question=record["question"])}]
    return prompt


# ---------------------------------------------------------------------------------------------------------------
# The shipped arithmetic suite: word problems from templates, answers computed, so every answer is known.

NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena")
Problem = tuple[str, str, int]  # question, worked solution, answer


def _bags(rng: random.Random, name: str) -> Problem:
    a, b, c = rng.randint(3, 20), rng.randint(2, 6), rng.randint(3, 12)
    total = a + b * c
    return (f"{name} has {a} apples and buys {b} bags with {c} apples in each. How many apples does {name} have now?",
            f"{b} bags of {c} apples are {b} x {c} = {b * c} apples. {a} + {b * c} = {total}. The answer is {total}.",
            total)


def _change(rng: random.Random, name: str) -> Problem:
    price, count = rng.randint(2, 15), rng.randint(2, 6)
    bill = 50 if price * count < 50 else 100
    change = bill - price * count
    return (f"Pens cost ${price} each. {name} buys {count} pens and pays with a ${bill} note. How many dollars of "
            f"change does {name} get?",
            f"{count} pens cost {count} x {price} = ${price * count}. {bill} minus {price * count} is {change}. "
            f"The answer is {change}.", change)


def _temperature(rng: random.Random, name: str) -> Problem:
    noon, drop = rng.randint(-5, 8), rng.randint(9, 20)
    night = noon - drop
    return (f"At noon {name} read {noon} degrees on the thermometer. By midnight the temperature had dropped by "
            f"{drop} degrees. What was the temperature at midnight, in degrees?",
            f"{noon} minus {drop} is {night}. The answer is {night}.", night)


def _wages(rng: random.Random, name: str) -> Problem:
    wage, hours, weeks = rng.randint(12, 40), rng.choice((20, 25, 30, 35, 40)), rng.randint(2, 4)
    week = wage * hours
    total = week * weeks
    return (f"{name} earns ${wage} per hour and works {hours} hours each week. How many dollars does {name} earn "
            f"in {weeks} weeks?",
            f"Each week {name} earns {wage} x {hours} = ${week:,}. In {weeks} weeks that is {week:,} x {weeks} = "
            f"${total:,}. The answer is ${total:,}.", total)


def _sharing(rng: random.Random, name: str) -> Problem:
    friends, each = rng.randint(2, 6), rng.randint(3, 12)
    total = friends * each
    return (f"{name} shares {total} stickers equally among {friends} friends. How many stickers does each friend get?",
            f"{total} divided by {friends} is {each}. The answer is {each}.", each)


def _distance(rng: random.Random, name: str) -> Problem:
    speed, hours, extra = rng.randint(40, 90), rng.randint(2, 5), rng.randint(10, 50)
    total = speed * hours + extra
    return (f"{name}'s train travels at {speed} km per hour for {hours} hours, then {extra} km more. How many km "
            f"does the train travel in total?",
            f"{speed} x {hours} = {speed * hours} km, and {speed * hours} + {extra} = {total} km. "
            f"The answer is {total}.", total)


TEMPLATES: dict[str, Callable[[random.Random, str], Problem]] = {
    "bags": _bags, "change": _change, "temperature": _temperature, "wages": _wages, "sharing": _sharing,
    "distance": _distance,
}


def generate_cot_problems(count: int, examples: int = 3, seed: int = 0) -> list[dict]:
    """`count` problems cycling through the templates (the first `examples` are worked examples); same seed, same
    problems."""
    rng = random.Random(seed)
    names = list(TEMPLATES)
    records = []
    for i in range(count):
        category = names[i % len(names)]
        question, solution, answer = TEMPLATES[category](rng, rng.choice(NAMES))
        use = "example" if i < examples else "test"
        records.append({"id": f"cot-{i + 1:03d}", "question": question, "answer": answer, "solution": solution,
                        "use": use, "category": category})
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a generated prompt suite")
    commands = parser.add_subparsers(dest="command", required=True)
    cot = commands.add_parser("cot", help="arithmetic word problems with known answers, as JSON Lines")
    cot.add_argument("out", type=Path)
    cot.add_argument("--count", type=int, default=27)
    cot.add_argument("--examples", type=int, default=3, help="the first N are few-shot worked examples")
    cot.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    records = generate_cot_problems(args.count, args.examples, args.seed)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    main()

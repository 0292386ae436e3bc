"""Verifiable instructions in the style of IFEval (Zhou et al. 2023): each check reads only the answer text and says
whether it holds, with a short reason. `describe()` is the instruction in words (the format-reminder variant)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

_WORD = re.compile(r"\b[\w'-]+\b")
# A bullet ("- ", "* ", "• ") or a numbered item ("1.", "2)") at the start of a line.
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]\s+|\d+[.)]\s+)\S")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


class CheckOutcome(BaseModel):
    type: str
    passed: bool
    detail: str


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def outcome(self, passed: bool, detail: str) -> CheckOutcome:
        return CheckOutcome(type=self.type, passed=passed, detail=detail)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _bounds(what: str, minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and minimum == maximum:
        return f"exactly {minimum} {what}"
    if minimum is not None and maximum is not None:
        return f"between {minimum} and {maximum} {what}"
    return f"at least {minimum} {what}" if minimum is not None else f"at most {maximum} {what}"


class _Range(_Check):
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _some_bound(self):
        if self.min is None and self.max is None:
            raise ValueError("set 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is larger than 'max'")
        return self

    def _within(self, n: int, what: str) -> CheckOutcome:
        ok = (self.min is None or n >= self.min) and (self.max is None or n <= self.max)
        return self.outcome(ok, f"{n} {what}; wanted {_bounds(what, self.min, self.max)}")


class ListItems(_Check):
    """Exactly `count` list items: lines starting with '-', '*', '•' or '1.' / '1)'."""

    type: Literal["list_items"] = "list_items"
    count: int = Field(gt=0)

    def describe(self) -> str:
        return f"Answer with exactly {self.count} list items, one per line, each starting with '- '."

    def evaluate(self, answer: str) -> CheckOutcome:
        n = sum(bool(_LIST_ITEM.match(line)) for line in answer.splitlines())
        return self.outcome(n == self.count, f"{n} list items; wanted exactly {self.count}")


class WordCount(_Range):
    type: Literal["word_count"] = "word_count"

    def describe(self) -> str:
        return f"Use {_bounds('words', self.min, self.max)}."

    def evaluate(self, answer: str) -> CheckOutcome:
        return self._within(len(words(answer)), "words")


class SentenceCount(_Range):
    type: Literal["sentence_count"] = "sentence_count"

    def describe(self) -> str:
        return f"Write {_bounds('sentences', self.min, self.max)}."

    def evaluate(self, answer: str) -> CheckOutcome:
        return self._within(len(sentences(answer)), "sentences")


class JsonKeys(_Check):
    """The whole answer is one JSON object (a ```json fence around it is allowed, as IFEval allows) with these keys."""

    # Written `keys` in a suite; the attribute has another name because a model with a `keys` attribute looks like a
    # mapping to dict() (Prefect's parameter walker calls it).
    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)

    type: Literal["json_keys"] = "json_keys"
    required: list[str] = Field(min_length=1, alias="keys")
    exact: bool = Field(False, description="No keys other than these")

    def describe(self) -> str:
        keys = ", ".join(f'"{k}"' for k in self.required)
        only = "only " if self.exact else ""
        return f"Answer with a single valid JSON object with {only}the keys {keys}, and nothing else."

    def evaluate(self, answer: str) -> CheckOutcome:
        text = answer.strip()
        fenced = _FENCE.match(text)
        try:
            value = json.loads(fenced.group(1) if fenced else text)
        except json.JSONDecodeError as e:
            return self.outcome(False, f"not valid JSON: {e.msg} (char {e.pos})")
        if not isinstance(value, dict):
            return self.outcome(False, f"JSON {type(value).__name__}, not an object")
        missing = [k for k in self.required if k not in value]
        extra = sorted(set(value) - set(self.required)) if self.exact else []
        problems = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        return self.outcome(not problems, "; ".join(problems) or f"JSON object with keys {sorted(value)}")


def _found(answer: str, word: str) -> bool:
    """Whole word or phrase, case-insensitive."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", answer, re.IGNORECASE) is not None


class IncludeWords(_Check):
    type: Literal["include_words"] = "include_words"
    words: list[str] = Field(min_length=1)

    def describe(self) -> str:
        return "Include the words " + ", ".join(f'"{w}"' for w in self.words) + "."

    def evaluate(self, answer: str) -> CheckOutcome:
        missing = [w for w in self.words if not _found(answer, w)]
        return self.outcome(not missing, f"missing {missing}" if missing else "all present")


class ExcludeWords(_Check):
    type: Literal["exclude_words"] = "exclude_words"
    words: list[str] = Field(min_length=1)

    def describe(self) -> str:
        return "Do not use the words " + ", ".join(f'"{w}"' for w in self.words) + "."

    def evaluate(self, answer: str) -> CheckOutcome:
        present = [w for w in self.words if _found(answer, w)]
        return self.outcome(not present, f"contains {present}" if present else "none present")


class Lowercase(_Check):
    """Letters present and none of them uppercase (IFEval's check alone would pass an empty answer)."""

    type: Literal["lowercase"] = "lowercase"

    def describe(self) -> str:
        return "Write your entire answer in lowercase letters; no capital letters at all."

    def evaluate(self, answer: str) -> CheckOutcome:
        upper = sorted({c for c in answer if c.isupper()})
        if not any(c.isalpha() for c in answer):
            return self.outcome(False, "no letters")
        return self.outcome(not upper, f"uppercase letters {''.join(upper)}" if upper else "all lowercase")


class EndsWith(_Check):
    """The answer ends with this phrase (any case, trailing whitespace ignored), as IFEval's end checker."""

    type: Literal["ends_with"] = "ends_with"
    phrase: str = Field(min_length=1)

    def describe(self) -> str:
        return f'End your answer with the exact phrase "{self.phrase}", with nothing after it.'

    def evaluate(self, answer: str) -> CheckOutcome:
        ok = answer.strip().lower().endswith(self.phrase.strip().lower())
        return self.outcome(ok, "ends with it" if ok else f"ends with {answer.strip()[-len(self.phrase) - 10:]!r}")


CHECK_CLASSES = (ListItems, WordCount, SentenceCount, JsonKeys, IncludeWords, ExcludeWords, Lowercase, EndsWith)
Check = Annotated[Union[CHECK_CLASSES], Field(discriminator="type")]  # noqa: UP007 (a tuple of classes)
CHECK_TYPES = tuple(c.model_fields["type"].default for c in CHECK_CLASSES)

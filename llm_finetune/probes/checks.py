"""Verifiable instructions in the style of IFEval (Zhou et al. 2023): each check reads only the answer text and says
whether it holds, with a short reason. `describe()` is the instruction in words (the format-reminder variant).

Where a check has an IFEval counterpart it counts as IFEval's code does (google-research instruction_following_eval):
words are runs of \\w, `less_than` is strict ("less than"), `min` inclusive ("at least"), sentences come from a real
splitter (punkt there, pysbd here), bullets are lines starting with '*' (not '**') or '-', a ```json fence in any case
may wrap JSON, quotes around the answer are stripped before ends-with, lowercase is `str.islower`."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_finetune.evaluation.sentences import sentences

_WORD = re.compile(r"\w+")
# IFEval's two bullet patterns: '*' followed by anything but a second '*' (bold), and '-'.
_BULLETS = (re.compile(r"^\s*\*[^\*].*$", re.MULTILINE), re.compile(r"^\s*-.*$", re.MULTILINE))
_FENCE_OPEN = re.compile(r"^```(?:json)?", re.IGNORECASE)


class CheckOutcome(BaseModel):
    type: str
    passed: bool
    detail: str


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def outcome(self, passed: bool, detail: str) -> CheckOutcome:
        return CheckOutcome(type=self.type, passed=passed, detail=detail)


def words(text: str) -> list[str]:
    """IFEval's words: runs of \\w ("don't" is two)."""
    return _WORD.findall(text)


def bullets(text: str) -> int:
    """Bullet lines as IFEval counts them."""
    return sum(len(pattern.findall(text)) for pattern in _BULLETS)


class _Range(_Check):
    min: int | None = Field(None, ge=0, description="At least this many (IFEval 'at least')")
    max: int | None = Field(None, ge=0, description="At most this many")
    less_than: int | None = Field(None, ge=1, description="Fewer than this many (IFEval 'less than', strict)")

    @model_validator(mode="after")
    def _some_bound(self):
        if self.min is None and self.max is None and self.less_than is None:
            raise ValueError("set 'min', 'max' or 'less_than'")
        if self.max is not None and self.less_than is not None:
            raise ValueError("set 'max' or 'less_than', not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is larger than 'max'")
        if self.min is not None and self.less_than is not None and self.min >= self.less_than:
            raise ValueError("'min' must be smaller than 'less_than'")
        return self

    def bounds(self, what: str) -> str:
        if self.min is not None and self.min == self.max:
            return f"exactly {self.min} {what}"
        if self.min is not None and self.max is not None:
            return f"between {self.min} and {self.max} {what}"
        parts = [f"{label} {n}" for label, n in (("at least", self.min), ("at most", self.max),
                                                 ("fewer than", self.less_than)) if n is not None]
        return f"{' and '.join(parts)} {what}"

    def _within(self, n: int, what: str) -> CheckOutcome:
        ok = ((self.min is None or n >= self.min) and (self.max is None or n <= self.max)
              and (self.less_than is None or n < self.less_than))
        return self.outcome(ok, f"{n} {what}; wanted {self.bounds(what)}")


class ListItems(_Check):
    """Exactly `count` bullets as IFEval counts them: lines starting with '*' (not '**') or '-'; numbered items and
    '•' do not count."""

    type: Literal["list_items"] = "list_items"
    count: int = Field(gt=0)

    def describe(self) -> str:
        return f"Answer with exactly {self.count} list items, one per line, each starting with '- '."

    def evaluate(self, answer: str) -> CheckOutcome:
        n = bullets(answer)
        return self.outcome(n == self.count, f"{n} list items; wanted exactly {self.count}")


class WordCount(_Range):
    type: Literal["word_count"] = "word_count"

    def describe(self) -> str:
        return f"Use {self.bounds('words')}."

    def evaluate(self, answer: str) -> CheckOutcome:
        return self._within(len(words(answer)), "words")


class SentenceCount(_Range):
    type: Literal["sentence_count"] = "sentence_count"

    def describe(self) -> str:
        return f"Write {self.bounds('sentences')}."

    def evaluate(self, answer: str) -> CheckOutcome:
        return self._within(len(sentences(answer)), "sentences")


class JsonKeys(_Check):
    """The whole answer is one JSON object with these keys; as IFEval, a ```json fence (any case) or ``` around it is
    removed first."""

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
        try:
            value = json.loads(_unfenced(answer))
        except json.JSONDecodeError as e:
            return self.outcome(False, f"not valid JSON: {e.msg} (char {e.pos})")
        if not isinstance(value, dict):
            return self.outcome(False, f"JSON {type(value).__name__}, not an object")
        missing = [k for k in self.required if k not in value]
        extra = sorted(set(value) - set(self.required)) if self.exact else []
        problems = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        return self.outcome(not problems, "; ".join(problems) or f"JSON object with keys {sorted(value)}")


def _unfenced(answer: str) -> str:
    text = _FENCE_OPEN.sub("", answer.strip(), count=1)
    return text.removesuffix("```").strip()


def _found(answer: str, word: str) -> bool:
    """Whole word or phrase, case-insensitive."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", answer, re.IGNORECASE) is not None


class IncludeWords(_Check):
    """Every word or phrase present as a whole word, any case (IFEval's keyword check also matches inside words)."""

    type: Literal["include_words"] = "include_words"
    words: list[str] = Field(min_length=1)

    def describe(self) -> str:
        return "Include the words " + ", ".join(f'"{w}"' for w in self.words) + "."

    def evaluate(self, answer: str) -> CheckOutcome:
        missing = [w for w in self.words if not _found(answer, w)]
        return self.outcome(not missing, f"missing {missing}" if missing else "all present")


class ExcludeWords(_Check):
    """None of the words present as a whole word, any case, as IFEval's forbidden-words check."""

    type: Literal["exclude_words"] = "exclude_words"
    words: list[str] = Field(min_length=1)

    def describe(self) -> str:
        return "Do not use the words " + ", ".join(f'"{w}"' for w in self.words) + "."

    def evaluate(self, answer: str) -> CheckOutcome:
        present = [w for w in self.words if _found(answer, w)]
        return self.outcome(not present, f"contains {present}" if present else "none present")


class Lowercase(_Check):
    """`str.islower`, as IFEval: at least one cased letter and no uppercase one (IFEval also asks langdetect for
    English; this check does not)."""

    type: Literal["lowercase"] = "lowercase"

    def describe(self) -> str:
        return "Write your entire answer in lowercase letters; no capital letters at all."

    def evaluate(self, answer: str) -> CheckOutcome:
        upper = sorted({c for c in answer if c.isupper()})
        if upper:
            return self.outcome(False, f"uppercase letters {''.join(upper)}")
        return self.outcome(answer.islower(), "all lowercase" if answer.islower() else "no cased letters")


class EndsWith(_Check):
    """The answer ends with this phrase, as IFEval's end checker: any case, surrounding whitespace and double quotes
    around the answer ignored."""

    type: Literal["ends_with"] = "ends_with"
    phrase: str = Field(min_length=1)

    def describe(self) -> str:
        return f'End your answer with the exact phrase "{self.phrase}", with nothing after it.'

    def evaluate(self, answer: str) -> CheckOutcome:
        text = answer.strip().strip('"')
        ok = text.lower().endswith(self.phrase.strip().lower())
        return self.outcome(ok, "ends with it" if ok else f"ends with {text[-len(self.phrase) - 10:]!r}")


CHECK_CLASSES = (ListItems, WordCount, SentenceCount, JsonKeys, IncludeWords, ExcludeWords, Lowercase, EndsWith)
Check = Annotated[Union[CHECK_CLASSES], Field(discriminator="type")]  # noqa: UP007 (a tuple of classes)
CHECK_TYPES = tuple(c.model_fields["type"].default for c in CHECK_CLASSES)

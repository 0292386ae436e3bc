"""The probe suite file (YAML) and the prompt variants built from each prompt.

    name: instruction-following-v1
    system_prompt: You are a precise assistant ...
    prompts:
      - id: three_fruits
        prompt: Name three fruits as a bulleted list.
        checks: [{type: list_items, count: 3}, {type: lowercase}]
        examples:                       # worked examples for the few-shot variant
          - {prompt: Name two colours as a bulleted list., answer: "- red\\n- blue"}

Variants of one prompt: `zero_shot` (the prompt alone), `system_role` (the suite's system message, then the prompt),
`few_shot` (the worked examples as earlier user/assistant turns, then the prompt), `format_reminder` (the prompt,
then every check's instruction in words).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from llm_finetune.errors import DataValidationError, RecordProblem
from llm_finetune.probes.checks import Check
from llm_finetune.recipes.base import ProbeVariant, Strict


class WorkedExample(Strict):
    prompt: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class ProbePrompt(Strict):
    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    checks: list[Check] = Field(min_length=1)
    examples: list[WorkedExample] = Field(min_length=1, description="Worked examples for the few-shot variant")


class ProbeSuite(Strict):
    name: str
    system_prompt: str = Field(min_length=1, description="The system message of the system_role variant")
    reminder_prefix: str = Field("Format reminder:", description="Starts the format_reminder variant's reminder")
    prompts: list[ProbePrompt] = Field(min_length=1)

    def first(self, n: int | None) -> ProbeSuite:
        return self if n is None else self.model_copy(update={"prompts": self.prompts[:n]})


def load_suite(path: str | Path) -> ProbeSuite:
    """Read and check a suite file; every bad prompt is named at once by number, id and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataValidationError([RecordProblem(str(path), None, None, "probe suite file not found")]) from None
    except yaml.YAMLError as e:
        raise DataValidationError([RecordProblem(str(path), None, None, f"not valid YAML: {e}")]) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("prompts"), list):
        raise DataValidationError([RecordProblem(str(path), None, "prompts", "a suite is a mapping with a 'prompts' "
                                                 "list (see llm_finetune/probes/suite.py)")])
    problems, seen = [], set()
    for n, item in enumerate(raw["prompts"], start=1):
        named = f" (id '{item['id']}')" if isinstance(item, dict) and "id" in item else ""
        try:
            prompt = ProbePrompt.model_validate(item)
        except ValidationError as e:
            problems += [RecordProblem(str(path), n, ".".join(map(str, err["loc"])) or None, err["msg"] + named,
                                       unit="prompt") for err in e.errors()]
            continue
        if prompt.id in seen:
            problems.append(RecordProblem(str(path), n, "id", f"duplicate id '{prompt.id}'", unit="prompt"))
        seen.add(prompt.id)
    try:
        suite = ProbeSuite.model_validate({**raw, "prompts": []} if problems else raw)
    except ValidationError as e:
        problems += [RecordProblem(str(path), None, ".".join(map(str, err["loc"])), err["msg"])
                     for err in e.errors() if err["loc"] != ("prompts",)]
    if problems:
        raise DataValidationError(problems)
    return suite


def conversation(suite: ProbeSuite, prompt: ProbePrompt, variant: ProbeVariant) -> list[dict[str, str]]:
    """The chat messages that ask `prompt` in `variant`."""
    user = {"role": "user", "content": prompt.prompt}
    if variant == "zero_shot":
        return [user]
    if variant == "system_role":
        return [{"role": "system", "content": suite.system_prompt}, user]
    if variant == "few_shot":
        turns = [[{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.answer}]
                 for e in prompt.examples]
        return [m for turn in turns for m in turn] + [user]
    if variant == "format_reminder":
        reminder = " ".join(check.describe() for check in prompt.checks)
        return [{"role": "user", "content": f"{prompt.prompt}\n\n{suite.reminder_prefix} {reminder}"}]
    raise ValueError(f"unknown variant {variant!r}")


def suite_texts(suite: ProbeSuite) -> list[str]:
    """Every text a model under test reads: the corpus a tiny offline model's tokenizer is trained on."""
    texts = [suite.system_prompt, suite.reminder_prefix]
    for p in suite.prompts:
        texts += [p.prompt, *(c.describe() for c in p.checks), *(t for e in p.examples for t in (e.prompt, e.answer))]
    return texts

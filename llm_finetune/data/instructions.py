"""Instruction data (Dolly layout): intake rules, chat messages in TRL's conversational prompt/completion form, and
the token-level checks that must pass before SFT, because TRL would otherwise go wrong silently."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from llm_finetune.data.intake import FieldRule, ValidatedData
from llm_finetune.data.shapes import DataShape, sft_examples
from llm_finetune.errors import DataValidationError, RecordProblem
from llm_finetune.fingerprint import fingerprint
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.recipes import InstructionData, QAData

if TYPE_CHECKING:
    import datasets

# The Llama-2 chat format: <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
# Every assistant turn ends with EOS, so the model learns to stop. The prompt alone (up to "[/INST]") is a token
# prefix of prompt + answer, because the answer starts with a space, a pre-tokenizer boundary.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message.strip() + '\\n<</SYS>>\\n\\n' + message['content'].strip() %}"
    "{% else %}{% set content = message['content'].strip() %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
SPLIT_LIMITS = {"train": "max_train_records", "validation": "max_validation_records"}
NAMED_RECORDS = 20  # records named per kind in a report; counts are always complete


def instruction_rules(data: InstructionData) -> list[FieldRule]:
    """Instruction and response are required text; context may be empty or absent; category is optional."""
    rules = [FieldRule(data.instruction_field), FieldRule(data.response_field)]
    if data.context_field:
        rules.append(FieldRule(data.context_field, required=False, allow_empty=True))
    if data.category_field:
        rules.append(FieldRule(data.category_field, types=(str, int), required=False, allow_empty=True))
    return rules


def user_message(record: dict, data: InstructionData) -> str:
    context = (record.get(data.context_field) or "").strip() if data.context_field else ""
    instruction = record[data.instruction_field].strip()
    return f"{instruction}\n\n{context}" if context else instruction


def to_messages(record: dict, data: InstructionData) -> dict[str, list[dict[str, str]]]:
    """One record as TRL's conversational prompt/completion: {"prompt": [system?, user], "completion": [assistant]}.

    TRL masks the rendered prompt and learns the completion; a `text` or `messages` column would learn everything.
    """
    prompt = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    prompt.append({"role": "user", "content": user_message(record, data)})
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": record[data.response_field].strip()}]}


def instruction_dataset(validated: ValidatedData, split: str, data: InstructionData,
                        limit: int | None = None) -> datasets.Dataset:
    """The checked split as prompt/completion messages (the first `limit` records, if given), row order kept."""
    ds = validated.load(split, limit)
    # A new_fingerprint names every input, so datasets need not hash (dill-pickle) the closure; in memory, so nothing
    # is written beside the shared validated data.
    return ds.map(lambda r: to_messages(r, data), remove_columns=ds.column_names, keep_in_memory=True,
                  new_fingerprint=fingerprint("instruction-messages-v1", validated.fingerprint, split, limit, data))


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer preparation and token-level checks


def prepare_tokenizer(tokenizer, chat_template: str | None = None):
    """Give a tokenizer what SFT needs, in place: a chat template (the Llama-2 one when it has none, as base models
    such as meta-llama/Llama-2-7b-hf) and a pad token distinct from EOS.

    Pad choice when the tokenizer has none, or pads with EOS: its unknown token (Llama's `<unk>`), which keeps the
    vocabulary and embeddings unchanged. Where no such token exists the pad stays missing or EOS and
    `check_sft_records` says how to add one: a collator that masks pad ids would also mask every real EOS, and the
    model would never learn to stop.
    """
    if tokenizer.chat_template is None:
        tokenizer.chat_template = chat_template or LLAMA2_CHAT_TEMPLATE
    pad_missing = tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id
    if pad_missing and tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
        tokenizer.pad_token = tokenizer.unk_token
    tokenizer.padding_side = "right"  # training; generation code pads left itself
    return tokenizer


def render_ids(tokenizer, messages: list[dict] | str, *, add_generation_prompt: bool = False) -> list[int]:
    """Token ids of messages rendered by the chat template, or of a plain string (prompt/completion text data),
    exactly as TRL's SFTTrainer tokenizes them."""
    if isinstance(messages, str):
        return list(tokenizer(messages)["input_ids"])
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=add_generation_prompt)["input_ids"])


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class SplitTokenReport(BaseModel):
    """Token counts of one split as TRL will see it: rendered with the chat template, cut at max_length."""

    records: int
    prompt_tokens: int
    completion_tokens: int  # before truncation, incl. the template's EOS
    trained_tokens: int  # completion tokens left after truncation: what the loss is computed on
    longest_sequence: int
    truncated: int  # response cut short (the model sees no EOS for these)
    dropped: int  # response cut away entirely: TRL drops these without a word under completion-only loss (and
    # without it trains them on their prompt alone)
    prompt_not_prefix: int  # prompt tokens differ from the start of prompt+response (TRL warns once)
    truncated_records: list[str]  # origins, the first NAMED_RECORDS
    dropped_records: list[str]


class SFTDataReport(BaseModel):
    """What `check_sft_records` found: per split counts for the flow's artifact."""

    max_length: int
    eos_token: str
    pad_token: str
    splits: dict[str, SplitTokenReport]

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.splits.values())


def _ends_with_eos(tokenizer, ids: list[int]) -> bool:
    """Last non-whitespace token is EOS (a template may end a turn with EOS plus a newline)."""
    while ids and ids[-1] != tokenizer.eos_token_id and not tokenizer.decode([ids[-1]]).strip():
        ids = ids[:-1]
    return bool(ids) and ids[-1] == tokenizer.eos_token_id


def check_sft_records(validated: ValidatedData, data: InstructionData | QAData, tokenizer) -> SFTDataReport:
    """Check what TRL would get wrong silently, before any model is loaded; raise one DataValidationError naming
    every bad record by file and line, else return the token counts.

    (a) the chat template ends the assistant turn with EOS (else the model never learns to stop), and renders the
        prompt as a token prefix of prompt + response; (b) no record's response is cut away entirely by max_length
        (TRL drops such records silently; with `overlong_records: drop` they are counted instead); (c) the pad token
        exists and is not EOS (see `prepare_tokenizer` for the choice made when a tokenizer has none).
    """
    problems: list[RecordProblem] = []
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        what = "has no pad token" if tokenizer.pad_token is None else f"pads with its EOS token {tokenizer.eos_token!r}"
        problems.append(RecordProblem("tokenizer", None, None, (
            f"the tokenizer {what}; padding must differ from EOS, or a collator that masks padding also masks the "
            "end of every response and the model never learns to stop. prepare_tokenizer pads with the unknown "
            "token where there is one; else add a pad token: tokenizer.add_special_tokens({'pad_token': '<pad>'}), "
            "model.resize_token_embeddings(len(tokenizer)), and save both")))

    splits: dict[str, SplitTokenReport] = {}
    for split in ("train", "validation"):
        if split not in validated.num_records:
            continue
        examples = sft_examples(validated, split, data, tokenizer, getattr(data, SPLIT_LIMITS[split]))
        report, split_problems = _check_split(validated, split, examples, data, tokenizer, check_template=not splits)
        splits[split] = report
        problems.extend(split_problems)
    if problems:
        raise DataValidationError(problems)
    return SFTDataReport(max_length=data.max_length, eos_token=tokenizer.eos_token,
                         pad_token=tokenizer.pad_token, splits=splits)


def _check_split(validated: ValidatedData, split: str, examples, data: InstructionData, tokenizer,
                 check_template: bool) -> tuple[SplitTokenReport, list[RecordProblem]]:
    problems: list[RecordProblem] = []
    counts = {"prompt_tokens": 0, "completion_tokens": 0, "trained_tokens": 0, "longest_sequence": 0,
              "prompt_not_prefix": 0}
    truncated: list[int] = []
    dropped: list[int] = []
    for row, example in enumerate(examples):
        prompt_ids = render_ids(tokenizer, example["prompt"], add_generation_prompt=True)
        full_ids = render_ids(tokenizer, example["prompt"] + example["completion"])
        prompt_len = common_prefix_length(prompt_ids, full_ids)
        if check_template and row == 0:
            problems.extend(_template_problems(validated.sources[split].rows(row), tokenizer, prompt_ids,
                                               full_ids, prompt_len))
        counts["prompt_not_prefix"] += prompt_len < len(prompt_ids)
        counts["prompt_tokens"] += prompt_len
        counts["completion_tokens"] += len(full_ids) - prompt_len
        counts["trained_tokens"] += max(0, min(len(full_ids), data.max_length) - prompt_len)
        counts["longest_sequence"] = max(counts["longest_sequence"], len(full_ids))
        if prompt_len >= data.max_length:
            dropped.append(row)
        elif len(full_ids) > data.max_length:
            truncated.append(row)

    if dropped and data.overlong_records == "fail":
        for row in dropped:
            label, number, unit = validated.sources[split].rows(row)
            problems.append(RecordProblem(label, number, data.response_field, (
                f"nothing of the response is left after truncation to max_length {data.max_length} tokens (the "
                "prompt alone fills it), so the trainer would silently skip this record; shorten the "
                f"{data.context_field or data.instruction_field}, raise data.max_length, or set "
                "data.overlong_records: drop"), unit=unit))
    report = SplitTokenReport(
        records=len(examples), truncated=len(truncated), dropped=len(dropped), **counts,
        truncated_records=[validated.origin(split, r) for r in truncated[:NAMED_RECORDS]],
        dropped_records=[validated.origin(split, r) for r in dropped[:NAMED_RECORDS]],
    )
    return report, problems


def _template_problems(where: tuple[str, int, str], tokenizer, prompt_ids: list[int], full_ids: list[int],
                       prompt_len: int) -> list[RecordProblem]:
    """Chat-template problems, shown on the first record (they hold for every record)."""
    path, number, unit = where
    problems = []
    if not _ends_with_eos(tokenizer, full_ids[prompt_len:]):
        tail = tokenizer.decode(full_ids[-5:])
        problems.append(RecordProblem(path, number, None, (
            f"the chat template does not end the assistant turn with the EOS token {tokenizer.eos_token!r} (the "
            f"rendered record ends with {tail!r}), so the model would never learn to stop; end the assistant turn "
            "with {{ eos_token }} in the template"), unit=unit))
    if prompt_len < len(prompt_ids):
        problems.append(RecordProblem(path, number, None, (
            "the prompt rendered alone (with the generation prompt) is not a token prefix of prompt + response: "
            f"they differ from {tokenizer.decode(prompt_ids[prompt_len:])!r} on, so training would see a different "
            "prompt than generation; make the template render the prompt the same way in both cases"), unit=unit))
    return problems


def instruction_eval_records(validated: ValidatedData, data: InstructionData, limit: int) -> list[dict]:
    """Validation records for evaluation: prompt messages, reference response, category."""
    rows = validated.load("validation", limit).to_list()
    return [{**to_messages(r, data), "category": r.get(data.category_field) if data.category_field else None}
            for r in rows]


def instruction_test_cases(validated: ValidatedData, data: InstructionData, tokenizer_dir: str,
                           limit: int) -> list[EndpointTestCase]:
    """Validation prompts rendered with the model's chat template (as a client of a text-generation endpoint sends
    them), and their reference responses."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cases = []
    for i, r in enumerate(validated.load("validation", limit).to_list()):
        messages = to_messages(r, data)
        text = tokenizer.apply_chat_template(messages["prompt"], tokenize=False, add_generation_prompt=True)
        if tokenizer.bos_token and text.startswith(tokenizer.bos_token):
            text = text[len(tokenizer.bos_token):]  # the tokenizer adds BOS itself to a raw prompt
        cases.append(EndpointTestCase(id=str(i), inputs=text, reference=messages["completion"][0]["content"]))
    return cases


class _InstructionShape(DataShape):
    def rules(self, data):
        return instruction_rules(data)

    def sft_examples(self, validated, split, data, tokenizer, limit):
        return instruction_dataset(validated, split, data, limit)


SHAPE = _InstructionShape()

"""Instruction records: intake rules, chat messages, and the token checks that catch what TRL gets wrong silently."""

import json

import pytest

from llm_finetune.data.instructions import (
    LLAMA2_CHAT_TEMPLATE,
    check_sft_records,
    instruction_dataset,
    prepare_tokenizer,
    render_ids,
    to_messages,
)
from llm_finetune.data.shapes import load_data
from llm_finetune.errors import DataValidationError
from llm_finetune.models.tiny_causal import train_llama_style_tokenizer
from tests.llm_finetune.causal_helpers import DOLLY, dolly_data

TRAIN = DOLLY / "train.jsonl"


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    return load_data(dolly_data(), tmp_path_factory.mktemp("dolly"))


@pytest.fixture(scope="module")
def tokenizer_factory(validated):
    corpus = [json.dumps(r) for r in validated.load("train").to_list()]

    def make():
        return train_llama_style_tokenizer(corpus, 1000)
    return make


def test_context_may_be_empty_category_optional_response_required(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Name a fish.", "context": "", "response": "Tope"},
        {"instruction": "Name a bird.", "response": "Robin", "category": "open_qa"},
        {"instruction": "Name a tree.", "context": "Oaks grow slowly.", "response": " "},
    ]) + "\n")
    with pytest.raises(DataValidationError) as err:
        load_data(dolly_data(train_uri=str(path), validation_uri=str(path)), tmp_path)
    assert sorted({str(p) for p in err.value.problems}) == [f"{path}, line 3, field 'response': is empty"]


def test_messages_are_trl_conversational_prompt_completion():
    data = dolly_data(system_prompt="Answer briefly.")
    with_context = to_messages({"instruction": " Summarise. ", "context": "Oaks grow.", "response": "Slowly. "}, data)
    assert with_context == {
        "prompt": [{"role": "system", "content": "Answer briefly."},
                   {"role": "user", "content": "Summarise.\n\nOaks grow."}],
        "completion": [{"role": "assistant", "content": "Slowly."}],
    }
    no_context = to_messages({"instruction": "Name a fish.", "context": "", "response": "Tope"}, dolly_data())
    assert no_context == {"prompt": [{"role": "user", "content": "Name a fish."}],
                          "completion": [{"role": "assistant", "content": "Tope"}]}


def test_report_counts_tokens_and_names_truncated_records(validated, tokenizer_factory):
    tokenizer = tokenizer_factory()
    report = check_sft_records(validated, dolly_data(max_length=4096), tokenizer)
    train = report.splits["train"]
    assert (train.records, train.truncated, train.dropped, train.prompt_not_prefix) == (26, 0, 0, 0)
    assert report.splits["validation"].records == 6
    examples = instruction_dataset(validated, "train", dolly_data())
    full = [render_ids(tokenizer, e["prompt"] + e["completion"]) for e in examples]
    assert train.prompt_tokens + train.completion_tokens == sum(len(f) for f in full)
    assert train.completion_tokens == train.trained_tokens

    cut = max(len(f) for f in full) - 1  # only the longest record loses its end
    (longest,) = [i for i, f in enumerate(full) if len(f) > cut]
    report = check_sft_records(validated, dolly_data(max_length=cut), tokenizer)
    assert report.splits["train"].truncated == 1
    assert report.splits["train"].truncated_records == [validated.origin("train", longest)]


def test_template_without_eos_is_caught_naming_the_record(validated, tokenizer_factory):
    tokenizer = tokenizer_factory()
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE.replace(" + ' ' + eos_token", "")
    with pytest.raises(DataValidationError) as err:
        check_sft_records(validated, dolly_data(max_length=4096), tokenizer)
    (problem,) = err.value.problems
    assert str(problem).startswith(
        f"{TRAIN}, line 1: the chat template does not end the assistant turn with the EOS token '</s>' (the rendered "
        "record ends with ")
    assert str(problem).endswith("so the model would never learn to stop; end the assistant turn with "
                                 "{{ eos_token }} in the template")


def test_record_truncated_to_no_response_is_caught(validated, tokenizer_factory):
    tokenizer = tokenizer_factory()
    max_length = 64
    examples = instruction_dataset(validated, "train", dolly_data())
    too_long = [row for row, e in enumerate(examples)
                if len(render_ids(tokenizer, e["prompt"], add_generation_prompt=True)) >= max_length]
    assert 0 < len(too_long) < 26

    with pytest.raises(DataValidationError) as err:
        check_sft_records(validated, dolly_data(max_length=max_length, overlong_records="fail"), tokenizer)
    train_problems = [p for p in err.value.problems if p.path == str(TRAIN)]
    assert [p.line for p in train_problems] == [validated.sources["train"].rows(r)[1] for r in too_long]
    assert str(train_problems[0]) == (
        f"{validated.origin('train', too_long[0])}, field 'response': nothing of the response is left after "
        "truncation to max_length 64 tokens (the prompt alone fills it), so the trainer would silently skip this "
        "record; shorten the context, raise data.max_length, or set data.overlong_records: drop")

    report = check_sft_records(validated, dolly_data(max_length=max_length, overlong_records="drop"), tokenizer)
    assert report.splits["train"].dropped == len(too_long)
    assert report.splits["train"].dropped_records == [validated.origin("train", r) for r in too_long]


def test_pad_token_must_differ_from_eos(validated, tokenizer_factory):
    tokenizer = tokenizer_factory()
    tokenizer.pad_token = tokenizer.eos_token
    with pytest.raises(DataValidationError, match=r"tokenizer: the tokenizer pads with its EOS token '</s>'; padding "
                                                  r"must differ from EOS"):
        check_sft_records(validated, dolly_data(max_length=4096), tokenizer)

    prepare_tokenizer(tokenizer)  # Llama's choice: pad with <unk>, vocabulary unchanged
    assert tokenizer.pad_token == "<unk>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert check_sft_records(validated, dolly_data(max_length=4096), tokenizer).pad_token == "<unk>"


def test_base_tokenizer_without_chat_template_gets_llama2_format(tokenizer_factory):
    tokenizer = tokenizer_factory()
    tokenizer.chat_template = None
    prepare_tokenizer(tokenizer)
    ids = render_ids(tokenizer, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    assert tokenizer.decode(ids) == "<s>[INST] Hi [/INST] Hello </s>"

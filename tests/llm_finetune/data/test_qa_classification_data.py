"""The two data shapes context + question -> answer and text -> label: validation errors, class balance, truncation
sides, and the generative context window that keeps the answer."""

import json

import pytest

from llm_finetune.data.classification import TextEncoder, TruncationRule, class_balance
from llm_finetune.data.qa import context_window, generative_eval_set, qa_sft_examples
from llm_finetune.data.shapes import load_data
from llm_finetune.errors import DataValidationError
from llm_finetune.recipes import ClassificationData, QAData
from tests.conftest import SHARED_DATA as SHARED

SQUAD, IMDB = SHARED / "squad", SHARED / "imdb"


def squad_data(**settings) -> QAData:
    return QAData(**{"train_uri": str(SQUAD / "train.jsonl"), "validation_uri": str(SQUAD / "validation.jsonl"),
                     **settings})


def imdb_data(**settings) -> ClassificationData:
    return ClassificationData(**{"train_uri": str(IMDB / "train.jsonl"),
                                 "validation_uri": str(IMDB / "validation.jsonl"), **settings})


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_bad_answer_start_names_the_record_id(tmp_path):
    records = [json.loads(line) for line in (SQUAD / "train.jsonl").read_text().splitlines()[:3]]
    records[2]["answers"]["answer_start"] = [records[2]["answers"]["answer_start"][0] + 1]
    bad = write_jsonl(tmp_path / "train.jsonl", records)
    with pytest.raises(DataValidationError) as e:
        load_data(squad_data(train_uri=str(bad)), tmp_path / "work")
    assert len(e.value.problems) == 1
    message = str(e.value.problems[0])
    assert message.startswith(f"{bad}, line 3, field 'answers': record id {records[2]['id']}: answer_start ")
    assert f"not at the answer {records[2]['answers']['text'][0]!r}" in message


def test_real_squad_sample_passes(tmp_path):
    validated = load_data(squad_data(), tmp_path)
    assert validated.num_records == {"train": 901, "validation": 289}


def test_unknown_label_names_the_record_and_balance_is_counted(tmp_path):
    records = [json.loads(line) for line in (IMDB / "train.jsonl").read_text().splitlines()[:4]]
    records[1]["label"] = "neutral"
    bad = write_jsonl(tmp_path / "train.jsonl", records)
    with pytest.raises(DataValidationError, match=rf"{bad}, line 2, field 'label': unknown label 'neutral'; "
                                                  r"the recipe's labels are \['negative', 'positive'\]"):
        load_data(imdb_data(train_uri=str(bad)), tmp_path / "work")
    data = imdb_data()
    balance = class_balance(load_data(data, tmp_path / "ok"), data)
    assert balance == {"train": {"negative": 417, "positive": 383}, "validation": {"negative": 107, "positive": 93}}


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from llm_finetune.models.sources import bundled_model_path

    return AutoTokenizer.from_pretrained(bundled_model_path("minilm-l6"))


@pytest.mark.parametrize("side, kept", [("head", ["one", "two", "three", "four"]),
                                        ("tail", ["seven", "eight", "nine", "ten"]),
                                        ("head+tail", ["one", "eight", "nine", "ten"])])
def test_truncation_sides_keep_special_tokens(minilm_tokenizer, side, kept):
    encoder = TextEncoder(minilm_tokenizer, TruncationRule(max_length=6, side=side, head_fraction=0.25))
    out = encoder.encode(["one two three four five six seven eight nine ten", "short"])
    tokens = minilm_tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    assert tokens == ["[CLS]", *kept, "[SEP]"] and out["truncated"] == [True, False]
    assert minilm_tokenizer.convert_ids_to_tokens(out["input_ids"][1]) == ["[CLS]", "short", "[SEP]"]


def test_training_window_keeps_the_answer_and_evaluation_counts_lost_answers(minilm_tokenizer, tmp_path):
    context = " ".join(f"w{i}" for i in range(200)) + " the answer is Paris ."
    start = context.index("Paris")
    window = context_window(minilm_tokenizer, context, 30, (start, start + 5))
    assert window.cut and window.answer_kept and "Paris" in context[window.start:window.end]
    head = context_window(minilm_tokenizer, context, 30, None)
    assert head.start == 0 and "Paris" not in context[head.start:head.end]

    data = squad_data(max_length=96, max_validation_records=20)
    validated = load_data(data, tmp_path)
    examples = qa_sft_examples(validated, "train", data, minilm_tokenizer, limit=20)
    rows = validated.load("train", 20).to_list()
    for example, row in zip(examples, rows):
        assert row["answers"]["text"][0] in example["prompt"]
        assert len(minilm_tokenizer(example["prompt"] + example["completion"])["input_ids"]) <= 96
    evaluation = generative_eval_set(validated, data, minilm_tokenizer, 20, max_new_tokens=16)
    lost = sum(a[0] not in p for a, p in zip(evaluation.answers, evaluation.prompts))
    assert evaluation.answers_lost == lost > 0 and evaluation.contexts_cut >= lost


def test_line_numbers_survive_unicode_line_separators_in_text(tmp_path):
    records = [{"label": "negative", "text": "Bad.\u0085 Really\u2028bad."}, {"label": "meh", "text": "So so."}]
    bad = write_jsonl(tmp_path / "train.jsonl", records)
    bad.write_text(bad.read_text().replace("\\u0085", "\u0085").replace("\\u2028", "\u2028"))
    with pytest.raises(DataValidationError, match=rf"{bad}, line 2, field 'label': unknown label 'meh'"):
        load_data(imdb_data(train_uri=str(bad)), tmp_path / "work")


def test_sft_examples_print_nothing_under_prefect_log_prints(minilm_tokenizer, tmp_path, monkeypatch):
    """Prefect's log_prints replaces print; datasets then must not fingerprint (dill-pickle, disassemble) anything,
    or the bytecode lands in the run log."""
    import builtins

    printed = []
    monkeypatch.setattr(builtins, "print", lambda *args, **kwargs: printed.append(args))
    data = squad_data(max_length=96)
    validated = load_data(data, tmp_path)
    examples = qa_sft_examples(validated, "train", data, minilm_tokenizer, limit=5)
    assert len(examples) == 5 and printed == []

import json
import shutil

import pytest

from llm_finetune.data.shapes import load_data
from llm_finetune.data.summarization import build_prompt, prepare_summarization_dataset, summarization_records
from llm_finetune.errors import DataValidationError
from tests.conftest import DIALOGSUM, small_recipe


def test_prompt_keeps_braces_in_dialogue():
    assert build_prompt("Summarize:\n{dialogue}\nSummary:", "a {b} c") == "Summarize:\na {b} c\nSummary:"


def test_both_splits_problems_reported_together(tmp_path):
    bad_train = tmp_path / "train.jsonl"
    bad_train.write_text('{"dialogue": "d"}\n')
    recipe = small_recipe(tmp_path, f"data.train_uri={bad_train}", f"data.validation_uri={tmp_path / 'missing.jsonl'}")
    with pytest.raises(DataValidationError) as err:
        load_data(recipe.data, tmp_path)
    assert [str(p) for p in err.value.problems] == [
        f"{bad_train}, line 1, field 'summary': missing",
        f"{tmp_path / 'missing.jsonl'}: file not found",
    ]


def test_records_build_prompts_and_ids(tmp_path):
    recipe = small_recipe(tmp_path)
    rows = summarization_records(load_data(recipe.data, tmp_path), "validation", recipe.data, limit=3)
    assert [r["id"] for r in rows] == ["dev_0", "dev_1", "dev_2"]
    assert rows[0]["prompt"].startswith("Summarize the following conversation.\n\n#Person1#")
    assert rows[0]["prompt"].endswith("\n\nSummary: ")


def test_other_field_names_and_formats(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('conversation,abstract,key\n"#Person1#: Hi.\n#Person2#: Hello.",They greet.,7\n')
    recipe = small_recipe(tmp_path, f"data.train_uri={path}", f"data.validation_uri={path}",
                          "data.dialogue_field=conversation", "data.summary_field=abstract", "data.id_field=key")
    (row,) = summarization_records(load_data(recipe.data, tmp_path), "train", recipe.data)
    assert (row["id"], row["dialogue"], row["summary"]) == ("7", "#Person1#: Hi.\n#Person2#: Hello.", "They greet.")


def test_tokenized_without_padding_and_cached(trained_tiny_model, tmp_path):
    recipe, validated, base = trained_tiny_model["recipe"], trained_tiny_model["validated"], trained_tiny_model["base"]
    first = prepare_summarization_dataset(recipe.data, validated, base, tmp_path / "cache")
    assert not first.reused and first.num_train == 128 and first.num_validation == 40

    import datasets

    ds = datasets.load_from_disk(first.path)
    lengths = [len(x) for x in ds["train"]["input_ids"]]
    assert len(set(lengths)) > 10  # each record keeps its own length: padding happens per batch
    assert max(lengths) <= recipe.data.max_source_tokens
    assert all(ids[-1] == 1 and 0 not in ids for ids in ds["train"]["input_ids"])  # </s>-terminated, no <pad>
    assert first.source_tokens == sum(lengths)

    again = prepare_summarization_dataset(recipe.data, validated, base, tmp_path / "cache")
    assert again.reused and again.path == first.path and again.fingerprint == first.fingerprint

    changed_settings = recipe.data.model_copy(update={"max_target_tokens": 32})
    other = prepare_summarization_dataset(changed_settings, validated, base, tmp_path / "cache")
    assert not other.reused and other.fingerprint != first.fingerprint


def test_changed_file_content_invalidates_cache(trained_tiny_model, tmp_path):
    recipe, base = trained_tiny_model["recipe"], trained_tiny_model["base"]
    train = tmp_path / "train.jsonl"
    shutil.copy(DIALOGSUM / "train.jsonl", train)
    data = recipe.data.model_copy(update={"train_uri": str(train)})
    first = prepare_summarization_dataset(data, load_data(data, tmp_path), base, tmp_path / "c")
    with open(train, "a") as f:
        f.write(json.dumps({"fname": "x", "dialogue": "#Person1#: New.", "summary": "New."}) + "\n")
    data = data.model_copy(update={"max_train_records": None})
    second = prepare_summarization_dataset(data, load_data(data, tmp_path), base, tmp_path / "c")
    assert second.fingerprint != first.fingerprint and second.num_train == 602

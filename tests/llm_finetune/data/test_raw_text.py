"""Raw text: packing into fixed blocks with EOS between documents, which documents a run trains on, corpus listing."""

import json

import pytest

from llm_finetune.data.raw_text import (
    corpus_fingerprint,
    document_key,
    held_out_texts,
    pack_blocks,
    select_documents,
    validate_held_out_sets,
)
from llm_finetune.data.shapes import load_data
from llm_finetune.errors import DataValidationError
from llm_finetune.recipes import HeldOutSet, PerplexityEvaluationParams, RawTextData

EOS = 0


def test_blocks_are_full_with_eos_after_every_document_and_the_rest_dropped():
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]  # 3+1 + 2+1 + 4+1 = 12 tokens
    blocks = pack_blocks(docs, 5, EOS)
    assert blocks == [[1, 2, 3, EOS, 4], [5, EOS, 6, 7, 8]]  # 2 tokens (9, EOS) left over
    assert pack_blocks(docs, 5, EOS, keep_remainder=True)[-1] == [9, EOS]
    assert pack_blocks(docs, 4, EOS) == [[1, 2, 3, EOS], [4, 5, EOS, 6], [7, 8, 9, EOS]]


def test_selection_trains_every_new_document_plus_the_replay_share_of_seen_ones():
    texts = [f"document {i}" for i in range(20)]
    seen = {document_key(t) for t in texts[:12]}
    chosen, selection = select_documents(texts, seen, set(), replay_share=0.5, seed=1)
    assert selection.new == 8 and selection.replayed == 8 and selection.seen_not_replayed == 4
    assert set(texts[12:]) <= set(chosen) and len(chosen) == 16
    assert chosen == [t for t in texts if t in chosen]  # corpus order
    again, _ = select_documents(texts, seen, set(), replay_share=0.5, seed=1)
    assert again == chosen  # reproducible
    _, none = select_documents(texts, seen, set(), replay_share=0.0, seed=1)
    assert none.replayed == 0
    _, capped = select_documents(texts, {document_key(t) for t in texts[:18]}, set(), replay_share=0.9, seed=1)
    assert capped.new == 2 and capped.replayed == 18  # wanted 18 of 18 seen


def test_selection_leaves_out_duplicates_and_held_out_documents():
    texts = ["a", "b", "a", "held out", "c"]
    chosen, selection = select_documents(texts, set(), {document_key("held out")}, replay_share=0.25, seed=0)
    assert chosen == ["a", "b", "c"]
    assert (selection.duplicates, selection.held_out, selection.new, selection.replayed) == (1, 1, 3, 0)


def test_nothing_new_selects_nothing():
    texts = ["a", "b"]
    chosen, selection = select_documents(texts, {document_key(t) for t in texts}, set(), 0.5, seed=0)
    assert chosen == [] and selection.new == 0 and selection.replayed == 0


def test_corpus_fingerprint_changes_when_a_document_file_is_added_or_edited(tmp_path):
    (tmp_path / "train-000.jsonl").write_text('{"text": "one"}\n')
    first, files = corpus_fingerprint(str(tmp_path))
    assert files == 1 and corpus_fingerprint(str(tmp_path))[0] == first
    (tmp_path / "train-001.jsonl").write_text('{"text": "two"}\n')
    second, files = corpus_fingerprint(str(tmp_path))
    assert files == 2 and second != first
    (tmp_path / "train-001.jsonl").write_text('{"text": "two!"}\n')
    assert corpus_fingerprint(str(tmp_path))[0] not in (first, second)
    assert corpus_fingerprint("hf://owner/name") == (None, 0)


def test_corpus_fingerprint_of_an_s3_prefix_comes_from_the_listing(moto_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="corpus")
    s3.put_object(Bucket="corpus", Key="plots/train-000.jsonl", Body=b'{"text": "one"}\n')
    first, files = corpus_fingerprint("s3://corpus/plots/", s3=s3)
    assert files == 1
    s3.put_object(Bucket="corpus", Key="plots/train-001.jsonl", Body=b'{"text": "two"}\n')
    assert corpus_fingerprint("s3://corpus/plots/", s3=s3) != (first, 1)


def test_raw_text_intake_names_the_record_without_text(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a plot"}\n{"title": "no text"}\n')
    (tmp_path / "validation.jsonl").write_text('{"text": ""}\n')
    data = RawTextData(train_uri=str(tmp_path), validation_uri=str(tmp_path))
    with pytest.raises(DataValidationError) as e:
        load_data(data, tmp_path / "work")
    assert [str(p) for p in e.value.problems] == [
        f"{tmp_path}/train.jsonl, line 2, field 'text': missing",
        f"{tmp_path}/validation.jsonl, line 1, field 'text': is empty"]


def test_held_out_sets_are_checked_before_training_and_read_by_name(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a plot"}\n')
    (tmp_path / "validation.jsonl").write_text('{"text": "held-out plot"}\n{"text": "another"}\n')
    (tmp_path / "dialogues.jsonl").write_text(json.dumps({"dialogue": "#Person1#: Hi."}) + "\n")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"content": 3}) + "\n")
    data = RawTextData(train_uri=str(tmp_path / "train.jsonl"), validation_uri=str(tmp_path / "validation.jsonl"))
    params = PerplexityEvaluationParams(max_documents=1, out_of_domain={
        "dialogues": HeldOutSet(uri=str(tmp_path / "dialogues.jsonl"), text_field="dialogue")})
    checked = validate_held_out_sets(params, tmp_path / "work")
    sets = held_out_texts(load_data(data, tmp_path / "work"), data, params, checked)
    assert sets == {"in_domain": ["held-out plot"], "dialogues": ["#Person1#: Hi."]}
    bad = params.model_copy(update={"out_of_domain": {"code": HeldOutSet(uri=str(tmp_path / "bad.jsonl"),
                                                                         text_field="content")}})
    with pytest.raises(DataValidationError, match=r"bad.jsonl, line 1, field 'content': must be a string, got int"):
        validate_held_out_sets(bad, tmp_path / "work")

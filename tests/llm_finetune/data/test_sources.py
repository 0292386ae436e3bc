"""Remote sources of the intake layer: S3 through a real moto server, the Hub through `datasets`."""

import pytest

from llm_finetune.aws import s3_client
from llm_finetune.data.intake import read_split
from llm_finetune.data.shapes import load_data
from llm_finetune.errors import DataValidationError
from llm_finetune.recipes import SummarizationData
from tests.conftest import DIALOGSUM


@pytest.fixture()
def bucket(moto_endpoint):
    s3 = s3_client(endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="llmft-data")
    return s3


def read(uri, tmp_path, s3=None):
    return read_split(uri, fmt=None, split="train", cache_dir=tmp_path, s3=s3)


def test_s3_object_downloaded_once_and_again_when_it_changes(bucket, tmp_path):
    bucket.upload_file(str(DIALOGSUM / "validation.jsonl"), "llmft-data", "dialogsum/validation.jsonl")
    ds, source = read("s3://llmft-data/dialogsum/validation.jsonl", tmp_path, bucket)
    (local,) = source.files
    assert open(local, "rb").read() == (DIALOGSUM / "validation.jsonl").read_bytes() and len(ds) == 300
    mtime = (tmp_path / local).stat().st_mtime_ns
    assert read("s3://llmft-data/dialogsum/validation.jsonl", tmp_path, bucket)[1].files == [local]
    assert (tmp_path / local).stat().st_mtime_ns == mtime  # not downloaded again

    bucket.put_object(Bucket="llmft-data", Key="dialogsum/validation.jsonl", Body=b'{"dialogue": "d", "summary": "s"}\n')
    ds, changed = read("s3://llmft-data/dialogsum/validation.jsonl", tmp_path, bucket)
    assert changed.files != [local] and changed.content_key != source.content_key and len(ds) == 1


def test_s3_splits_validated_with_uri_in_errors(bucket, tmp_path):
    bucket.upload_file(str(DIALOGSUM / "train.jsonl"), "llmft-data", "train.jsonl")
    bucket.put_object(Bucket="llmft-data", Key="bad.jsonl", Body=b'{"dialogue": "d"}\n')
    data = SummarizationData(train_uri="s3://llmft-data/train.jsonl", validation_uri="s3://llmft-data/bad.jsonl")
    with pytest.raises(DataValidationError) as err:
        load_data(data, tmp_path, s3=bucket)
    assert [str(p) for p in err.value.problems] == ["s3://llmft-data/bad.jsonl, line 1, field 'summary': missing"]


def test_s3_client_honours_endpoint_env(moto_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3 = s3_client()
    s3.create_bucket(Bucket="env-bucket")
    s3.put_object(Bucket="env-bucket", Key="x.jsonl", Body=b'{"dialogue": "d", "summary": "s"}\n')
    assert len(read("s3://env-bucket/x.jsonl", tmp_path)[0]) == 1


def test_hub_dataset_offline_fails_with_uri_named(tmp_path):
    with pytest.raises(DataValidationError, match=r"hf://knkarthick/dialogsum\?split=train: cannot load Hub dataset"):
        read("hf://knkarthick/dialogsum?split=train", tmp_path)


def test_hub_dataset_split_and_config_passed_to_datasets(tmp_path, monkeypatch):
    """The Hub branch, fed a real in-memory Dataset in place of the network download."""
    import datasets

    calls = []

    def fake_load(repo, config, split, cache_dir):
        calls.append((repo, config, split))
        return datasets.Dataset.from_list([{"id": "a", "dialogue": "#Person1#: Hi.", "summary": "Greeting."}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds, source = read_split("hf://knkarthick/dialogsum?split=validation&name=default", fmt=None,
                                    split="train", cache_dir=tmp_path)
    assert calls == [("knkarthick/dialogsum", "default", "validation")]
    assert ds.to_list() == [{"id": "a", "dialogue": "#Person1#: Hi.", "summary": "Greeting."}]
    assert source.rows(0) == ("hf://knkarthick/dialogsum?split=validation&name=default", 1, "row")

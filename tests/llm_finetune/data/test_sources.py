import pytest

from llm_finetune.aws import s3_client
from llm_finetune.data.sources import fetch_jsonl
from llm_finetune.data.summarization import load_summarization_splits
from llm_finetune.errors import DataValidationError
from llm_finetune.recipes import SummarizationData
from tests.conftest import DIALOGSUM


@pytest.fixture()
def bucket(moto_endpoint):
    s3 = s3_client(endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="llmft-data")
    return s3


def test_local_path_used_in_place():
    assert fetch_jsonl(str(DIALOGSUM / "train.jsonl"), "/unused") == DIALOGSUM / "train.jsonl"


def test_s3_object_downloaded_and_cached_by_etag(bucket, tmp_path):
    bucket.upload_file(str(DIALOGSUM / "validation.jsonl"), "llmft-data", "dialogsum/validation.jsonl")
    local = fetch_jsonl("s3://llmft-data/dialogsum/validation.jsonl", tmp_path, s3=bucket)
    assert local.read_bytes() == (DIALOGSUM / "validation.jsonl").read_bytes()
    mtime = local.stat().st_mtime_ns
    assert fetch_jsonl("s3://llmft-data/dialogsum/validation.jsonl", tmp_path, s3=bucket) == local
    assert local.stat().st_mtime_ns == mtime  # not downloaded again

    bucket.put_object(Bucket="llmft-data", Key="dialogsum/validation.jsonl", Body=b'{"dialogue": "d", "summary": "s"}\n')
    changed = fetch_jsonl("s3://llmft-data/dialogsum/validation.jsonl", tmp_path, s3=bucket)
    assert changed != local and changed.read_bytes().startswith(b'{"dialogue": "d"')


def test_s3_splits_validated_with_uri_in_errors(bucket, tmp_path):
    bucket.upload_file(str(DIALOGSUM / "train.jsonl"), "llmft-data", "train.jsonl")
    bucket.put_object(Bucket="llmft-data", Key="bad.jsonl", Body=b'{"dialogue": "d"}\n')
    data = SummarizationData(train_uri="s3://llmft-data/train.jsonl", validation_uri="s3://llmft-data/bad.jsonl")
    with pytest.raises(DataValidationError) as err:
        load_summarization_splits(data, tmp_path, s3=bucket)
    assert str(err.value.problems[0]) == "s3://llmft-data/bad.jsonl, line 1, field 'summary': missing"


def test_missing_s3_object_is_a_clear_error(bucket, tmp_path):
    with pytest.raises(DataValidationError, match="s3://llmft-data/absent.jsonl: cannot read S3 object"):
        fetch_jsonl("s3://llmft-data/absent.jsonl", tmp_path, s3=bucket)


def test_s3_client_honours_endpoint_env(moto_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3 = s3_client()
    s3.create_bucket(Bucket="env-bucket")
    s3.put_object(Bucket="env-bucket", Key="x.jsonl", Body=b'{"dialogue": "d", "summary": "s"}\n')
    assert fetch_jsonl("s3://env-bucket/x.jsonl", tmp_path).exists()


def test_hub_dataset_offline_fails_with_uri_named(tmp_path):
    with pytest.raises(DataValidationError, match=r"hf://knkarthick/dialogsum\?split=train: cannot load Hub dataset"):
        fetch_jsonl("hf://knkarthick/dialogsum?split=train", tmp_path)


def test_hub_dataset_written_as_jsonl(tmp_path, monkeypatch):
    """The Hub branch's conversion, fed a real in-memory Dataset in place of the network download."""
    import datasets

    calls = []

    def fake_load(repo, config, split):
        calls.append((repo, config, split))
        return datasets.Dataset.from_list([{"id": "a", "dialogue": "#Person1#: Hi.", "summary": "Greeting."}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    path = fetch_jsonl("hf://knkarthick/dialogsum?split=validation", tmp_path)
    assert calls == [("knkarthick/dialogsum", None, "validation")]
    assert path.read_text() == '{"id": "a", "dialogue": "#Person1#: Hi.", "summary": "Greeting."}\n'

"""The shared intake layer: every accepted format loads, every bad file or record is named precisely."""

import bz2
import gzip
import json

import pytest

from llm_finetune.data.intake import FieldRule, intake, read_split
from llm_finetune.errors import DataValidationError
from tests.conftest import DIALOGSUM

RULES = [FieldRule("dialogue"), FieldRule("summary")]
RECORDS = [{"dialogue": f"#Person1#: Hi {i}.", "summary": f"Greeting {i}."} for i in range(4)]
JSONL = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()


def load(path, fmt=None, split="train", tmp=None):
    return read_split(str(path), fmt=fmt, split=split, cache_dir=tmp or path.parent / "cache")


def problems_of(uri, tmp_path, rules=RULES, fmt=None) -> list[str]:
    with pytest.raises(DataValidationError) as err:
        intake({"train": str(uri)}, rules, fmt=fmt, work_dir=tmp_path / "work")
    return [str(p) for p in err.value.problems]


@pytest.mark.parametrize("name, data", [
    ("train.jsonl", JSONL),
    ("train.jsonl", b"\xef\xbb\xbf" + JSONL),  # BOM, as Excel and many Windows tools write
    ("train.json", json.dumps(RECORDS).encode()),  # a JSON array
    ("train.json", b"\xef\xbb\xbf" + json.dumps(RECORDS, indent=2).encode()),
    ("train.jsonl.gz", gzip.compress(JSONL, mtime=0)),  # no timestamp: both xdist workers collect one id
    ("train.jsonl.bz2", bz2.compress(JSONL)),
])
def test_json_variants_load(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    ds, _ = load(tmp_path / name)
    assert ds.to_list() == RECORDS


def test_zstd_compressed_jsonl_loads(tmp_path):
    import zstandard

    (tmp_path / "train.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(JSONL))
    assert load(tmp_path / "train.jsonl.zst")[0].to_list() == RECORDS


def test_csv_with_quoted_newlines_and_bom(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b'\xef\xbb\xbfdialogue,summary\n"#Person1#: Hi.\n#Person2#: Hello, there.",NA\n')
    ds, _ = load(path)
    assert ds.to_list() == [{"dialogue": "#Person1#: Hi.\n#Person2#: Hello, there.", "summary": "NA"}]


def test_tsv_and_parquet(tmp_path):
    import pandas as pd

    pd.DataFrame(RECORDS).to_parquet(tmp_path / "train.parquet")
    (tmp_path / "t.tsv").write_text("dialogue\tsummary\n" + "".join(f"{r['dialogue']}\t{r['summary']}\n" for r in RECORDS))
    assert load(tmp_path / "train.parquet")[0].to_list() == RECORDS
    assert load(tmp_path / "t.tsv")[0].to_list() == RECORDS


def test_explicit_format_for_an_unusual_extension(tmp_path):
    (tmp_path / "train.data").write_bytes(JSONL)
    assert problems_of(tmp_path / "train.data", tmp_path)[0].endswith("cannot tell the format from the name; use "
                                                                        "one of .arrow, .csv, .json, .jsonl, .ndjson, "
                                                                        ".parquet, .tsv, .txt (optionally compressed) "
                                                                        "or set the recipe's `format:`")
    assert load(tmp_path / "train.data", fmt="json")[0].to_list() == RECORDS


def test_saved_dataset_folders(tmp_path):
    import datasets

    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(RECORDS[:3]),
                          "validation": datasets.Dataset.from_list(RECORDS[3:])}).save_to_disk(str(tmp_path / "dict"))
    assert load(tmp_path / "one")[0].to_list() == RECORDS
    assert load(tmp_path / "dict", split="validation")[0].to_list() == RECORDS[3:]
    ds, _ = read_split(f"{tmp_path / 'dict'}?split=train", fmt=None, split="validation", cache_dir=tmp_path / "c")
    assert len(ds) == 3
    assert problems_of(f"{tmp_path / 'dict'}?split=test", tmp_path) == [
        f"{tmp_path / 'dict'}?split=test: saved DatasetDict has no split 'test' (has ['train', 'validation']); "
        "add ?split=NAME to the URI"]


def test_folder_of_files_takes_the_split_named_files(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00.jsonl").write_bytes(JSONL)
    (tmp_path / "data" / "train-01.jsonl.gz").write_bytes(gzip.compress(JSONL))
    (tmp_path / "data" / "validation.jsonl").write_text(json.dumps(RECORDS[0]) + "\n")
    (tmp_path / "data" / "SOURCE.md").write_text("# not data\n")
    assert len(load(tmp_path / "data", split="train")[0]) == 8
    assert len(load(tmp_path / "data", split="validation")[0]) == 1


def test_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("hello")
    (message,) = problems_of(tmp_path / "notes", tmp_path)
    assert message.startswith(f"{tmp_path / 'notes'}: folder is neither a saved dataset")


def test_latin1_file_named_with_line_byte_and_hint(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(JSONL + '{"dialogue": "Caf\u00e9?", "summary": "s"}\n'.encode("latin-1"))
    (message,) = problems_of(path, tmp_path)
    offset = len(JSONL) + len('{"dialogue": "Caf')
    assert message == (f"{path}, line 5: not valid UTF-8 (byte {offset}: 0xe9); convert the file to UTF-8, "
                       "e.g. iconv -f latin1 -t utf-8 IN > OUT")


def test_latin1_csv_is_named_too(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("dialogue,summary\nd,s\nCaf\u00e9,s\n".encode("latin-1"))
    (message,) = problems_of(path, tmp_path)
    assert message.startswith(f"{path}, line 3: not valid UTF-8")


def test_bad_json_lines_and_types_reported_by_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([
        json.dumps(RECORDS[0]),
        '{"dialogue": "x", "summary": ',
        "",
        json.dumps({"dialogue": 42, "summary": "s"}),
        json.dumps(["not", "an", "object"]),
    ]) + "\n")
    assert problems_of(path, tmp_path) == [
        f"{path}, line 2: invalid JSON: Expecting value (column 30)",
        f"{path}, line 4, field 'dialogue': is an integer here but a string on line 1",
        f"{path}, line 5: expected a JSON object, got list",
    ]


def test_missing_wrong_type_and_empty_fields_by_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([
        json.dumps(RECORDS[0]),
        "",
        json.dumps({"dialogue": "#Person1#: Hi."}),
        json.dumps({"dialogue": "d", "summary": "   "}),
    ]) + "\n")
    assert problems_of(path, tmp_path) == [
        f"{path}, line 3, field 'summary': missing",
        f"{path}, line 4, field 'summary': is empty",
    ]


def test_a_field_of_the_wrong_type_in_every_record(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"dialogue": i, "summary": "s"}) + "\n" for i in range(2)))
    assert problems_of(path, tmp_path) == [f"{path}, line {i}, field 'dialogue': must be a string, got int"
                                           for i in (1, 2)]


def test_rows_of_csv_and_records_of_arrays_are_numbered(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text('dialogue,summary\n"multi\nline",s\nd,\n')
    array = tmp_path / "a.json"
    array.write_text(json.dumps([RECORDS[0], {"dialogue": "d"}]))
    assert problems_of(csv, tmp_path) == [f"{csv}, row 2, field 'summary': is empty"]
    assert problems_of(array, tmp_path) == [f"{array}, record 2, field 'summary': missing"]


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    assert problems_of(tmp_path / "empty.jsonl", tmp_path) == [f"{tmp_path / 'empty.jsonl'}: no records (file is empty)"]
    assert problems_of(tmp_path / "nope.jsonl", tmp_path) == [f"{tmp_path / 'nope.jsonl'}: file not found"]


def test_every_split_reported_together_and_nothing_saved(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps({"dialogue": "d"}) + "\n")
    with pytest.raises(DataValidationError) as err:
        intake({"train": str(bad), "validation": str(tmp_path / "missing.csv")}, RULES, fmt=None,
               work_dir=tmp_path / "work")
    assert [str(p) for p in err.value.problems] == [
        f"{bad}, line 1, field 'summary': missing",
        f"{tmp_path / 'missing.csv'}: file not found",
    ]
    assert not (tmp_path / "work" / "data").exists()


def test_validated_splits_saved_once_and_reused(tmp_path):
    uris = {"train": str(DIALOGSUM / "train.jsonl"), "validation": str(DIALOGSUM / "validation.jsonl")}
    first = intake(uris, RULES, fmt=None, work_dir=tmp_path)
    assert not first.reused and first.num_records == {"train": 601, "validation": 300}
    assert first.load("validation", limit=2)["fname"] == ["dev_0", "dev_1"]
    assert first.origin("validation", 1) == f"{DIALOGSUM / 'validation.jsonl'}, line 2"
    again = intake(uris, RULES, fmt=None, work_dir=tmp_path)
    assert again.reused and again.fingerprint == first.fingerprint and again.path == first.path
    other_rules = intake(uris, RULES + [FieldRule("topic", required=False)], fmt=None, work_dir=tmp_path)
    assert other_rules.fingerprint != first.fingerprint


def test_s3_object_and_prefix(moto_endpoint, tmp_path):
    from llm_finetune.aws import s3_client

    s3 = s3_client(endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="intake")
    s3.put_object(Bucket="intake", Key="one/train.csv.gz",
                  Body=gzip.compress(b"dialogue,summary\nd1,s1\nd2,s2\n"))
    s3.put_object(Bucket="intake", Key="many/part-0.jsonl", Body=JSONL)
    s3.put_object(Bucket="intake", Key="many/part-1.jsonl", Body=JSONL)
    ds, source = read_split("s3://intake/one/train.csv.gz", fmt=None, split="train", cache_dir=tmp_path, s3=s3)
    assert ds.to_list() == [{"dialogue": "d1", "summary": "s1"}, {"dialogue": "d2", "summary": "s2"}]
    ds, source = read_split("s3://intake/many/", fmt=None, split="train", cache_dir=tmp_path, s3=s3)
    assert len(ds) == 8 and len(source.files) == 2

    s3.put_object(Bucket="intake", Key="bad/x.jsonl", Body=b'{"dialogue": "d"}\n')
    with pytest.raises(DataValidationError) as err:
        intake({"train": "s3://intake/bad/"}, RULES, fmt=None, work_dir=tmp_path, s3=s3)
    assert [str(p) for p in err.value.problems] == ["s3://intake/bad/x.jsonl, line 1, field 'summary': missing"]
    with pytest.raises(DataValidationError, match="s3://intake/absent.jsonl: cannot read S3 object"):
        read_split("s3://intake/absent.jsonl", fmt=None, split="train", cache_dir=tmp_path, s3=s3)

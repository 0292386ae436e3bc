"""Turn a data URI (local path, s3://, hf://) into a local JSONL file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from llm_finetune.errors import DataValidationError, RecordProblem

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def fetch_jsonl(uri: str, cache_dir: str | Path, s3=None) -> Path:
    """Return a local JSONL path for `uri`.

    - `path/to/file.jsonl`: used in place.
    - `s3://bucket/key.jsonl`: downloaded into cache_dir (re-downloaded only when the ETag changes).
    - `hf://owner/name?split=train[&name=config]`: loaded with `datasets` and written as JSONL into cache_dir.
    """
    if uri.startswith("s3://"):
        return _fetch_s3(uri, Path(cache_dir), s3)
    if uri.startswith("hf://"):
        return _fetch_hub(uri, Path(cache_dir))
    path = Path(uri)
    if not path.is_file():
        raise DataValidationError([RecordProblem(uri, None, None, "file not found")])
    return path


def _fetch_s3(uri: str, cache_dir: Path, s3) -> Path:
    from botocore.exceptions import BotoCoreError, ClientError

    from llm_finetune.aws import s3_client

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise DataValidationError([RecordProblem(uri, None, None, "S3 URI must look like s3://bucket/key")])
    s3 = s3 or s3_client()
    try:
        etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    except (ClientError, BotoCoreError) as e:
        raise DataValidationError([RecordProblem(uri, None, None, f"cannot read S3 object: {e}")]) from None
    local = cache_dir / "s3" / bucket / f"{_SAFE.sub('_', key)}.{etag}.jsonl"
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_suffix(".part")
        s3.download_file(bucket, key, str(tmp))
        tmp.replace(local)
    return local


def _fetch_hub(uri: str, cache_dir: Path) -> Path:
    """Hub datasets (needs network or a warm HF cache; offline it fails with a clear message)."""
    parsed = urlparse(uri)
    repo = f"{parsed.netloc}{parsed.path}".strip("/")
    query = parse_qs(parsed.query)
    split = query.get("split", ["train"])[0]
    config = query.get("name", [None])[0]
    local = cache_dir / "hf" / _SAFE.sub("_", repo) / f"{config or 'default'}-{split}.jsonl"
    if local.exists():
        return local
    import datasets

    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError, OfflineModeIsEnabled...)
        raise DataValidationError([RecordProblem(uri, None, None, f"cannot load Hub dataset: {e}")]) from None
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_suffix(".part")
    with open(tmp, "w") as f:
        for record in ds:
            f.write(json.dumps(record, default=str) + "\n")
    tmp.replace(local)
    return local

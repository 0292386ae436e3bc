"""Folders to and from S3 prefixes: what a SageMaker job reads and writes (boto3's transfer manager does each file)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse


def split_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b')."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 URI (s3://bucket/key): {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def join_s3(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def object_exists(s3, uri: str) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def upload_file(s3, path: str | Path, uri: str) -> str:
    bucket, key = split_s3_uri(uri)
    s3.upload_file(str(path), bucket, key)
    return uri


def upload_folder(s3, folder: str | Path, uri: str) -> str:
    """Every file under folder to uri/<relative path>."""
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        upload_file(s3, path, join_s3(uri, path.relative_to(folder).as_posix()))
    return uri


def list_keys(s3, uri: str) -> list[str]:
    """Keys under an S3 prefix (uri is taken as a folder)."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")]


def download_prefix(s3, uri: str, folder: str | Path) -> list[Path]:
    """Every object under the prefix uri/ into folder/<relative key>; returns the files written."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    written = []
    for key in list_keys(s3, uri):
        local = Path(folder) / key[len(prefix):]
        local.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(local))
        written.append(local)
    return written


def download_file(s3, uri: str, path: str | Path) -> Path:
    bucket, key = split_s3_uri(uri)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(path))
    return Path(path)


class FolderSync:
    """Upload a folder's new and changed files to an S3 prefix, as SageMaker syncs /opt/ml/checkpoints.

    Files deleted locally stay in S3 (nothing uploaded is removed); a reader picks the newest complete checkpoint.
    """

    def __init__(self, s3, folder: str | Path, uri: str):
        self.s3, self.folder, self.uri = s3, Path(folder), uri
        self._seen: dict[Path, tuple[int, int]] = {}

    def sync(self) -> int:
        """Upload what changed since the last call; returns the number of files uploaded."""
        uploaded = 0
        if not self.folder.is_dir():
            return 0
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.is_symlink()):
            try:
                stat = path.stat()
            except FileNotFoundError:  # rotated away (save_total_limit) while we walked
                continue
            state = (stat.st_size, stat.st_mtime_ns)
            if self._seen.get(path) == state:
                continue
            try:
                upload_file(self.s3, path, join_s3(self.uri, path.relative_to(self.folder).as_posix()))
            except FileNotFoundError:
                continue
            self._seen[path] = state
            uploaded += 1
        return uploaded

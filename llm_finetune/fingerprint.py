"""Content fingerprints: the keys of every on-disk cache, so a re-run with the same inputs reuses work."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

# The pydantic serialization context of a fingerprint: a model may leave out what does not change the result.
FINGERPRINT_CONTEXT = {"fingerprint": True}


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able parts (pydantic models are dumped first, under FINGERPRINT_CONTEXT)."""
    h = hashlib.sha256()
    for part in parts:
        if hasattr(part, "model_dump"):
            part = part.model_dump(mode="json", context=FINGERPRINT_CONTEXT)
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def directory_sha256(path: str | Path, suffixes: tuple[str, ...] | None = None) -> str:
    """Hash of every file (name and bytes) under a directory, optionally only some suffixes."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        if suffixes and not f.name.endswith(suffixes):
            continue
        h.update(str(f.relative_to(root)).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def name_or_path_key(name_or_path: str, suffixes: tuple[str, ...] | None = None) -> str:
    """A local directory is keyed by its contents, a Hub id by its name."""
    return directory_sha256(name_or_path, suffixes) if Path(name_or_path).is_dir() else name_or_path


COMPLETE_MARKER = "_COMPLETE"


def is_complete(directory: str | Path) -> bool:
    return (Path(directory) / COMPLETE_MARKER).exists()


def mark_complete(directory: str | Path) -> None:
    (Path(directory) / COMPLETE_MARKER).write_text("ok\n")


@contextmanager
def locked(directory: str | Path) -> Iterator[None]:
    """An inter-process lock beside `directory` (released by the OS if the holder dies)."""
    path = Path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


@contextmanager
def build_once(directory: str | Path) -> Iterator[bool]:
    """Yield True when `directory` must be built (then marked complete), False when it already is.

    Concurrent callers wait for the first; a partial folder left by a killed run is removed, under the lock, so one
    process never deletes another's work in progress.
    """
    path = Path(directory)
    with locked(path):
        if is_complete(path):
            yield False
            return
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        yield True
        mark_complete(path)

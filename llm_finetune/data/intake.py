"""One intake layer for every flow: the data formats users bring, read with `datasets`, checked record by record.

A URI is a local file or folder, `s3://bucket/key`, `s3://bucket/prefix/` or `hf://owner/name?split=train&name=config`.
Files: JSON Lines or a JSON array (.jsonl .json .ndjson), CSV (.csv, quoted newlines allowed) or TSV (.tsv), Parquet,
Arrow, plain text (.txt, one record per line in field 'text'); each may be compressed (.gz .bz2 .xz .zst). A folder is
either one written by `save_to_disk` (a DatasetDict folder needs `?split=NAME`, else the split named by the caller)
or a folder of data files of one format. The format comes from the extension unless the recipe gives `format:`.

Every problem of every split is reported at once as `file, line/row N, field 'x': problem`, before any model work.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, urlparse

from pydantic import BaseModel

from llm_finetune.aws import s3_client
from llm_finetune.errors import DataValidationError, RecordProblem
from llm_finetune.fingerprint import build_once, directory_sha256, file_sha256, fingerprint

if TYPE_CHECKING:
    import datasets

DataFormat = Literal["json", "csv", "tsv", "parquet", "arrow", "text"]
EXTENSIONS: dict[str, DataFormat] = {
    ".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".tsv": "tsv",
    ".parquet": "parquet", ".arrow": "arrow", ".txt": "text",
}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")
SAVED_DATASET_MARKERS = ("state.json", "dataset_dict.json")
_TEXT_FORMATS = ("json", "csv", "tsv", "text")
_BOM = b"\xef\xbb\xbf"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PY_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
                  dict: "an object"}


@dataclass(frozen=True)
class FieldRule:
    """What one field of every record must hold."""

    name: str
    types: tuple[type, ...] = (str,)
    required: bool = True
    allow_empty: bool = False


class SplitSource(BaseModel):
    """Where one split came from: its URI, the local files read (if any) and how rows map back to them."""

    uri: str
    format: str
    files: list[str]
    content_key: str
    rows: "RowLocator"


class ValidatedData(BaseModel):
    """Checked splits saved as one DatasetDict folder; every later stage reads this instead of the sources."""

    path: str
    fingerprint: str
    num_records: dict[str, int]
    sources: dict[str, SplitSource]
    reused: bool = False

    def origin(self, split: str, row: int) -> str:
        """Where row `row` of a split came from, e.g. 'train.jsonl, line 7': for errors found after intake."""
        return self.sources[split].rows.describe(row)

    def load(self, split: str, limit: int | None = None) -> "datasets.Dataset":
        import datasets

        ds = datasets.load_from_disk(self.path)[split]
        return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def strip_compression(name: str) -> str:
    for ext in COMPRESSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def format_of(path: str | Path) -> DataFormat | None:
    return EXTENSIONS.get(Path(strip_compression(Path(path).name)).suffix.lower())


# ---------------------------------------------------------------------------------------------------------------
# Sources: URI -> local files or an in-memory dataset


def _split_query(uri: str) -> tuple[str, dict[str, str]]:
    if "?" not in uri:
        return uri, {}
    base, query = uri.split("?", 1)
    return base, {k: v[0] for k, v in parse_qs(query).items()}


def _fetch_s3(uri: str, cache_dir: Path, s3) -> Path:
    """Download an object or every object under a prefix (ending in '/'); re-downloaded only when an ETag changes."""
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise DataValidationError([RecordProblem(uri, None, None, "S3 URI must look like s3://bucket/key or s3://bucket/prefix/")])
    s3 = s3 or s3_client()
    try:
        objects = _s3_objects(uri, s3, bucket, key)
        listing_key = fingerprint(objects)
        root = cache_dir / "s3" / bucket / f"{_SAFE.sub('_', key.rstrip('/'))}-{listing_key}"
        with build_once(root) as needed:
            if needed:
                for obj_key, _ in objects:
                    local = root / (obj_key[len(key):] if key.endswith("/") else Path(obj_key).name)
                    local.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, obj_key, str(local))
    except (ClientError, BotoCoreError) as e:
        raise DataValidationError([RecordProblem(uri, None, None, f"cannot read S3 object: {e}")]) from None
    return root if key.endswith("/") else root / Path(key).name


def _s3_objects(uri: str, s3, bucket: str, key: str) -> list[tuple[str, str]]:
    """(key, ETag) of the object, or of every object under a prefix (a key ending in '/')."""
    if not key.endswith("/"):
        return [(key, s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"'))]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
    objects = [(o["Key"], o["ETag"].strip('"')) for page in pages for o in page.get("Contents", [])
               if not o["Key"].endswith("/")]
    if not objects:
        raise DataValidationError([RecordProblem(uri, None, None, "no objects under this S3 prefix")])
    return objects


def source_listing(uri: str, s3=None) -> list[tuple[str, str]] | None:
    """What is at a URI, cheaply: (name, content hash) of every file of a local file or folder (SHA-256), or of
    every object of an S3 key or prefix (ETag, from the listing: nothing is downloaded). None for a Hub dataset,
    which cannot be listed (compare its loaded content instead)."""
    base, _ = _split_query(uri)
    if base.startswith("hf://"):
        return None
    if base.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        parsed = urlparse(base)
        try:
            return _s3_objects(uri, s3 or s3_client(), parsed.netloc, parsed.path.lstrip("/"))
        except (ClientError, BotoCoreError) as e:
            raise DataValidationError([RecordProblem(uri, None, None, f"cannot list S3 objects: {e}")]) from None
    local = Path(base)
    if not local.exists():
        raise DataValidationError([RecordProblem(uri, None, None, "file not found")])
    if local.is_file():
        return [(local.name, file_sha256(local))]
    return [(str(p.relative_to(local)), file_sha256(p)) for p in sorted(local.rglob("*"))
            if p.is_file() and not p.name.startswith((".", "_"))]


SPLIT_FILE_PREFIXES = {"train": ("train", "training"), "validation": ("validation", "valid", "val", "dev"),
                       "test": ("test", "testing")}


def _data_files(folder: Path, fmt: DataFormat | None, split: str, uri: str) -> list[Path]:
    """Data files of a folder; where file names carry split names (train.jsonl, dev-0.csv), only this split's."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
                   and (fmt is not None or format_of(p) is not None))
    if not files:
        raise DataValidationError([RecordProblem(uri, None, None, (
            "folder is neither a saved dataset (no state.json / dataset_dict.json, as written by save_to_disk) "
            f"nor a folder of data files ({', '.join(sorted(EXTENSIONS))}, optionally compressed)"))])
    named = {s: [p for p in files if re.match(rf"({'|'.join(prefixes)})([-_.]|$)", p.name.lower())]
             for s, prefixes in SPLIT_FILE_PREFIXES.items()}
    if any(named.values()):
        if not named.get(split):
            raise DataValidationError([RecordProblem(uri, None, None, (
                f"folder has files named for splits {sorted(s for s, f in named.items() if f)} but none for "
                f"'{split}'; add ?split=NAME to the URI"))])
        files = named[split]
    formats = {fmt or format_of(p) for p in files}
    if len(formats) > 1:
        raise DataValidationError([RecordProblem(uri, None, None, (
            f"folder mixes formats {sorted(formats)}; keep one format per split or set the recipe's `format:`"))])
    return files


# ---------------------------------------------------------------------------------------------------------------
# Reading with datasets, and finding the exact line when datasets cannot say


@contextmanager
def _quiet_datasets():
    """datasets logs its own parse errors at ERROR level; we re-report them with file and line."""
    loggers = [logging.getLogger(n) for n in ("datasets", "datasets.packaged_modules.json.json", "datasets.builder")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _builder_kwargs(fmt: DataFormat) -> tuple[str, dict]:
    if fmt == "csv":
        return "csv", {"keep_default_na": False}  # a summary reading "NA" is text, not a missing value
    if fmt == "tsv":
        return "csv", {"sep": "\t", "keep_default_na": False}
    return fmt, {}


def _read_file(path: Path, fmt: DataFormat, label: str, cache_dir: Path) -> tuple["datasets.Dataset", str | None]:
    """The file as a Dataset, and its decoded text for text formats (pyarrow lets some invalid UTF-8 through)."""
    import datasets

    text = decode_utf8(path, label) if fmt in _TEXT_FORMATS else None
    if text is not None and not text.strip():
        raise DataValidationError([RecordProblem(label, None, None, "no records (file is empty)")])
    builder, kwargs = _builder_kwargs(fmt)
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=str(cache_dir),
                                       **kwargs)
    except Exception as e:  # datasets wraps parser errors in several types; find the exact record ourselves
        problems = diagnose_json(text, label) if fmt == "json" else []
        if problems:
            raise DataValidationError(problems) from None
        cause = e.__cause__ or e
        raise DataValidationError([RecordProblem(label, None, None,
                                                 f"cannot read as {fmt}: {type(cause).__name__}: {cause}")]) from None
    return ds, text


def decode_utf8(path: Path, label: str) -> str:
    """The (decompressed) file as text; a file that is not UTF-8 is named with its line and byte offset."""
    import fsspec

    with fsspec.open(str(path), "rb", compression="infer") as f:
        raw = f.read()
    bom = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[bom : bom + e.start].count(b"\n") + 1
        where = "byte of the decompressed text" if path.name.endswith(COMPRESSIONS) else "byte"
        raise DataValidationError([RecordProblem(label, line, None, (
            f"not valid UTF-8 ({where} {bom + e.start}: 0x{raw[bom + e.start]:02x}); convert the file to UTF-8, "
            "e.g. iconv -f latin1 -t utf-8 IN > OUT"))]) from None


def json_lines(text: str) -> list[str]:
    """Lines as JSON Lines and editors count them: split at '\n' only. str.splitlines also splits at U+0085, U+2028,
    form feeds... which real text holds (the IMDB sample has U+0085 inside reviews)."""
    return text.split("\n")


def diagnose_json(text: str, label: str) -> list[RecordProblem]:
    """Name the line and what is wrong with it in JSON that `datasets` rejected."""
    if text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            return [RecordProblem(label, e.lineno, None, f"invalid JSON: {e.msg} (column {e.colno})")]
        return []
    problems: list[RecordProblem] = []
    first_type: dict[str, tuple[type, int]] = {}
    for number, line in enumerate(json_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(RecordProblem(label, number, None, f"invalid JSON: {e.msg} (column {e.colno})"))
            continue
        if not isinstance(record, dict):
            problems.append(RecordProblem(label, number, None, f"expected a JSON object, got {type(record).__name__}"))
            continue
        for key, value in record.items():
            if value is None:
                continue
            seen = first_type.setdefault(key, (type(value), number))
            if seen[0] is not type(value) and {seen[0], type(value)} != {int, float}:
                problems.append(RecordProblem(label, number, key, (
                    f"is {_PY_TYPE_NAMES.get(type(value), type(value).__name__)} here but "
                    f"{_PY_TYPE_NAMES.get(seen[0], seen[0].__name__)} on line {seen[1]}")))
    return problems


class RowLocator(BaseModel):
    """Maps a row of a loaded split back to the file and line (or row, or record) a person can open."""

    parts: list[tuple[str, int, str, list[int] | None]]  # (label, rows, unit, line numbers or None)

    def __call__(self, row: int) -> tuple[str, int, str]:
        for label, rows, unit, lines in self.parts:
            if row < rows:
                return label, (lines[row] if lines is not None else row + 1), unit
            row -= rows
        raise IndexError(row)

    def describe(self, row: int) -> str:
        label, number, unit = self(row)
        return f"{label}, {unit} {number}"


def _line_numbers(text: str) -> list[int] | None:
    """Line numbers of the records of a JSON Lines or text file (blank lines are skipped); None for a JSON array."""
    if text.lstrip().startswith("["):
        return None
    return [i for i, line in enumerate(json_lines(text), start=1) if line.strip()]


def _unit(fmt: str, lines: list[int] | None) -> str:
    if fmt in ("json", "text") and lines is not None:
        return "line"
    return "record" if fmt == "json" else "row"


def read_split(uri: str, *, fmt: DataFormat | None, split: str, cache_dir: str | Path,
               s3=None) -> tuple["datasets.Dataset", SplitSource]:
    """Load one split from any supported URI; errors name the URI."""
    import datasets

    cache_dir = Path(cache_dir)
    base, query = _split_query(uri)
    split = query.get("split", split)
    if base.startswith("hf://"):
        return _read_hub(uri, base, query, split, cache_dir)
    local = _fetch_s3(base, cache_dir / "downloads", s3) if base.startswith("s3://") else Path(base)
    if not local.exists():
        raise DataValidationError([RecordProblem(uri, None, None, "file not found")])

    if local.is_dir() and any((local / m).exists() for m in SAVED_DATASET_MARKERS):
        loaded = datasets.load_from_disk(str(local))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataValidationError([RecordProblem(uri, None, None, (
                    f"saved DatasetDict has no split '{split}' (has {sorted(loaded)}); add ?split=NAME to the URI"))])
            loaded = loaded[split]
        key = directory_sha256(local)
        return loaded, SplitSource(uri=uri, format="saved", files=[str(local)], content_key=key,
                                   rows=RowLocator(parts=[(uri, len(loaded), "row", None)]))

    files = _data_files(local, fmt, split, uri) if local.is_dir() else [local]
    file_fmt = fmt or format_of(files[0])
    if file_fmt is None:
        raise DataValidationError([RecordProblem(uri, None, None, (
            f"cannot tell the format from the name; use one of {', '.join(sorted(EXTENSIONS))} "
            "(optionally compressed) or set the recipe's `format:`"))])
    parts, pieces, problems = [], [], []
    for path in files:
        label = uri if path == local else (f"{uri.rstrip('/')}/{path.relative_to(local)}")
        try:
            ds, text = _read_file(path, file_fmt, label, cache_dir / "hf-datasets")
        except DataValidationError as e:
            problems.extend(e.problems)
            continue
        lines = _line_numbers(text) if file_fmt in ("json", "text") else None
        if lines is not None and len(lines) != len(ds):
            lines = None
        parts.append((label, len(ds), _unit(file_fmt, lines), lines))
        pieces.append(ds)
    if problems:
        raise DataValidationError(problems)
    loaded = pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)
    key = fingerprint([(str(p.relative_to(local)) if local.is_dir() else p.name, file_sha256(p)) for p in files])
    return loaded, SplitSource(uri=uri, format=file_fmt, files=[str(p) for p in files], content_key=key,
                               rows=RowLocator(parts=parts))


def _read_hub(uri: str, base: str, query: dict[str, str], split: str, cache_dir: Path):
    """Hub datasets (needs network or a warm HF cache; offline it fails with a clear message)."""
    import datasets

    repo = base[len("hf://"):].strip("/")
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(repo, query.get("name"), split=split, cache_dir=str(cache_dir / "hf-datasets"))
    except Exception as e:  # ConnectionError, FileNotFoundError, OfflineModeIsEnabled, ...
        raise DataValidationError([RecordProblem(uri, None, None, f"cannot load Hub dataset: {e}")]) from None
    return ds, SplitSource(uri=uri, format="hub", files=[], content_key=ds._fingerprint,
                           rows=RowLocator(parts=[(uri, len(ds), "row", None)]))


# ---------------------------------------------------------------------------------------------------------------
# Validation


def _type_name(value) -> str:
    return type(value).__name__


def check_records(ds: "datasets.Dataset", rules: list[FieldRule], locate: RowLocator) -> list[RecordProblem]:
    """Every missing, mistyped or empty field, by record; an empty split is a problem too."""
    if len(ds) == 0:
        label = locate.parts[0][0] if locate.parts else "?"
        return [RecordProblem(label, None, None, "no records (file is empty)")]
    problems = []
    columns = {rule.name: (ds[rule.name] if rule.name in ds.column_names else [None] * len(ds)) for rule in rules}
    for row in range(len(ds)):
        for rule in rules:
            value = columns[rule.name][row]
            message = None
            if value is None:
                message = "missing" if rule.required else None
            elif not isinstance(value, rule.types) or (isinstance(value, bool) and bool not in rule.types):
                wanted = " or ".join(_PY_TYPE_NAMES.get(t, t.__name__) for t in rule.types)
                message = f"must be {wanted}, got {_type_name(value)}"
            elif isinstance(value, str) and not rule.allow_empty and not value.strip():
                message = "is empty"
            if message:
                label, number, unit = locate(row)
                problems.append(RecordProblem(label, number, rule.name, message, unit=unit))
    return problems


def intake(
    uris: dict[str, str],
    rules: list[FieldRule],
    *,
    fmt: DataFormat | None,
    work_dir: str | Path,
    s3=None,
) -> ValidatedData:
    """Read every split, check every record, and save the checked splits once under work_dir/data/<fingerprint>.

    All problems of all splits are raised together. The same source bytes with the same rules are not read again.
    """
    import datasets

    work_dir = Path(work_dir)
    loaded, sources, problems = {}, {}, []
    for split, uri in uris.items():
        try:
            ds, source = read_split(uri, fmt=fmt, split=split, cache_dir=work_dir, s3=s3)
        except DataValidationError as e:
            problems.extend(e.problems)
            continue
        problems.extend(check_records(ds, rules, source.rows))
        loaded[split], sources[split] = ds, source
    if problems:
        raise DataValidationError(problems)

    key = fingerprint("intake-v1", {s: src.content_key for s, src in sources.items()}, fmt,
                      [(r.name, [t.__name__ for t in r.types], r.required, r.allow_empty) for r in rules])
    out = work_dir / "data" / key
    with build_once(out) as needed:
        if needed:
            datasets.DatasetDict(loaded).save_to_disk(str(out / "dataset"))
            validated = ValidatedData(path=str(out / "dataset"), fingerprint=key,
                                      num_records={s: len(d) for s, d in loaded.items()}, sources=sources)
            (out / "validated.json").write_text(validated.model_dump_json(indent=2))
            return validated
    return ValidatedData.model_validate_json((out / "validated.json").read_text()).model_copy(update={"reused": True})


SplitSource.model_rebuild()
ValidatedData.model_rebuild()

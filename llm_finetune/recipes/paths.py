"""Local paths in recipes: absolute in memory on the machine that loaded the recipe, written relative to the project
root in every JSON form (a deployment's stored parameter form, the values the Prefect UI sends back, MLflow params, job
files), so a recipe dumped on one machine reads back on another whose project holds the same layout (a worker's
checkout, the image's /opt/llmft).

A relative path is taken from the recipe file's folder for the file's values and from the working directory for a
`key=value` override (load_recipe passes the folder as the validation context); from the project root otherwise (a
flow parameter, a job file).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer, SerializationInfo, ValidationInfo

from llm_finetune.fingerprint import FINGERPRINT_CONTEXT

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # holds pyproject.toml and prefect.yaml
RELATIVE_TO = "paths_relative_to"  # the validation context's key: relative paths are taken from it; None keeps them


def relative_to(base: Path | None) -> dict[str, Path | None]:
    """The validation context that takes relative recipe paths from `base` (None: leaves them as they are)."""
    return {RELATIVE_TO: base}


def resolve_local(uri: str, base: Path) -> str:
    """A local path made absolute against base; URIs (s3://, hf://) unchanged. Lexically, not through symlinks: a
    linked data folder stays under the tree it is linked into, so its path can be written relative to the project."""
    return uri if "://" in uri else os.path.normpath(os.path.join(base, uri))


def resolve_existing(name_or_path: str, base: Path) -> str:
    """A model folder that exists relative to base, made absolute; anything else (a Hub id) as given."""
    path = resolve_local(name_or_path, base)
    return path if Path(path).exists() else name_or_path


def portable(path: str) -> str:
    """An absolute path under the project root's parent folder written relative to the project root
    (`../shared/data/train.jsonl`, `.llmft`); URIs, Hub ids, relative paths and paths elsewhere as they are."""
    if not os.path.isabs(path):
        return path
    normal, tree = os.path.normpath(path), str(PROJECT_ROOT.parent)  # read at each call: tests move the root
    return os.path.relpath(normal, PROJECT_ROOT) if os.path.commonpath([normal, tree]) == tree else path


def _json_form(path: str, info: SerializationInfo) -> str:
    # A fingerprint keys this machine's caches: it keeps the absolute path, as it always did (files at the same
    # relative path on two machines are not the same files; data fingerprints hash contents besides).
    return path if info.context == FINGERPRINT_CONTEXT else portable(path)


def _taken_from(resolve: Callable[[str, Path], str]) -> AfterValidator:
    def validate(value: str, info: ValidationInfo) -> str:
        context = info.context if isinstance(info.context, dict) else {}
        base = context.get(RELATIVE_TO, PROJECT_ROOT)
        return value if base is None else resolve(value, base)
    return AfterValidator(validate)


_PORTABLE = PlainSerializer(_json_form, when_used="json")

# A local file or folder, or a URI: relative to the recipe file, to the working directory when set by an override,
# to the project root in a flow parameter.
RecipePath = Annotated[str, _taken_from(resolve_local), _PORTABLE]
# A Hub id, or a local model folder where one exists at that path (relative as RecipePath).
RecipeModel = Annotated[str, _taken_from(resolve_existing), _PORTABLE]
# A local path relative to the working directory, kept as given (a Hub id too, for a model); a flow run's working
# directory is the worker's project root (the deployments' pull step), which its JSON form is relative to.
CwdPath = Annotated[str, _PORTABLE]

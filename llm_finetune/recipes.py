"""Typed recipes: what model, what data, which hyperparameters. Loaded from YAML plus `key.sub=value` overrides;
Prefect renders them as forms."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llm_finetune.errors import RecipeError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


DATA_URI_HELP = (
    "A local file or folder (JSON Lines, JSON array, CSV, TSV, Parquet, Arrow or text, optionally .gz/.bz2/.xz/.zst; "
    "a save_to_disk folder), s3://bucket/key, s3://bucket/prefix/, or hf://owner/name?split=train"
)


class DataSource(_Strict):
    """Where the train and validation records live; read by the shared intake layer."""

    train_uri: str = Field(description=DATA_URI_HELP)
    validation_uri: str = Field(description="Same forms as train_uri; used for evaluation and endpoint tests")
    format: Literal["json", "csv", "tsv", "parquet", "arrow", "text"] | None = Field(
        None, description="File format; by default taken from the extension (.jsonl/.json, .csv, .parquet, ...)"
    )
    max_train_records: int | None = Field(None, gt=0, description="Use only the first N training records")
    max_validation_records: int | None = Field(None, gt=0)


class SummarizationData(DataSource):
    """Dialogue/summary records and how they become model inputs."""

    dialogue_field: str = "dialogue"
    summary_field: str = "summary"
    id_field: str | None = Field("fname", description="Record id field, if the data has one")
    prompt_template: str = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
    max_source_tokens: int = Field(512, gt=0)
    max_target_tokens: int = Field(128, gt=0)

    @field_validator("prompt_template")
    @classmethod
    def _has_dialogue_slot(cls, v: str) -> str:
        if "{dialogue}" not in v:
            raise ValueError("prompt_template must contain '{dialogue}'")
        return v


class TinyT5Spec(_Strict):
    """A randomly initialised T5 built from a config, with a tokenizer trained on the training split (works offline)."""

    vocab_size: int = Field(2000, ge=100)
    d_model: int = 64
    d_ff: int = 128
    d_kv: int = 16
    num_heads: int = 4
    num_layers: int = 2
    num_decoder_layers: int = 2
    seed: int = 0


class ModelSpec(_Strict):
    """Base model: a Hub id or local directory (e.g. google/flan-t5-base), or a tiny offline T5."""

    name_or_path: str | None = None
    tiny: TinyT5Spec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSpec":
        if (self.name_or_path is None) == (self.tiny is None):
            raise ValueError("set exactly one of 'name_or_path' or 'tiny'")
        return self


class Seq2SeqTrainingParams(_Strict):
    """Hyperparameters passed to transformers' Seq2SeqTrainer."""

    backend: Literal["local"] = "local"
    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="If > 0, overrides num_train_epochs")
    learning_rate: float = Field(5e-4, gt=0)
    per_device_train_batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(50, gt=0, description="Checkpoint every N steps; a killed run resumes from the last one")
    save_total_limit: int = Field(2, gt=0)
    group_by_length: bool = Field(True, description="Batch records of similar length to cut padding")
    seed: int = 42


class EvaluationParams(_Strict):
    """ROUGE evaluation of the base and fine-tuned models on the validation split."""

    max_records: int = Field(50, gt=0)
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int = Field(64, gt=0)
    num_beams: int = Field(1, gt=0)
    num_samples_shown: int = Field(3, ge=0, description="Sample summaries shown in artifacts and the approval form")


class RegistrySpec(_Strict):
    """MLflow tracking and model registry."""

    tracking_uri: str | None = Field(None, description="Default: sqlite:///<work_dir>/mlflow.db")
    experiment: str = "dialogsum-flan-t5"
    model_name: str = "dialogsum-flan-t5"


class ApprovalPolicy(_Strict):
    """Automatic approval when every threshold holds; otherwise the flow pauses for a person."""

    min_metrics: dict[str, float] = Field(
        default_factory=lambda: {"rougeL": 0.2}, description="Fine-tuned metric must be >= value"
    )
    min_gain_over_base: dict[str, float] = Field(
        default_factory=lambda: {"rougeL": 0.0}, description="Fine-tuned minus base must be >= value"
    )
    alias: str = Field("champion", description="Registry alias set on the approved version")
    manual_timeout_s: int = Field(3600, gt=0, description="How long a paused run waits for a reviewer")


class EndpointSpec(_Strict):
    """Local HTTP endpoint speaking the SageMaker inference protocol (/ping, /invocations)."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, description="0 picks a free port")
    startup_timeout_s: float = Field(180.0, gt=0)
    num_test_records: int = Field(5, gt=0)
    max_new_tokens: int = Field(64, gt=0)
    keep_running: bool = Field(False, description="Leave the endpoint up after the flow ends")


class SummarizationRecipe(_Strict):
    """Everything one dialogue-summarization run needs."""

    name: str = "dialogsum-flan-t5"
    work_dir: str = Field(".llmft", description="Caches, checkpoints, MLflow store (relative to the working directory)")
    data: SummarizationData
    model: ModelSpec
    training: Seq2SeqTrainingParams = Field(default_factory=Seq2SeqTrainingParams)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    endpoint: EndpointSpec = Field(default_factory=EndpointSpec)

    def tracking_uri(self) -> str:
        if self.registry.tracking_uri:
            return self.registry.tracking_uri
        return f"sqlite:///{Path(self.work_dir).resolve() / 'mlflow.db'}"

    def with_paths_relative_to(self, base: Path) -> "SummarizationRecipe":
        """Local data paths in a recipe file are relative to that file, not to the working directory."""

        def resolve(uri: str) -> str:
            return uri if "://" in uri or Path(uri).is_absolute() else str((base / uri).resolve())

        data = self.data.model_copy(
            update={"train_uri": resolve(self.data.train_uri), "validation_uri": resolve(self.data.validation_uri)}
        )
        return self.model_copy(update={"data": data})


def load_recipe(
    path: str | Path, recipe_type: type[BaseModel] = SummarizationRecipe, overrides: Sequence[str] = ()
) -> BaseModel:
    """Read a YAML recipe and apply `key.sub=value` overrides; errors name the file, the field and the override."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides, recipe_type)
    try:
        recipe = recipe_type.model_validate(raw)
    except ValidationError as e:
        lines = [f"  - field '{'.'.join(str(p) for p in err['loc']) or '<root>'}': {err['msg']}"
                 + _set_by(err["loc"], overrides) for err in e.errors()]
        raise RecipeError(f"{path}: invalid recipe:\n" + "\n".join(lines)) from None
    if hasattr(recipe, "with_paths_relative_to"):
        recipe = _resolve_paths(recipe, path, overrides)
    return recipe


def apply_overrides(raw: dict, overrides: Iterable[str], recipe_type: type[BaseModel]) -> dict:
    """A copy of raw with each `key.sub=value` set (torchtune / Hydra style); values are YAML: `3`, `null`,
    `[a, b]`, `{rougeL: 0.1}`. Keys are checked against recipe_type; every bad override is reported at once."""
    out = copy.deepcopy(raw)
    problems = []
    for text in overrides:
        try:
            keys, value = parse_override(text, recipe_type)
        except RecipeError as e:
            problems.append(str(e))
            continue
        node = out
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    if problems:
        if len(problems) == 1:
            raise RecipeError(problems[0])
        raise RecipeError(f"{len(problems)} bad overrides:\n" + "\n".join(f"  - {p}" for p in problems))
    return out


def parse_override(text: str, recipe_type: type[BaseModel]) -> tuple[list[str], Any]:
    """`training.max_steps=20` -> (['training', 'max_steps'], 20), the key checked against recipe_type."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise RecipeError(f"override '{text}' is not of the form key.sub=value (e.g. training.max_steps=20)")
    keys = key.split(".")
    _check_key(keys, recipe_type)
    try:
        return keys, yaml.safe_load(value)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"override '{text}': the value is not valid YAML ({problem}); quote a string value") from None


def _check_key(keys: list[str], recipe_type: type[BaseModel]) -> None:
    """Raise unless keys name a field of recipe_type; keys under a dict field (min_metrics) are free."""
    annotation: Any = recipe_type
    for depth, key in enumerate(keys):
        model, annotation = _model_in(annotation), _without_none(annotation)
        if model is not None:
            if key not in model.model_fields:
                raise RecipeError(_unknown_key(keys[: depth + 1], list(model.model_fields)))
            annotation = model.model_fields[key].annotation
        elif get_origin(annotation) is dict:  # free keys, e.g. approval.min_metrics.rougeL
            annotation = get_args(annotation)[1]
        elif annotation is not Any:
            section = ".".join(keys[:depth])
            raise RecipeError(f"recipe key '{section}' is a value, not a section; set it as {section}=VALUE")


def _unknown_key(keys: list[str], known: list[str]) -> str:
    where = ".".join(keys[:-1])
    message = f"unknown recipe key '{'.'.join(keys)}'"
    guess = _closest(keys[-1], known)
    if guess is not None:
        return f"{message}; did you mean '{where + '.' if where else ''}{guess}'?"
    return f"{message}; known keys {'under ' + repr(where) if where else 'at the top level'}: {', '.join(known)}"


def _closest(name: str, known: list[str]) -> str | None:
    """difflib first, then initials (lr -> learning_rate), then the one name that contains it (epochs)."""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return close[0]
    for matches in ([k for k in known if "".join(p[0] for p in k.split("_") if p) == name],
                    [k for k in known if name and name in k]):
        if len(matches) == 1:
            return matches[0]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The recipe section an annotation holds: Model, or Model | None."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else Any
    return annotation


def _override_keys(text: str) -> list[str]:
    return text.partition("=")[0].split(".")


def _set_by(loc: tuple, overrides: Sequence[str]) -> str:
    """' (set by override k=v)' when an override set this field, a field in it, or the section around it."""
    loc = [str(p) for p in loc]

    def covers(keys: list[str]) -> bool:
        n = min(len(keys), len(loc))
        return n > 0 and keys[:n] == loc[:n]

    texts = [text for text in overrides if covers(_override_keys(text))]
    return f" (set by override {', '.join(texts)})" if texts else ""


def _resolve_paths(recipe: BaseModel, path: Path, overrides: Sequence[str]) -> BaseModel:
    """Paths from the file are relative to the file; paths set by an override, to the working directory."""
    resolved = recipe.with_paths_relative_to(path.resolve().parent)
    if not overrides:
        return resolved
    from_file, from_cwd = resolved.model_dump(), recipe.with_paths_relative_to(Path.cwd()).model_dump()
    for text in overrides:
        keys, file_node, cwd_node = _override_keys(text), from_file, from_cwd
        for key in keys[:-1]:
            file_node, cwd_node = file_node.get(key), cwd_node.get(key)
            if not isinstance(file_node, dict) or not isinstance(cwd_node, dict):
                break  # a later override replaced this section; its own entry handles it
        else:
            if keys[-1] in cwd_node:
                file_node[keys[-1]] = cwd_node[keys[-1]]
    return type(recipe).model_validate(from_file)

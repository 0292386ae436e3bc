"""Loading recipes from YAML plus `key.sub=value` overrides (the torchtune / Hydra convention)."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from llm_finetune.errors import RecipeError
from llm_finetune.recipes.paths import relative_to
from llm_finetune.recipes.summarization import SummarizationRecipe


def load_recipe(
    path: str | Path, recipe_type: type[BaseModel] = SummarizationRecipe, overrides: Sequence[str] = ()
) -> BaseModel:
    """Read a YAML recipe and apply `key.sub=value` overrides; errors name the file, the field and the override.
    A relative path in the file is taken from the file's folder, one set by an override from the working directory."""
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
        recipe = recipe_type.model_validate(raw, context=relative_to(path.resolve().parent))
    except ValidationError as e:
        lines = [f"  - field '{'.'.join(str(p) for p in err['loc']) or '<root>'}': {err['msg']}"
                 + _set_by(err["loc"], overrides) for err in e.errors()]
        raise RecipeError(f"{path}: invalid recipe:\n" + "\n".join(lines)) from None
    return _override_paths_from_cwd(recipe, raw, overrides) if overrides else recipe


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
        bare = _without_none(annotation)
        # dict[str, Section] (a recipe's named arms) has free keys too: its args name the section, not the dict
        model, annotation = (None if get_origin(bare) is dict else _model_in(annotation)), bare
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
    """The recipe section an annotation holds: Model, or Model | None (not dict[str, Model]: its keys are free)."""
    if get_origin(annotation) is dict:
        return None
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


def _override_paths_from_cwd(recipe: BaseModel, raw: dict, overrides: Sequence[str]) -> BaseModel:
    """The recipe with the paths an override set taken from the working directory instead of the file's folder."""
    from_file = recipe.model_dump()
    from_cwd = type(recipe).model_validate(raw, context=relative_to(Path.cwd())).model_dump()
    for text in overrides:
        keys, file_node, cwd_node = _override_keys(text), from_file, from_cwd
        for key in keys[:-1]:
            file_node, cwd_node = file_node.get(key), cwd_node.get(key)
            if not isinstance(file_node, dict) or not isinstance(cwd_node, dict):
                break  # a later override replaced this section; its own entry handles it
        else:
            if keys[-1] in cwd_node:
                file_node[keys[-1]] = cwd_node[keys[-1]]
    return type(recipe).model_validate(from_file, context=relative_to(None))  # taken from their folders already

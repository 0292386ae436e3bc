"""SageMaker requests checked against botocore's service model before they are sent.

botocore's own ParamValidator checks types, required members and minimum lengths; the service also rejects values
outside an enum, over a maximum (string, list, map or number) and not matching a member's `pattern`. Those checks
are added here, so a request the service would answer with ValidationException fails on this machine, naming each
parameter path, before anything is launched (and a local stand-in can apply the same rules).

The model's patterns are Java regular expressions matched against the whole value: they are converted for Python's
`regex` module (Unicode `\\p{L}` classes; Java's ASCII `\\w \\d \\s \\p{Alnum}`; `.` stopping at any line terminator;
surrogate pairs; a quantifier on an anchor, which Java accepts).
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

import regex
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator, ValidationErrors, type_check

from llm_finetune.errors import SageMakerRequestError

SERVICE = "sagemaker"
NAME_MAX = 63  # jobs, models, endpoint configs, endpoints
NAME_HASH = 8
# Java's ASCII classes (without UNICODE_CHARACTER_CLASS), as the contents of a character class.
_ASCII_CLASSES = {"w": "a-zA-Z0-9_", "d": "0-9", "s": " \\t\\n\\x0B\\f\\r"}
_POSIX = {"Alnum": "a-zA-Z0-9", "Alpha": "a-zA-Z", "Digit": "0-9", "Lower": "a-z", "Upper": "A-Z",
          "Punct": "!-/:-@\\[-`{-~", "Space": " \\t\\n\\x0B\\f\\r", "XDigit": "0-9a-fA-F"}
_JAVA_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"  # Java's `.` stops at every line terminator
_SURROGATE_PAIR = regex.compile(r"\\u(D[89AB][0-9A-F]{2})\\u(D[C-F][0-9A-F]{2})", regex.IGNORECASE)
_QUANTIFIER = regex.compile(r"\{\d+(,\d*)?\}|[*+?]")


def java_pattern(pattern: str) -> str:
    """A Java regular expression as an equivalent one for the `regex` module."""
    pattern = _SURROGATE_PAIR.sub(
        lambda m: f"\\U{0x10000 + (int(m[1], 16) - 0xD800) * 0x400 + int(m[2], 16) - 0xDC00:08X}", pattern)
    out, in_class, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            name = pattern[i + 1]
            if name.lower() in _ASCII_CLASSES:
                chars = _ASCII_CLASSES[name.lower()]
                # A negated class inside [...] keeps Python's meaning (differs only for non-ASCII characters).
                out.append(chars if in_class and name.islower() else
                           pattern[i:i + 2] if in_class else f"[{'^' if name.isupper() else ''}{chars}]")
                i += 2
                continue
            if name == "p" and pattern[i + 2:i + 3] == "{":
                end = pattern.index("}", i)
                posix = _POSIX.get(pattern[i + 3:end])
                out.append(pattern[i:end + 1] if posix is None else posix if in_class else f"[{posix}]")
                i = end + 1
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char + ("^" if pattern[i + 1:i + 2] == "^" else ""))
            i += 1 + (pattern[i + 1:i + 2] == "^")
            if pattern[i:i + 1] == "]":  # a leading ] is literal
                out.append("\\]")
                i += 1
            continue
        if char == "]" and in_class:
            in_class = False
        out.append(_JAVA_DOT if char == "." and not in_class else char)
        i += 1
        if char in "$^" and not in_class and (quantifier := _QUANTIFIER.match(pattern, i)):
            i = quantifier.end()  # Java accepts a quantified anchor (`${1,128}`): it is the anchor
    return "".join(out)


@cache
def _compiled(pattern: str) -> regex.Pattern:
    return regex.compile(java_pattern(pattern))


@cache
def service_model():
    import botocore.session

    return botocore.session.get_session().get_service_model(SERVICE)


@cache
def operation_model(operation: str) -> OperationModel:
    """By API name (CreateTrainingJob) or boto3 method name (create_training_job)."""
    from botocore import xform_name

    model = service_model()
    names = {xform_name(name): name for name in model.operation_names}
    return model.operation_model(names.get(operation, operation))


class _Problems(ValidationErrors):
    """Each problem as 'path: what is wrong'."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def report(self, name, reason, **kwargs):
        path = name.lstrip(".") or "request"
        if reason == "missing required field":
            message = f"required parameter {kwargs['required_name']!r} is missing"
        elif reason == "unknown field":
            message = f"unknown parameter {kwargs['unknown_param']!r} (valid: {', '.join(kwargs['valid_names'])})"
        elif reason == "invalid type":
            message = (f"{kwargs['param']!r} is a {type(kwargs['param']).__name__}, "
                       f"valid types: {', '.join(kwargs['valid_types'])}")
        elif reason == "problem":
            message = kwargs["message"]
        else:
            message = f"{reason}: {', '.join(f'{k}={v!r}' for k, v in kwargs.items())}"
        self.problems.append(f"{path}: {message}")


class _ModelValidator(ParamValidator):
    """botocore's validator plus the model's enums, maxima and patterns."""

    @staticmethod
    def _bounds(size, shape: Shape, what: str, errors: _Problems, name: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and size < low:
            errors.report(name, "problem", message=f"{what} {size} is below the minimum {low}")
        if high is not None and size > high:
            errors.report(name, "problem", message=f"{what} {size} is over the maximum {high}")

    @type_check(valid_types=(str,))
    def _validate_string(self, param, shape, errors, name):
        self._bounds(len(param), shape, "length", errors, name)
        if shape.enum and param not in shape.enum:
            errors.report(name, "problem", message=f"{param!r} not one of {shape.enum}")
        pattern = shape.metadata.get("pattern")
        if pattern and _compiled(pattern).fullmatch(param) is None:
            errors.report(name, "problem", message=f"{_shorten(param)!r} does not match the pattern {pattern!r}")

    def _validate_list(self, param, shape, errors, name):
        if isinstance(param, (list, tuple)):
            self._bounds(len(param), shape, "list length", errors, name)
        super()._validate_list(param, shape, errors, name)

    def _validate_map(self, param, shape, errors, name):
        if isinstance(param, dict):
            self._bounds(len(param), shape, "number of entries", errors, name)
        super()._validate_map(param, shape, errors, name)

    @type_check(valid_types=(int,))
    def _validate_integer(self, param, shape, errors, name):
        self._bounds(param, shape, "value", errors, name)

    _validate_long = _validate_integer

    @type_check(valid_types=(float, int))
    def _validate_double(self, param, shape, errors, name):
        self._bounds(param, shape, "value", errors, name)

    _validate_float = _validate_double


def short_name(name: str, limit: int = NAME_MAX) -> str:
    """The name if it fits; else its start and a hash of the whole name, `limit` characters in all (two long names
    that differ only past the cut stay different)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:NAME_HASH]
    return f"{name[:limit - NAME_HASH - 1].rstrip('-')}-{digest}"


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def request_problems(operation: str, request: dict[str, Any]) -> list[str]:
    """What SageMaker would reject in `request` for `operation`, one 'parameter path: problem' each (empty: valid)."""
    errors = _Problems()
    _ModelValidator()._validate(request, operation_model(operation).input_shape, errors, "")
    return errors.problems


def checked(operation: str, request: dict[str, Any]) -> dict[str, Any]:
    """The request, unchanged, if SageMaker's model accepts it; SageMakerRequestError listing every problem if not."""
    problems = request_problems(operation, request)
    if problems:
        raise SageMakerRequestError(operation, problems)
    return request

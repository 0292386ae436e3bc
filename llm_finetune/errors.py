"""Errors a user can act on: each names the file, record and field at fault."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class RecordProblem:
    """One bad record: where it is and what is wrong with it."""

    path: str
    line: int | None  # 1-based line of a text file, or row / record number where lines do not apply
    field: str | None
    message: str
    unit: str = "line"  # "line" (JSON Lines, text), "row" (CSV, Parquet, saved datasets), "record" (JSON array)

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}, {self.unit} {self.line}"
        if self.field is not None:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class DataValidationError(ValueError):
    """Input data failed validation; raised before any expensive work starts."""

    MAX_LISTED = 20

    def __init__(self, problems: list[RecordProblem]):
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems[: self.MAX_LISTED])
        more = len(problems) - self.MAX_LISTED
        suffix = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(problems)} data problem(s):\n{listed}{suffix}")


class RecipeError(ValueError):
    """A recipe file or value is invalid."""


class ApprovalRequiredError(RuntimeError):
    """A model version without an approval was about to be deployed."""


class MergeError(RuntimeError):
    """A merged model does not compute what its base model plus adapter compute."""


class CostLimitError(RuntimeError):
    """A SageMaker job's cost estimate is above the recipe's max_cost_usd; nothing was launched."""


class SageMakerJobError(RuntimeError):
    """A SageMaker job ended Failed or Stopped; the message carries the job's FailureReason."""


class RegistryLookupError(RecipeError, LookupError):
    """A registered model, version or alias a recipe names does not exist."""


class TrackingUriError(RecipeError):
    """The MLflow tracking URI cannot be used here: a SageMaker managed MLflow ARN that is malformed, or without the
    sagemaker-mlflow plugin or AWS credentials to sign its requests."""


class ReleaseRolledBackError(RuntimeError):
    """A release step failed and what the release had changed was undone (aliases, endpoint, package status)."""


def one_line(error: BaseException, limit: int = 500) -> str:
    """`Type: message` on one line, short enough for a registry tag or a run's state message."""
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text}"[:limit]


def rollback_reason() -> str:
    """Why a rollback runs, read from the failure being handled: Prefect calls rollback hooks while it handles the
    failure that triggered them, and passes them only the transaction."""
    error = sys.exception()
    return one_line(error) if error is not None else "the release did not complete"


class SageMakerRequestError(RecipeError):
    """A SageMaker request the service would reject (enum, length, pattern, type); it was not sent."""

    MAX_LISTED = 20

    def __init__(self, operation: str, problems: list[str]):
        self.operation, self.problems = operation, problems
        listed = "\n".join(f"  - {p}" for p in problems[: self.MAX_LISTED])
        more = len(problems) - self.MAX_LISTED
        super().__init__(f"SageMaker would reject this {operation} request ({len(problems)} problem(s)); nothing "
                         f"was sent:\n{listed}" + (f"\n  ... and {more} more" if more > 0 else ""))

"""The `llmft` command: list the flows in prefect.yaml, run one on a recipe plus `key.sub=value` overrides.

    llmft list
    llmft run dialogsum-flan-t5 [--recipe FILE] [training.max_steps=20 approval.min_metrics.rougeL=0.1 ...]

prefect.yaml is the list of flows. A flow module (`flows/<use_case>.py`, importable as `flows.<use_case>`) defines
DEFAULT_RECIPE_PATH, and its flow takes `recipe: <pydantic recipe type>`; the CLI reads both from there, so a new
flow needs only its prefect.yaml entry. A flow's outcome model may set a `cli_exclude` ClassVar (a pydantic
`exclude` spec) to keep bulky fields out of the printed JSON. Every failure is one message and exit status 1; a
run's log, tracebacks included, is <work_dir>/logs/llmft-<flow>-<time>-<pid>.log.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import logging
import os
import sys
import time
import traceback
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect import Flow
from pydantic import BaseModel

from deployments.serve import PREFECT_YAML, deployment_specs
from llm_finetune.errors import DataValidationError, RecipeError
from llm_finetune.fingerprint import locked
from llm_finetune.recipes import load_recipe

USER_ERRORS = (RecipeError, DataValidationError)
LOG_DIR = "logs"  # under the recipe's work_dir: one file per `llmft run`, tracebacks included


class RunFailed(Exception):
    """A run failed for another reason than its recipe or data: one line, naming the log file with the traceback."""


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a traceback with every failed run; for a bad recipe or bad data the message says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], USER_ERRORS):
            record.exc_info = record.exc_text = None
        return True


_QUIET = _NoTracebackForUserErrors()


class _WithoutTraceback(logging.Formatter):
    """A console formatter that leaves the traceback out; the run's log file (and Prefect's API) keep it."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        kept = record.exc_info, record.exc_text
        record.exc_info = record.exc_text = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = kept


def failure_message(error: Exception) -> str:
    """One line: what failed and, where known, what to change. Our own errors are written for the user; others get
    their type."""
    from botocore.exceptions import NoCredentialsError

    from llm_finetune.aws import NO_CREDENTIALS

    if isinstance(error, NoCredentialsError):
        return NO_CREDENTIALS
    first = (str(error).strip().splitlines() or [""])[0]
    return first if type(error).__module__.startswith("llm_finetune.") else f"{type(error).__name__}: {first}"


@contextmanager
def run_log(path: Path) -> Iterator[None]:
    """Log records of the run also go to `path`, tracebacks included; the console gets none. A failure other than a
    bad recipe or bad data adds its traceback to the file and comes out as RunFailed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    consoles = {h: h.formatter for h in root.handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)}
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for handler, formatter in consoles.items():
        handler.setFormatter(_WithoutTraceback(formatter or logging.Formatter()))
    root.addHandler(to_file)
    try:
        yield
    except USER_ERRORS:
        raise
    except Exception as e:
        to_file.stream.write("".join(traceback.format_exception(e)))
        raise RunFailed(f"{failure_message(e)} (traceback: {_shown(path)})") from None
    finally:
        root.removeHandler(to_file)
        to_file.close()
        for handler, formatter in consoles.items():
            handler.setFormatter(formatter)


def run_log_path(work_dir: str, flow: str) -> Path:
    return Path(work_dir) / LOG_DIR / f"llmft-{flow}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@dataclass(frozen=True)
class FlowEntry:
    name: str
    description: str
    flow: Flow
    recipe_type: type[BaseModel]
    default_recipe: Path


def load_entry(spec: dict) -> FlowEntry:
    """Import a prefect.yaml deployment's flow; read its recipe type and default recipe file."""
    file, func = spec["entrypoint"].split(":")
    module = importlib.import_module(".".join(Path(file).with_suffix("").parts))
    flow = getattr(module, func)
    return FlowEntry(
        name=spec["name"],
        description=spec.get("description") or "",
        flow=flow,
        recipe_type=typing.get_type_hints(flow.fn)["recipe"],
        default_recipe=Path(module.DEFAULT_RECIPE_PATH),
    )


def unknown_flow(name: str, specs: list[dict]) -> str | None:
    """The error for a flow name prefect.yaml does not list; None when it is listed."""
    names = [spec["name"] for spec in specs]
    if name in names:
        return None
    close = difflib.get_close_matches(name, names, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown flow '{name}'; {guess}known flows: {', '.join(names)} (see `llmft list`)"


def outcome_json(outcome: object) -> str:
    if isinstance(outcome, BaseModel):
        return outcome.model_dump_json(indent=2, exclude=getattr(outcome, "cli_exclude", None))
    return json.dumps(outcome, indent=2, default=str)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def list_flows(specs: list[dict]) -> None:
    for entry in map(load_entry, specs):
        print(f"{entry.name}\n    {entry.description}\n    default recipe: {_shown(entry.default_recipe)}")


def start_temporary_api() -> None:
    """Without PREFECT_API_URL each run starts a temporary Prefect server on PREFECT_HOME's database; runs started at
    once would race to create that database, so start this process's server under a lock."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url is None and settings.server.ephemeral.enabled:
        with locked(Path(settings.home) / "temporary-server"):
            SubprocessASGIServer().start()


def run_flow(spec: dict, recipe_file: str | None, overrides: list[str]) -> None:
    entry = load_entry(spec)
    recipe = load_recipe(recipe_file or entry.default_recipe, entry.recipe_type, overrides)
    with run_log(run_log_path(recipe.work_dir, entry.name)):
        start_temporary_api()
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addFilter(_QUIET)
        print(outcome_json(entry.flow(recipe=recipe)))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="llmft", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every flow in prefect.yaml, its description and default recipe")
    run = commands.add_parser("run", help="run a flow on a recipe plus key.sub=value overrides")
    run.add_argument("flow", help="flow name, as in `llmft list`")
    run.add_argument("--recipe", help="YAML recipe (default: the flow's default recipe)")
    run.add_argument("overrides", nargs="*", metavar="key.sub=value",
                     help="recipe values; YAML: 20, 0.5, true, null, [a, b], {rougeL: 0.1}")
    return top


def main(argv: list[str] | None = None) -> int:
    """Exit status 0; 1 on any failure of the run: one message, the traceback (if any) in the run's log file; 2 on a
    bad command line."""
    cli = parser()
    # argparse gives a `*` positional only the words before an option; the words after --recipe come back as extra.
    args, extra = cli.parse_known_args(argv)
    if (args.command == "list" and extra) or any(word.startswith("-") for word in extra):
        cli.error(f"unrecognized arguments: {' '.join(extra)}")
    specs = deployment_specs(PREFECT_YAML)
    if args.command == "list":
        list_flows(specs)
        return 0
    if (problem := unknown_flow(args.flow, specs)) is not None:
        cli.error(problem)
    try:
        run_flow(next(s for s in specs if s["name"] == args.flow), args.recipe, [*args.overrides, *extra])
    except (*USER_ERRORS, RunFailed) as e:
        print(f"llmft: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `llmft` command: list the flows in prefect.yaml, run one on a recipe plus `key.sub=value` overrides.

    llmft list
    llmft run dialogsum-flan-t5 [--recipe FILE] [training.max_steps=20 approval.min_metrics.rougeL=0.1 ...]

prefect.yaml is the list of flows. A flow module (`flows/<use_case>.py`, importable as `flows.<use_case>`) defines
DEFAULT_RECIPE_PATH, and its flow takes `recipe: <pydantic recipe type>`; the CLI reads both from there, so a new
flow needs only its prefect.yaml entry. A flow's outcome model may set a `cli_exclude` ClassVar (a pydantic
`exclude` spec) to keep bulky fields out of the printed JSON.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import logging
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

from prefect import Flow
from pydantic import BaseModel

from deployments.serve import PREFECT_YAML, deployment_specs
from llm_finetune.errors import DataValidationError, RecipeError
from llm_finetune.fingerprint import locked
from llm_finetune.recipes import load_recipe

USER_ERRORS = (RecipeError, DataValidationError)


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a traceback with every failed run; for a bad recipe or bad data the message says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], USER_ERRORS):
            record.exc_info = record.exc_text = None
        return True


_QUIET = _NoTracebackForUserErrors()


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
    """Exit status 0; 1 on a bad recipe, override or data (one message, no traceback); 2 on a bad command line."""
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
    except USER_ERRORS as e:
        print(f"llmft: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Create (or update) a docker or kubernetes work pool from this project's job template, with the team's MLflow
server in every flow run's environment; then deploy to it (prefect.yaml's `definitions.work_pool.name`).

    PREFECT_API_URL=... python -m deployments.pools docker|kubernetes [--name POOL] [--tracking-uri URI] [--image IMG]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists

TEMPLATES = Path(__file__).resolve().parent / "work_pools"


def job_template(kind: str, tracking_uri: str | None = None, image: str | None = None) -> dict:
    """deployments/work_pools/<kind>.json with MLFLOW_TRACKING_URI added to the runs' environment, image replaced."""
    template = json.loads((TEMPLATES / f"{kind}.json").read_text())
    properties = template["variables"]["properties"]
    if tracking_uri:
        properties["env"]["default"] = {**properties["env"]["default"], "MLFLOW_TRACKING_URI": tracking_uri}
    if image:
        properties["image"]["default"] = image
    return template


async def create_or_update_pool(name: str, kind: str, template: dict) -> str:
    """'created' or 'updated'."""
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type=kind, base_job_template=template))
            return "created"
        except ObjectAlreadyExists:
            await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
            return "updated"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(p.stem for p in TEMPLATES.glob("*.json")))
    parser.add_argument("--name", help="Work pool name (default: llmft-<kind>)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="The team's MLflow server, as the containers reach it (default $MLFLOW_TRACKING_URI)")
    parser.add_argument("--image", help="Default image of the pool's runs (default llm-finetune-flows:cpu)")
    args = parser.parse_args(argv)
    name = args.name or f"llmft-{args.kind}"
    done = asyncio.run(create_or_update_pool(name, args.kind, job_template(args.kind, args.tracking_uri, args.image)))
    print(f"work pool {name} ({args.kind}) {done}; deploy to it: set definitions.work_pool.name in prefect.yaml "
          f"to {name}, then `prefect deploy --all`, and start `prefect worker start --pool {name}` where "
          f"{args.kind} runs")


if __name__ == "__main__":
    main()

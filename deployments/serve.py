"""Serve every deployment in prefect.yaml from this process (no work pool needed; needs a Prefect API).

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve
"""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import serve
from prefect.flows import load_flow_from_entrypoint

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict]:
    return yaml.safe_load(path.read_text())["deployments"]


def build_deployments(path: Path = PREFECT_YAML) -> list:
    root = path.parent
    deployments = []
    for spec in deployment_specs(path):
        file, func = spec["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{root / file}:{func}")
        schedules = spec.get("schedules") or []
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters") or {},
                cron=[s["cron"] for s in schedules if "cron" in s] or None,
            )
        )
    return deployments


if __name__ == "__main__":
    serve(*build_deployments())

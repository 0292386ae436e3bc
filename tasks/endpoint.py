"""Endpoint tasks: serve an approved registered version locally (SageMaker protocol), and stop it."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task

from llm_finetune.recipes import EndpointSpec
from llm_finetune.registry.mlflow_registry import RegisteredModelVersion, download_approved_model
from llm_finetune.serving.endpoint import EndpointHandle, start_local_endpoint, stop_local_endpoint


@task(name="deploy-local-endpoint")
def deploy_local_endpoint(
    version: RegisteredModelVersion, tracking_uri: str, spec: EndpointSpec, work_dir: str
) -> EndpointHandle:
    """Fetches the version from the registry (refused unless it is approved) and starts a server on it."""
    root = Path(work_dir) / "endpoints" / f"{version.name}-v{version.version}"
    model_dir = download_approved_model(tracking_uri, version.name, version.version, root / "model")
    log_path = root / f"server-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"  # one per run: runs may overlap
    handle = start_local_endpoint(model_dir, spec.host, spec.port, log_path, spec.startup_timeout_s,
                                  max_body_bytes=spec.max_body_bytes, server_args=(
                                      "--max-batch-size", str(spec.max_batch_size),
                                      "--max-batch-wait-ms", str(spec.max_batch_wait_ms)))
    get_run_logger().info("endpoint for %s v%s at %s", version.name, version.version, handle.url)
    return handle


@task(name="stop-local-endpoint")
def stop_endpoint(handle: EndpointHandle) -> None:
    stop_local_endpoint(handle)

"""Endpoint tasks: serve an approved registered version locally (SageMaker protocol) or on a SageMaker endpoint,
and stop / delete it."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task

from llm_finetune.aws import sagemaker_client
from llm_finetune.errors import ApprovalRequiredError
from llm_finetune.recipes import EndpointSpec, JumpStartSpec, SageMakerEndpointSpec
from llm_finetune.registry.mlflow_registry import RegisteredModelVersion, download_approved_model
from llm_finetune.serving.endpoint import EndpointHandle, start_local_endpoint, stop_local_endpoint
from llm_finetune.serving.sagemaker_endpoint import SageMakerEndpointHandle, delete_endpoint, deploy_model_package


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


@task(name="deploy-sagemaker-endpoint", retries=2, retry_delay_seconds=[10, 30])
def deploy_sagemaker_endpoint(version: RegisteredModelVersion, spec: SageMakerEndpointSpec,
                              jumpstart: JumpStartSpec | None = None) -> SageMakerEndpointHandle:
    """Serve the version's model package on a SageMaker endpoint (refused unless the package is Approved), in
    JumpStart's inference container when the recipe sets sagemaker.jumpstart; an endpoint of the same name already up
    is updated in place. Waits until it is InService."""
    if version.model_package_arn is None:
        raise ApprovalRequiredError(f"'{version.name}' version {version.version} has no SageMaker model package: "
                                    "set registry.sagemaker to deploy to SageMaker")
    handle = deploy_model_package(sagemaker_client(), version.model_package_arn, spec,
                                  endpoint_name=spec.endpoint_name or version.name, version=version.version,
                                  jumpstart=jumpstart)
    get_run_logger().info("SageMaker endpoint %s %s to %s (model package %s)", handle.endpoint_name,
                          "updated" if handle.updated else "serving", handle.model_name, handle.model_package_arn)
    return handle


@task(name="stop-endpoint")
def stop_endpoint(handle: EndpointHandle | SageMakerEndpointHandle) -> None:
    """Stop a local endpoint's process, or delete a SageMaker endpoint with its config and model."""
    if isinstance(handle, SageMakerEndpointHandle):
        delete_endpoint(sagemaker_client(), handle)
    else:
        stop_local_endpoint(handle)

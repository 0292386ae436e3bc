"""Endpoint tasks: serve an approved registered version locally (SageMaker protocol) or on a SageMaker endpoint,
and stop / delete it. Inside a transaction (the release flow's), a rolled-back deploy is undone: the local endpoint
stopped, the SageMaker endpoint switched back to the config it served before (deleted if the deploy created it); the
replaced config is deleted only when the transaction commits."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.transactions import Transaction, get_transaction

from llm_finetune.aws import sagemaker_client
from llm_finetune.backends.sagemaker_endpoint import (
    SageMakerEndpointHandle,
    delete_config_and_models,
    delete_endpoint,
    deploy_model_package,
    endpoint_config,
    undo_deploy,
)
from llm_finetune.errors import ApprovalRequiredError
from llm_finetune.recipes import EndpointSpec, JumpStartSpec, SageMakerEndpointSpec
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
                                      "--max-batch-wait-ms", str(spec.max_batch_wait_ms),
                                      "--scheduler", spec.scheduler))
    get_run_logger().info("endpoint for %s v%s at %s", version.name, version.version, handle.url)
    get_transaction().set("handle", handle)
    return handle


@deploy_local_endpoint.on_rollback
def _stop_rolled_back_local_endpoint(txn: Transaction) -> None:
    stop_local_endpoint(txn.get("handle"))


# No Prefect retries: inside the release transaction a failed attempt rolls the whole release back at once (Prefect
# 3.8), and a retry would then go on with an undone release. botocore retries throttling and transient errors.
@task(name="deploy-sagemaker-endpoint")
def deploy_sagemaker_endpoint(version: RegisteredModelVersion, spec: SageMakerEndpointSpec,
                              jumpstart: JumpStartSpec | None = None) -> SageMakerEndpointHandle:
    """Serve the version's model package on a SageMaker endpoint (refused unless the package is Approved), in
    JumpStart's inference container when the recipe sets sagemaker.jumpstart; an endpoint of the same name already up
    is updated in place. Waits until it is InService; one that does not get there is put back as it was."""
    if version.model_package_arn is None:
        raise ApprovalRequiredError(f"'{version.name}' version {version.version} has no SageMaker model package: "
                                    "set registry.sagemaker to deploy to SageMaker")
    sm = sagemaker_client()
    endpoint_name = spec.endpoint_name or version.name
    previous_config = endpoint_config(sm, endpoint_name)
    handle = deploy_model_package(sm, version.model_package_arn, spec, endpoint_name=endpoint_name,
                                  version=version.version, jumpstart=jumpstart, retire_previous=False)
    get_run_logger().info("SageMaker endpoint %s %s to %s (model package %s)", handle.endpoint_name,
                          "updated" if handle.updated else "serving", handle.model_name, handle.model_package_arn)
    txn = get_transaction()
    txn.set("handle", handle)
    txn.set("spec", spec)
    txn.set("previous_config", previous_config)
    return handle


@deploy_sagemaker_endpoint.on_commit
def _retire_replaced_config(txn: Transaction) -> None:
    handle, previous_config = txn.get("handle"), txn.get("previous_config")
    if previous_config not in (None, handle.endpoint_config_name):
        delete_config_and_models(sagemaker_client(), previous_config)


@deploy_sagemaker_endpoint.on_rollback
def _switch_back_rolled_back_endpoint(txn: Transaction) -> None:
    handle = txn.get("handle")
    undo_deploy(sagemaker_client(), txn.get("spec"), endpoint_name=handle.endpoint_name,
                config_name=handle.endpoint_config_name, previous_config=txn.get("previous_config"))


@task(name="stop-endpoint")
def stop_endpoint(handle: EndpointHandle | SageMakerEndpointHandle) -> None:
    """Stop a local endpoint's process, or delete a SageMaker endpoint with its config and model."""
    if isinstance(handle, SageMakerEndpointHandle):
        delete_endpoint(sagemaker_client(), handle)
    else:
        stop_local_endpoint(handle)

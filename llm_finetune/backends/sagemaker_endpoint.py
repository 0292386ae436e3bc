"""SageMaker real-time endpoints for approved model packages: deploy (or update in place), wait, invoke, delete.

One endpoint per recipe (`endpoint.sagemaker.endpoint_name`): the first champion creates it, a later one switches it
to a new endpoint config with `UpdateEndpoint` (no second endpoint, no downtime), and the old config and model are
deleted once the endpoint is back InService.

With a JumpStart spec (recipe `sagemaker.jumpstart`) the model is not the package itself but JumpStart's inference
container (image and environment) on the approved package's model.tar.gz, built by llm_finetune.backends.jumpstart.model_request
(the EULA accepted on the weights for a gated model); the package must still be Approved. Model and config are named `<endpoint>-v<mlflow version>`, so a re-run
of the same version finds them and changes nothing.

The handle records which container serves the model (`endpoint.sagemaker.container`, else read from the image) and
its HF_TASK, so the endpoint test speaks that container's dialect (llm_finetune.containers).
"""

from __future__ import annotations

import re
import time

from botocore.exceptions import ClientError
from pydantic import BaseModel

from llm_finetune.backends.jumpstart import model_request as jumpstart_model_request
from llm_finetune.backends.model_packages import require_approved_package
from llm_finetune.backends.service_model import checked, short_name
from llm_finetune.containers import DIALECTS, Dialect, SageMakerContainer, container_for_image
from llm_finetune.errors import RecipeError
from llm_finetune.recipes import JumpStartSpec, SageMakerEndpointSpec
from llm_finetune.serving.client import HttpInferenceClient, InferenceClient, SageMakerInferenceClient
from llm_finetune.serving.endpoint import EndpointError, EndpointHandle

FAILED_STATES = ("Failed", "OutOfService", "RollingBack", "Deleting")
TRANSITIONAL_STATES = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


class SageMakerEndpointHandle(BaseModel):
    endpoint_name: str
    endpoint_arn: str
    endpoint_config_name: str
    model_name: str
    model_package_arn: str
    updated: bool = False  # an endpoint that already existed was switched to this model with UpdateEndpoint
    container: SageMakerContainer = "hf-dlc"  # what serves the model: its request and answer formats
    task: str | None = None  # the container's HF_TASK, when it has one (the HF DLC answers in that pipeline's format)

    @property
    def url(self) -> str:
        return self.endpoint_arn


def resource_name(*parts: str) -> str:
    """A valid SageMaker name ([a-zA-Z0-9-], at most 63 characters) from the given parts; a longer one is cut and
    ends in a hash of the whole (so `<long endpoint>-v3` and `-v4` stay two names)."""
    name = re.sub(r"[^a-zA-Z0-9-]+", "-", "-".join(parts)).strip("-")
    return short_name(re.sub(r"-{2,}", "-", name))


def _missing(e: ClientError) -> bool:
    return e.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound") and (
        "Could not find" in e.response["Error"]["Message"] or "does not exist" in e.response["Error"]["Message"])


def _describe(call, **kwargs) -> dict | None:
    try:
        return call(**kwargs)
    except ClientError as e:
        if _missing(e):
            return None
        raise


def wait_in_service(sm, endpoint_name: str, timeout_s: float, poll_interval_s: float) -> dict:
    """Poll until InService; EndpointError with SageMaker's FailureReason if it fails, or on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = sm.describe_endpoint(EndpointName=endpoint_name)
        status = described["EndpointStatus"]
        if status == "InService":
            return described
        if status in FAILED_STATES:
            raise EndpointError(f"SageMaker endpoint {endpoint_name} is {status}: "
                                f"{described.get('FailureReason', 'no reason given')}")
        if time.monotonic() + poll_interval_s > deadline:
            raise EndpointError(f"SageMaker endpoint {endpoint_name} still {status} after {timeout_s:.0f}s")
        time.sleep(poll_interval_s)


def model_request(package: dict, spec: SageMakerEndpointSpec, name: str, jumpstart: JumpStartSpec | None) -> dict:
    """CreateModel arguments: the package as it is, or JumpStart's inference container on the package's model."""
    if spec.role_arn is None:
        raise RecipeError("endpoint.sagemaker.role_arn: no execution role for the SageMaker model (set it, or "
                          "sagemaker.role_arn)")
    if jumpstart is not None:
        model_data = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        return jumpstart_model_request(jumpstart, model_name=name, role_arn=spec.role_arn, model_data_uri=model_data)
    return {"ModelName": name, "ExecutionRoleArn": spec.role_arn,
            "PrimaryContainer": {"ModelPackageName": package["ModelPackageArn"]}}


def endpoint_config_request(spec: SageMakerEndpointSpec, name: str) -> dict:
    """CreateEndpointConfig arguments: one variant serving the model of the same name."""
    return {"EndpointConfigName": name, "ProductionVariants": [{
        "VariantName": spec.variant_name, "ModelName": name, "InstanceType": spec.instance_type,
        "InitialInstanceCount": spec.initial_instance_count, "InitialVariantWeight": 1.0}]}


def deploy_model_package(
    sm, package_arn: str, spec: SageMakerEndpointSpec, *, endpoint_name: str, version: str,
    jumpstart: JumpStartSpec | None = None, retire_previous: bool = True,
) -> SageMakerEndpointHandle:
    """Serve an Approved model package (ApprovalRequiredError otherwise, before anything is created); with a
    JumpStart spec, in JumpStart's inference container. An endpoint that does not come InService is put back as it
    was before the error is raised. `retire_previous=False` keeps the replaced config and model (to switch back)."""
    package = require_approved_package(sm, package_arn)
    served = package["InferenceSpecification"]["Containers"][0]
    image = jumpstart.inference_image_uri if jumpstart else served["Image"]
    environment = jumpstart.inference_environment if jumpstart else served.get("Environment", {})
    container = spec.container or container_for_image(image)  # before anything is created
    name = resource_name(endpoint_name, f"v{version}")
    if _describe(sm.describe_model, ModelName=name) is None:
        sm.create_model(**checked("CreateModel", model_request(package, spec, name, jumpstart)))
    if _describe(sm.describe_endpoint_config, EndpointConfigName=name) is None:
        sm.create_endpoint_config(**checked("CreateEndpointConfig", endpoint_config_request(spec, name)))
    existing = _describe(sm.describe_endpoint, EndpointName=endpoint_name)
    previous_config = existing["EndpointConfigName"] if existing else None
    if existing is None:
        sm.create_endpoint(**checked("CreateEndpoint", {"EndpointName": endpoint_name, "EndpointConfigName": name}))
    elif previous_config != name:  # a new champion: switch the running endpoint over, in place
        sm.update_endpoint(**checked("UpdateEndpoint", {"EndpointName": endpoint_name, "EndpointConfigName": name}))
    try:
        described = wait_in_service(sm, endpoint_name, spec.wait_timeout_s, spec.poll_interval_s)
    except EndpointError:
        undo_deploy(sm, spec, endpoint_name=endpoint_name, config_name=name, previous_config=previous_config)
        raise
    if retire_previous and previous_config not in (None, name):
        delete_config_and_models(sm, previous_config)
    return SageMakerEndpointHandle(endpoint_name=endpoint_name, endpoint_arn=described["EndpointArn"],
                                   endpoint_config_name=name, model_name=name, model_package_arn=package_arn,
                                   updated=previous_config not in (None, name), container=container,
                                   task=environment.get("HF_TASK"))


def endpoint_config(sm, endpoint_name: str) -> str | None:
    """The endpoint config an endpoint serves; None when there is no such endpoint."""
    described = _describe(sm.describe_endpoint, EndpointName=endpoint_name)
    return described["EndpointConfigName"] if described else None


def undo_deploy(sm, spec: SageMakerEndpointSpec, *, endpoint_name: str, config_name: str,
                previous_config: str | None) -> None:
    """Undo a deploy of `config_name`: the endpoint serves `previous_config` again, or is deleted when the deploy
    created it (None); the deploy's config and model are deleted. A deploy that changed nothing is left alone."""
    if previous_config == config_name:
        return
    if previous_config is None:
        _delete(sm.delete_endpoint, EndpointName=endpoint_name)
    else:
        restore_endpoint_config(sm, spec, endpoint_name=endpoint_name, config_name=previous_config)
    delete_config_and_models(sm, config_name)


def restore_endpoint_config(sm, spec: SageMakerEndpointSpec, *, endpoint_name: str, config_name: str) -> None:
    """Serve `config_name` on the endpoint again and wait until it is InService: UpdateEndpoint back to it, or, for a
    Failed endpoint (SageMaker only lets one be deleted), delete and create it again on that config."""
    described = _settled(sm, endpoint_name, spec)
    if described is not None and described["EndpointStatus"] == "Failed":
        _delete(sm.delete_endpoint, EndpointName=endpoint_name)
        described = _settled(sm, endpoint_name, spec)
    request = {"EndpointName": endpoint_name, "EndpointConfigName": config_name}
    if described is None:
        sm.create_endpoint(**checked("CreateEndpoint", request))
    elif described["EndpointConfigName"] != config_name:
        sm.update_endpoint(**checked("UpdateEndpoint", request))
    wait_in_service(sm, endpoint_name, spec.wait_timeout_s, spec.poll_interval_s)


def _settled(sm, endpoint_name: str, spec: SageMakerEndpointSpec) -> dict | None:
    """The endpoint once no create, update or delete is under way on it (None when it does not exist)."""
    deadline = time.monotonic() + spec.wait_timeout_s
    while True:
        described = _describe(sm.describe_endpoint, EndpointName=endpoint_name)
        if described is None or described["EndpointStatus"] not in TRANSITIONAL_STATES:
            return described
        if time.monotonic() + spec.poll_interval_s > deadline:
            raise EndpointError(f"SageMaker endpoint {endpoint_name} still {described['EndpointStatus']} after "
                                f"{spec.wait_timeout_s:.0f}s")
        time.sleep(spec.poll_interval_s)


def _delete(call, **kwargs) -> None:
    try:
        call(**kwargs)
    except ClientError as e:
        if not _missing(e):
            raise


def delete_config_and_models(sm, config_name: str) -> None:
    config = _describe(sm.describe_endpoint_config, EndpointConfigName=config_name)
    if config is None:
        return
    sm.delete_endpoint_config(EndpointConfigName=config_name)
    for variant in config["ProductionVariants"]:
        _delete(sm.delete_model, ModelName=variant["ModelName"])


def delete_endpoint(sm, handle: SageMakerEndpointHandle) -> None:
    """Delete the endpoint, its config and model; what is already gone is skipped."""
    _delete(sm.delete_endpoint, EndpointName=handle.endpoint_name)
    delete_config_and_models(sm, handle.endpoint_config_name)


def client_for(handle: EndpointHandle | SageMakerEndpointHandle) -> InferenceClient:
    """One client for local and SageMaker endpoints: the endpoint test does not know which it talks to."""
    if isinstance(handle, SageMakerEndpointHandle):
        return SageMakerInferenceClient(handle.endpoint_name)
    return HttpInferenceClient(handle.url)


def dialect_for(handle: EndpointHandle | SageMakerEndpointHandle, kind: str) -> tuple[Dialect, str]:
    """The serving container's dialect and the task it answers as: HF_TASK where the container has one, else the
    served kind (a local endpoint is the project's own server)."""
    if isinstance(handle, SageMakerEndpointHandle):
        return DIALECTS[handle.container], handle.task or kind
    return DIALECTS["local"], kind

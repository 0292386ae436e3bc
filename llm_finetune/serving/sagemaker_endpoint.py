"""SageMaker real-time endpoints for approved model packages: deploy (or update in place), wait, invoke, delete.

One endpoint per recipe (`endpoint.sagemaker.endpoint_name`): the first champion creates it, a later one switches it
to a new endpoint config with `UpdateEndpoint` (no second endpoint, no downtime), and the old config and model are
deleted once the endpoint is back InService.

With a JumpStart spec (recipe `sagemaker.jumpstart`) the model is not the package itself but JumpStart's inference
container (image and environment) on the approved package's model.tar.gz, built by llm_finetune.jumpstart.model_request
(the EULA accepted on the weights for a gated model); the package must still be Approved. Model and config are named `<endpoint>-v<mlflow version>`, so a re-run
of the same version finds them and changes nothing.
"""

from __future__ import annotations

import re
import time

from botocore.exceptions import ClientError
from pydantic import BaseModel

from llm_finetune.backends.service_model import checked, short_name
from llm_finetune.errors import RecipeError
from llm_finetune.recipes import JumpStartSpec, SageMakerEndpointSpec
from llm_finetune.registry.model_packages import require_approved_package
from llm_finetune.serving.client import HttpInferenceClient, InferenceClient, SageMakerInferenceClient
from llm_finetune.serving.endpoint import EndpointError, EndpointHandle

FAILED_STATES = ("Failed", "OutOfService", "RollingBack", "Deleting")


class SageMakerEndpointHandle(BaseModel):
    endpoint_name: str
    endpoint_arn: str
    endpoint_config_name: str
    model_name: str
    model_package_arn: str
    updated: bool = False  # an endpoint that already existed was switched to this model with UpdateEndpoint

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
        from llm_finetune.jumpstart import model_request as jumpstart_model_request

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
    jumpstart: JumpStartSpec | None = None,
) -> SageMakerEndpointHandle:
    """Serve an Approved model package (ApprovalRequiredError otherwise, before anything is created); with a
    JumpStart spec, in JumpStart's inference container."""
    package = require_approved_package(sm, package_arn)
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
    described = wait_in_service(sm, endpoint_name, spec.wait_timeout_s, spec.poll_interval_s)
    if previous_config not in (None, name):
        _delete_config_and_models(sm, previous_config)
    return SageMakerEndpointHandle(endpoint_name=endpoint_name, endpoint_arn=described["EndpointArn"],
                                   endpoint_config_name=name, model_name=name, model_package_arn=package_arn,
                                   updated=previous_config not in (None, name))


def _delete_config_and_models(sm, config_name: str) -> None:
    config = _describe(sm.describe_endpoint_config, EndpointConfigName=config_name)
    if config is None:
        return
    sm.delete_endpoint_config(EndpointConfigName=config_name)
    for variant in config["ProductionVariants"]:
        try:
            sm.delete_model(ModelName=variant["ModelName"])
        except ClientError as e:
            if not _missing(e):
                raise


def delete_endpoint(sm, handle: SageMakerEndpointHandle) -> None:
    """Delete the endpoint, its config and model; what is already gone is skipped."""
    try:
        sm.delete_endpoint(EndpointName=handle.endpoint_name)
    except ClientError as e:
        if not _missing(e):
            raise
    _delete_config_and_models(sm, handle.endpoint_config_name)


def client_for(handle: EndpointHandle | SageMakerEndpointHandle) -> InferenceClient:
    """One client for local and SageMaker endpoints: the endpoint test does not know which it talks to."""
    if isinstance(handle, SageMakerEndpointHandle):
        return SageMakerInferenceClient(handle.endpoint_name)
    return HttpInferenceClient(handle.url)

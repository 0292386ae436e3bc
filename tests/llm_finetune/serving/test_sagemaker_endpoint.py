"""SageMaker endpoints for approved model packages, against moto with its hosting and UpdateEndpoint gaps filled
(tests/sagemaker_stand_in.py: the endpoint serves the package's model.tar.gz with the product's own server)."""

import pytest
from botocore.exceptions import ClientError

from llm_finetune.approval import ApprovalDecision
from llm_finetune.aws import s3_client, sagemaker_client
from llm_finetune.generation import GenerationParams
from llm_finetune.registry.model_packages import record_package_decision, register_model_package
from llm_finetune.serving.endpoint import EndpointError
from llm_finetune.serving.kinds import load_text_model
from llm_finetune.serving.sagemaker_endpoint import client_for, delete_endpoint, deploy_model_package
from tests.sagemaker_helpers import endpoint_spec, package_spec

DIALOGUE = "#Person1#: Did you call the plumber?\n#Person2#: Yes, he comes tomorrow at nine."
PARAMS = GenerationParams(max_new_tokens=12)


def approved_package(moto_endpoint, spec, model_dir, version):
    sm = sagemaker_client(moto_endpoint)
    package = register_model_package(sm, s3_client(moto_endpoint), spec, mlflow_name="summarizer",
                                     mlflow_version=version, model_source=model_dir,
                                     training_fingerprint=f"fp-{version}", metrics={"rougeL": 0.1})
    record_package_decision(sm, package.arn, ApprovalDecision(approved=True, reviewer="ana", reason="ok",
                                                              automatic=False))
    return package


def test_champion_served_then_replaced_in_place_then_deleted(moto_endpoint, sagemaker_stand_in, trained_tiny_model):
    sm = sagemaker_client()  # through AWS_ENDPOINT_URL, as the product's tasks reach it
    spec = package_spec(moto_endpoint)
    endpoint = endpoint_spec()
    first = approved_package(moto_endpoint, spec, trained_tiny_model["finetuned"], "1")

    handle = deploy_model_package(sm, first.arn, endpoint, endpoint_name=endpoint.endpoint_name, version="1")
    assert not handle.updated and handle.model_package_arn == first.arn
    assert sm.describe_endpoint(EndpointName=endpoint.endpoint_name)["EndpointStatus"] == "InService"
    model = sm.describe_model(ModelName=handle.model_name)
    assert model["PrimaryContainer"]["ModelPackageName"] == first.arn
    variant = sm.describe_endpoint_config(EndpointConfigName=handle.endpoint_config_name)["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"]) == (handle.model_name, "ml.g4dn.xlarge")

    payload = {"inputs": DIALOGUE, "parameters": PARAMS.model_dump()}
    expected = load_text_model(trained_tiny_model["finetuned"]).generate([DIALOGUE], PARAMS)[0]
    assert client_for(handle).invoke(payload) == [{"summary_text": expected}]  # the package's model answers
    with pytest.raises(EndpointError, match="ModelError.*max_new_tokens"):  # the container's 400 comes through
        client_for(handle).invoke({"inputs": DIALOGUE, "parameters": {"max_new_tokens": 0}})

    again = deploy_model_package(sm, first.arn, endpoint, endpoint_name=endpoint.endpoint_name, version="1")
    assert again == handle  # a re-run of the same version changes nothing

    # A new champion (here: a different model) switches the same endpoint over with UpdateEndpoint.
    second = approved_package(moto_endpoint, spec, trained_tiny_model["base"], "2")
    updated = deploy_model_package(sm, second.arn, endpoint, endpoint_name=endpoint.endpoint_name, version="2")
    assert updated.updated and updated.endpoint_arn == handle.endpoint_arn
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]].count(endpoint.endpoint_name) == 1
    assert sm.describe_endpoint(EndpointName=endpoint.endpoint_name)["EndpointConfigName"] == updated.endpoint_config_name
    expected = load_text_model(trained_tiny_model["base"]).generate([DIALOGUE], PARAMS)[0]
    assert client_for(updated).invoke(payload) == [{"summary_text": expected}]
    for call, key in ((sm.describe_endpoint_config, "EndpointConfigName"), (sm.describe_model, "ModelName")):
        with pytest.raises(ClientError, match="Could not find"):  # the replaced config and model are gone
            call(**{key: handle.endpoint_config_name})

    delete_endpoint(sm, updated)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=endpoint.endpoint_name)
    with pytest.raises(ClientError, match="Could not find"):
        sm.describe_model(ModelName=updated.model_name)
    delete_endpoint(sm, updated)  # deleting twice is fine


def test_jumpstart_deploy_serves_the_approved_package_in_jumpstarts_container(moto_endpoint):
    """sagemaker.jumpstart set: the model is JumpStart's inference image on the package's model.tar.gz (EULA accepted
    for the gated Llama 2); an unapproved package is still refused before anything is created."""
    from llm_finetune.errors import ApprovalRequiredError
    from tests.sagemaker_helpers import jumpstart_llama, unique

    sm = sagemaker_client(moto_endpoint)
    jumpstart, spec = jumpstart_llama(), package_spec(moto_endpoint)
    model_data = f"{spec.s3_prefix}/fp-js/model.tar.gz"  # a model trained on SageMaker: used as it is
    package = register_model_package(sm, s3_client(moto_endpoint), spec, mlflow_name="dolly", mlflow_version="1",
                                     model_source=model_data, training_fingerprint="fp-js", metrics={"rougeL": 0.2})
    name = unique("dolly-js")
    with pytest.raises(ApprovalRequiredError, match="PendingManualApproval"):
        deploy_model_package(sm, package.arn, endpoint_spec(name), endpoint_name=name, version="1",
                             jumpstart=jumpstart)
    with pytest.raises(ClientError):
        sm.describe_model(ModelName=f"{name}-v1")
    record_package_decision(sm, package.arn, ApprovalDecision(approved=True, reviewer="ana", reason="ok",
                                                              automatic=False))

    handle = deploy_model_package(sm, package.arn, endpoint_spec(name), endpoint_name=name, version="1",
                                  jumpstart=jumpstart)
    model = sm.describe_model(ModelName=handle.model_name)
    container = model["PrimaryContainer"]
    assert container["Image"] == jumpstart.inference_image_uri
    assert container["Environment"] == jumpstart.inference_environment
    assert container["ModelDataSource"]["S3DataSource"] == {
        "S3Uri": model_data, "S3DataType": "S3Object", "CompressionType": "Gzip",
        "ModelAccessConfig": {"AcceptEula": True}}
    assert model["ExecutionRoleArn"] == endpoint_spec().role_arn  # (moto does not keep EnableNetworkIsolation)
    delete_endpoint(sm, handle)

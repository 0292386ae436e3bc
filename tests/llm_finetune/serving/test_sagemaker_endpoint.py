"""SageMaker endpoints for approved model packages, against moto with its hosting and UpdateEndpoint gaps filled
(tests/sagemaker_stand_in.py: the endpoint serves the package's model.tar.gz in a double of the container its image
runs, with that container's formats and parameter checks)."""

import pytest
from botocore.exceptions import ClientError

from llm_finetune.approval import ApprovalDecision
from llm_finetune.aws import s3_client, sagemaker_client
from llm_finetune.backends.model_packages import record_package_decision, register_model_package
from llm_finetune.backends.sagemaker_endpoint import client_for, delete_endpoint, deploy_model_package, dialect_for
from llm_finetune.containers import DIALECTS
from llm_finetune.generation import GenerationParams
from llm_finetune.inference.summarizer import Summarizer
from llm_finetune.serving.endpoint import EndpointError
from tests.sagemaker_helpers import TGI_INFERENCE_IMAGE, endpoint_spec, package_spec

DIALOGUE = "#Person1#: Did you call the plumber?\n#Person2#: Yes, he comes tomorrow at nine."
PARAMS = GenerationParams(max_new_tokens=12)
OLD_REQUEST = {"inputs": DIALOGUE, "parameters": PARAMS.model_dump()}  # every setting: stop [], top_p 1.0, ...


def container_answer(model_dir) -> str:
    """What a container answers for DIALOGUE with PARAMS: the model on the text as sent (a container applies no
    prompt template), through the project's own generate."""
    return Summarizer(model_dir, prompt_template="{dialogue}").summarize([DIALOGUE], PARAMS)[0]


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

    # The package's HF DLC runs the text2text-generation pipeline (HF_TASK): it answers generated_text.
    assert (handle.container, handle.task) == ("hf-dlc", "text2text-generation")
    dialect, task = dialect_for(handle, "text2text-generation")
    payload = dialect.request(task, DIALOGUE, PARAMS)
    expected = container_answer(trained_tiny_model["finetuned"])
    assert client_for(handle).invoke(payload) == [{"generated_text": expected}]  # the package's model answers
    with pytest.raises(EndpointError, match="ModelError.*max_new_tokens"):  # the container's 400 comes through
        client_for(handle).invoke({"inputs": DIALOGUE, "parameters": {"max_new_tokens": 0}})
    with pytest.raises(EndpointError, match=r"ModelError.*\(400\).*model_kwargs.*not used.*\['stop'\]"):
        client_for(handle).invoke(OLD_REQUEST)  # transformers refuses the unused `stop` kwarg

    again = deploy_model_package(sm, first.arn, endpoint, endpoint_name=endpoint.endpoint_name, version="1")
    assert again == handle  # a re-run of the same version changes nothing

    # A new champion (here: a different model) switches the same endpoint over with UpdateEndpoint.
    second = approved_package(moto_endpoint, spec, trained_tiny_model["base"], "2")
    updated = deploy_model_package(sm, second.arn, endpoint, endpoint_name=endpoint.endpoint_name, version="2")
    assert updated.updated and updated.endpoint_arn == handle.endpoint_arn
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]].count(endpoint.endpoint_name) == 1
    assert sm.describe_endpoint(EndpointName=endpoint.endpoint_name)["EndpointConfigName"] == updated.endpoint_config_name
    assert client_for(updated).invoke(payload) == [{"generated_text": container_answer(trained_tiny_model["base"])}]
    for call, key in ((sm.describe_endpoint_config, "EndpointConfigName"), (sm.describe_model, "ModelName")):
        with pytest.raises(ClientError, match="Could not find"):  # the replaced config and model are gone
            call(**{key: handle.endpoint_config_name})

    delete_endpoint(sm, updated)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=endpoint.endpoint_name)
    with pytest.raises(ClientError, match="Could not find"):
        sm.describe_model(ModelName=updated.model_name)
    delete_endpoint(sm, updated)  # deleting twice is fine


def test_tgi_container_gets_only_set_parameters_in_its_ranges(moto_endpoint, sagemaker_stand_in, trained_tiny_model):
    """A package in the TGI image (TGI serves T5 too): the request leaves out what TGI refuses, the answer is TGI's."""
    sm = sagemaker_client()
    spec = package_spec(moto_endpoint).model_copy(update={"image_uri": TGI_INFERENCE_IMAGE})
    package = approved_package(moto_endpoint, spec, trained_tiny_model["finetuned"], "1")
    endpoint = endpoint_spec()
    handle = deploy_model_package(sm, package.arn, endpoint, endpoint_name=endpoint.endpoint_name, version="1")
    assert handle.container == "tgi"
    dialect, task = dialect_for(handle, "text2text-generation")
    answer = client_for(handle).invoke(dialect.request(task, DIALOGUE, PARAMS))
    assert answer == [{"generated_text": container_answer(trained_tiny_model["finetuned"])}]
    assert dialect.answer_text(task, answer) == answer[0]["generated_text"]
    with pytest.raises(EndpointError, match=r"ModelError.*\(422\).*`top_p` must be > 0.0 and < 1.0"):
        client_for(handle).invoke(OLD_REQUEST)
    sampled = DIALECTS["tgi"].request(task, DIALOGUE, GenerationParams(max_new_tokens=12, do_sample=True, top_p=0.9,
                                                                        seed=7))
    assert client_for(handle).invoke(sampled) == client_for(handle).invoke(sampled)  # seeded: the same answer
    delete_endpoint(sm, handle)


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

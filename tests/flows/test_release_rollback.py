"""A release step that fails undoes the release: each step is made to fail in turn (a local endpoint that cannot
start, a SageMaker endpoint that goes Failed, an endpoint test the endpoint refuses), then a re-run releases the same
version. Local endpoints and moto + stand-in SageMaker, real registry."""

import socket

import mlflow
import pytest
from botocore.exceptions import ClientError
from prefect import Task

import flows.release
from llm_finetune.aws import s3_client, sagemaker_client
from llm_finetune.backends.model_packages import MODEL_ARCHIVE, split_s3_uri
from llm_finetune.backends.sagemaker_endpoint import client_for, resource_name
from llm_finetune.errors import ReleaseRolledBackError
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.registry.mlflow_registry import alias_version
from llm_finetune.serving.client import HttpInferenceClient
from tests.conftest import free_port, small_recipe
from tests.release_helpers import GATE_PASSES, base_as_trained, release, sagemaker_recipe
from tests.sagemaker_helpers import unique

PREVIOUS = "approval.previous_alias=previous-champion"
# a question-answering case sent to a text2text container: its pipeline refuses it (400)
WRONG_SHAPE = [EndpointTestCase(id="wrong-shape", inputs={"question": "Who?", "context": "Nobody."}, reference="-")]


pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def aliases(recipe) -> dict[str, str | None]:
    name = recipe.registry.model_name
    return {a: alias_version(recipe.tracking_uri(), name, a) for a in ("champion", "previous-champion")}


def tags(recipe, version: str) -> dict[str, str]:
    return mlflow.MlflowClient(recipe.tracking_uri()).get_model_version(recipe.registry.model_name, version).tags


def assert_rolled_back(recipe, version: str, reason: str) -> None:
    """Kept, still approved, tagged rolled back with the reason."""
    kept = tags(recipe, version)
    assert kept["approval_status"] == "approved" and kept["release_status"] == "rolled_back"
    assert kept["release_reason"].startswith(reason), kept["release_reason"]


def test_local_release_undone_when_deploy_or_endpoint_test_fails_and_released_on_rerun(tmp_path, trained_tiny_model):
    port = free_port()
    recipe = small_recipe(tmp_path, f"registry.model_name={unique('local')}", PREVIOUS, *GATE_PASSES,
                          f"endpoint.port={port}")
    second = base_as_trained(trained_tiny_model, "second-model")

    with socket.create_server(("127.0.0.1", port)):  # the port is taken: the endpoint cannot start
        with pytest.raises(ReleaseRolledBackError, match=rf"^release of '{recipe.registry.model_name}' rolled back: "
                                                         r"EndpointError: endpoint exited with code"):
            release(recipe, trained_tiny_model)
    assert aliases(recipe) == {"champion": None, "previous-champion": None}  # there was no champion
    assert_rolled_back(recipe, "1", "EndpointError: endpoint exited with code")

    first = release(recipe, trained_tiny_model)  # the same version, released this time
    assert first.version.version == "1" and first.endpoint_test.num_requests == 3
    assert aliases(recipe) == {"champion": "1", "previous-champion": None}
    assert tags(recipe, "1")["release_status"] == "released"

    refusing = recipe.model_copy(update={"endpoint": recipe.endpoint.model_copy(update={"max_body_bytes": 64})})
    with pytest.raises(ReleaseRolledBackError, match=r"EndpointError: endpoint test case '.+': .* answered 413"):
        release(refusing, trained_tiny_model, second)
    assert aliases(recipe) == {"champion": "1", "previous-champion": None}  # as before the release
    assert_rolled_back(recipe, "2", "EndpointError: endpoint test case")
    assert not HttpInferenceClient(f"http://127.0.0.1:{port}").ping()  # its endpoint was stopped

    again = release(recipe, trained_tiny_model, second)
    assert again.version.version == "2" and again.endpoint_test.num_requests == 3
    assert aliases(recipe) == {"champion": "2", "previous-champion": "1"}
    assert tags(recipe, "2")["release_status"] == "released"


def test_sagemaker_release_undone_at_each_step_and_released_on_rerun(tmp_path, moto_endpoint, sagemaker_stand_in,
                                                                     trained_tiny_model):
    recipe = sagemaker_recipe(tmp_path, moto_endpoint, PREVIOUS, *GATE_PASSES, "endpoint.keep_running=true")
    name, sm = recipe.registry.model_name, sagemaker_client()

    def package(version: str) -> dict:
        arn = tags(recipe, version)["sagemaker_model_package_arn"]
        return sm.describe_model_package(ModelPackageName=arn)

    # 1. The endpoint this release created refuses the test: deleted again; no champion; the package Rejected.
    with pytest.raises(ReleaseRolledBackError, match="EndpointError: endpoint test case 'wrong-shape': .*ModelError"):
        release(recipe, trained_tiny_model, cases=WRONG_SHAPE)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=name)
    assert aliases(recipe) == {"champion": None, "previous-champion": None}
    assert_rolled_back(recipe, "1", "EndpointError: endpoint test case 'wrong-shape'")
    rejected = package("1")
    assert rejected["ModelApprovalStatus"] == "Rejected"
    assert rejected["ApprovalDescription"].startswith("release rolled back: EndpointError: endpoint test case 'wrong-shape'")
    assert rejected["CustomerMetadataProperties"]["release_status"] == "rolled_back"

    # 2. A re-run with a test the model passes: approved again from the decision of record, served, champion.
    first = release(recipe, trained_tiny_model)
    assert first.running_endpoint.endpoint_config_name == resource_name(name, "v1")
    assert package("1")["ModelApprovalStatus"] == "Approved" and aliases(recipe)["champion"] == "1"
    served = client_for(first.running_endpoint).invoke({"inputs": "#Person1#: Hi.\n#Person2#: Hello."})

    # 3. A version whose model.tar.gz is broken: the update goes Failed; the endpoint serves version 1 again.
    broken = base_as_trained(trained_tiny_model, "broken-model")
    bucket, key = split_s3_uri(f"{recipe.registry.sagemaker.s3_prefix}/broken-model/{MODEL_ARCHIVE}")
    s3_client().put_object(Bucket=bucket, Key=key, Body=b"not a tar archive")
    with pytest.raises(ReleaseRolledBackError, match=f"EndpointError: SageMaker endpoint {name} is Failed"):
        release(recipe, trained_tiny_model, broken)
    assert_serves_version_1(sm, name, first, served)
    assert aliases(recipe) == {"champion": "1", "previous-champion": None}
    assert_rolled_back(recipe, "2", f"EndpointError: SageMaker endpoint {name} is Failed")
    assert package("2")["ModelApprovalStatus"] == "Rejected"

    # 4. A version that deploys but fails its test: UpdateEndpoint back to version 1; its own config and model gone.
    with pytest.raises(ReleaseRolledBackError, match="endpoint test case 'wrong-shape'"):
        release(recipe, trained_tiny_model, base_as_trained(trained_tiny_model, "third-model"), cases=WRONG_SHAPE)
    assert_serves_version_1(sm, name, first, served)
    assert aliases(recipe) == {"champion": "1", "previous-champion": None}
    assert_rolled_back(recipe, "3", "EndpointError: endpoint test case 'wrong-shape'")
    for call, field in ((sm.describe_endpoint_config, "EndpointConfigName"), (sm.describe_model, "ModelName")):
        with pytest.raises(ClientError, match="Could not find"):
            call(**{field: resource_name(name, "v3")})
    sm.delete_endpoint(EndpointName=name)


def assert_serves_version_1(sm, name: str, first, served) -> None:
    described = sm.describe_endpoint(EndpointName=name)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", resource_name(name, "v1"))
    assert client_for(first.running_endpoint).invoke({"inputs": "#Person1#: Hi.\n#Person2#: Hello."}) == served


def test_release_tasks_have_no_prefect_retries():
    """Prefect rolls the enclosing transaction back on every failed attempt: a retried step would go on with a
    release its hooks had already undone."""
    steps = [t for t in vars(flows.release).values() if isinstance(t, Task)]
    assert len(steps) >= 8 and [t.name for t in steps if t.retries] == []

"""The FLAN-T5 SageMaker Pipeline: its definition (steps, parameters, condition, registration), its step code run
locally on the DialogSum sample as the containers would run it, and the flow's upsert/start/wait against moto."""

import json
import shutil
from importlib.metadata import version

import pytest

from flows.dialogsum_sagemaker_pipeline import dialogsum_sagemaker_pipeline
from llm_finetune.aws import s3_client, sagemaker_client
from llm_finetune.pipelines import dialogsum_steps
from llm_finetune.pipelines.dialogsum import build_pipeline, pipeline_session
from llm_finetune.recipes import DialogsumPipelineRecipe, load_recipe
from tests.conftest import DIALOGSUM, REPO
from tests.sagemaker_helpers import sdk_table_images, unique

RECIPE = REPO / "recipes" / "dialogsum_sagemaker_pipeline.yaml"


def pipeline_recipe(moto_endpoint, *overrides) -> DialogsumPipelineRecipe:
    bucket = unique("llmft-pipelines")
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    return load_recipe(RECIPE, DialogsumPipelineRecipe, [
        f"pipeline.bucket={bucket}", f"pipeline.name={unique('dialogsum')}",
        f"data.train_uri=s3://{bucket}/dialogsum/train.jsonl",
        f"data.validation_uri=s3://{bucket}/dialogsum/validation.jsonl", *overrides])


@pytest.fixture
def sdk_on_moto(moto_endpoint, monkeypatch):
    """The SDK reaches moto through AWS_ENDPOINT_URL; its IAM role check calls SimulatePrincipalPolicy, which moto
    lacks (stand-in gap), so it is switched off the SDK's documented way."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    return moto_endpoint


def by_name(steps):
    return {s["Name"]: s for s in steps}


def definition_of(recipe: DialogsumPipelineRecipe, bundle_dir) -> dict:
    return json.loads(build_pipeline(recipe, pipeline_session(recipe.pipeline.bucket), bundle_dir).definition())


def test_definition_has_the_steps_parameters_and_rouge_condition(sdk_on_moto, moto_endpoint, tmp_path):
    recipe = pipeline_recipe(moto_endpoint)
    definition = definition_of(recipe, tmp_path)

    params = {p["Name"]: p for p in definition["Parameters"]}
    assert params["InputDataUri"]["DefaultValue"] == f"s3://{recipe.pipeline.bucket}/dialogsum/"
    assert params["MinRouge"] == {"Name": "MinRouge", "Type": "Float", "DefaultValue": 0.30}
    assert params["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    steps = by_name(definition["Steps"])
    assert [s["Name"] for s in definition["Steps"]] == ["Prepare", "Train", "Evaluate", "RougeCheck"]
    assert [steps[n]["Type"] for n in ("Prepare", "Train", "Evaluate", "RougeCheck")] == [
        "Processing", "Training", "Processing", "Condition"]

    prepare, train, evaluate = steps["Prepare"]["Arguments"], steps["Train"]["Arguments"], steps["Evaluate"]["Arguments"]
    assert prepare["AppSpecification"]["ContainerArguments"] == ["prepare"]
    assert prepare["ProcessingInputs"][0]["S3Input"]["S3Uri"] == {"Get": "Parameters.InputDataUri"}
    channel = next(c for c in train["InputDataConfig"] if c["ChannelName"] == "dataset")
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": "Steps.Prepare.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"}
    assert train["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert train["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    # every image from the SDK's tables for the region and instance type: CPU processing gets a CPU image
    assert train["AlgorithmSpecification"]["TrainingImage"] in sdk_table_images("us-east-1", "ml.g5.2xlarge")
    for step in (prepare, evaluate):
        assert step["AppSpecification"]["ImageUri"] in sdk_table_images("us-east-1", "ml.m5.xlarge")
        assert "-cpu-" in step["AppSpecification"]["ImageUri"]
    assert evaluate["AppSpecification"]["ContainerArguments"] == ["evaluate"]
    assert evaluate["ProcessingInputs"][0]["S3Input"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert steps["Evaluate"]["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}]

    check = steps["RougeCheck"]["Arguments"]
    assert check["Conditions"] == [{
        "Type": "GreaterThanOrEqualTo",
        "LeftValue": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                                      "Path": "metrics.rougeL.value"}},
        "RightValue": {"Get": "Parameters.MinRouge"}}]
    register, = check["IfSteps"]
    assert (register["Name"], register["Type"]) == ("Register", "RegisterModel")
    args = register["Arguments"]
    assert args["ModelPackageGroupName"] == recipe.registry.sagemaker.model_package_group
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    container, = args["InferenceSpecification"]["Containers"]
    assert container["Image"] in sdk_table_images("us-east-1", "ml.g5.xlarge")  # the inference instance type
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert container["Environment"]["HF_TASK"] == "text2text-generation"
    statistics = args["ModelMetrics"]["ModelQuality"]["Statistics"]  # the Evaluate step's evaluation.json
    assert statistics["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"
    fail, = check["ElseSteps"]
    assert fail["Type"] == "Fail"

    # the code bundle every step runs
    assert DialogsumPipelineRecipe.model_validate_json((tmp_path / "recipe.json").read_text()) == recipe
    assert f"transformers=={version('transformers')}" in (tmp_path / "requirements.txt").read_text().split()
    assert (tmp_path / "launcher.py").exists() and (tmp_path / "llm_finetune" / "pipelines" / "dialogsum_steps.py").exists()


def test_images_follow_the_region_and_a_pinned_one_is_kept(sdk_on_moto, moto_endpoint, monkeypatch, tmp_path):
    recipe = pipeline_recipe(moto_endpoint, "pipeline.processing_image_uri=my/processing:1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # the pipeline's region (its bucket is made before)
    steps = by_name(definition_of(recipe, tmp_path)["Steps"])
    assert steps["Train"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"] in sdk_table_images(
        "eu-west-1", "ml.g5.2xlarge")
    assert steps["Prepare"]["Arguments"]["AppSpecification"]["ImageUri"] == "my/processing:1"


def test_checkpoint_location_is_keyed_by_the_training_parameters(sdk_on_moto, moto_endpoint, tmp_path):
    recipe = pipeline_recipe(moto_endpoint)

    def checkpoints(changed: DialogsumPipelineRecipe, name: str) -> str:
        train = by_name(definition_of(changed, tmp_path / name)["Steps"])["Train"]
        return train["Arguments"]["CheckpointConfig"]["S3Uri"]

    first = checkpoints(recipe, "first")
    other_lr = recipe.model_copy(update={"training": recipe.training.model_copy(update={"learning_rate": 1e-4})})
    other_eval = recipe.model_copy(update={"evaluation": recipe.evaluation.model_copy(update={"batch_size": 4})})
    assert first.startswith(f"s3://{recipe.pipeline.bucket}/llmft-pipelines/{recipe.pipeline.name}/checkpoints/")
    assert checkpoints(other_lr, "other-lr") != first  # never syncs in checkpoints or a model of another training
    assert checkpoints(other_eval, "other-eval") == first  # what does not change the model keeps them


def test_step_code_prepares_trains_and_evaluates_like_the_containers(tmp_path):
    recipe = load_recipe(RECIPE, DialogsumPipelineRecipe, [
        "model={tiny: {vocab_size: 400, d_model: 32, d_ff: 64, num_layers: 1, num_decoder_layers: 1}}",
        "data.max_train_records=32", "data.max_validation_records=8", "training.max_steps=4",
        "training.per_device_train_batch_size=8", "training.save_steps=2", "evaluation.max_records=4",
        "evaluation.generation.max_new_tokens=8"])
    data = tmp_path / "input" / "data"  # what SageMaker copies from InputDataUri
    data.mkdir(parents=True)
    for split in ("train.jsonl", "validation.jsonl"):
        shutil.copy(DIALOGSUM / split, data / split)

    prepared = dialogsum_steps.prepare(recipe, data, tmp_path / "dataset")
    assert prepared["base_model_is_local"] and prepared["num_train"] == 32
    trained = dialogsum_steps.train(recipe, tmp_path / "dataset", tmp_path / "model", tmp_path / "checkpoints")
    assert trained["global_step"] == 4
    assert (tmp_path / "model" / "config.json").exists()  # files at the root: SageMaker archives this folder
    shutil.make_archive(str(tmp_path / "artifacts" / "model"), "gztar", tmp_path / "model")  # the job's model.tar.gz
    report = dialogsum_steps.evaluate(recipe, tmp_path / "artifacts", data, tmp_path / "evaluation")
    saved = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert saved == report and report["num_records"] == 4
    assert 0.0 <= saved["metrics"]["rougeL"]["value"] <= 1.0  # the path the pipeline's condition reads

    # A re-execution with another learning rate, its checkpoints synced into the same folder, trains anew.
    other = recipe.model_copy(update={"training": recipe.training.model_copy(update={"learning_rate": 1e-3})})
    retrained = dialogsum_steps.train(other, tmp_path / "dataset", tmp_path / "model-2", tmp_path / "checkpoints")
    assert not retrained["reused"] and retrained["global_step"] == 4
    weights = [(tmp_path / m / "model.safetensors").read_bytes() for m in ("model", "model-2")]
    assert weights[0] != weights[1]
    again = dialogsum_steps.train(recipe, tmp_path / "dataset", tmp_path / "model-3", tmp_path / "checkpoints")
    assert again["reused"] and (tmp_path / "model-3" / "model.safetensors").read_bytes() == weights[0]




def test_flow_upserts_starts_and_waits(sdk_on_moto, moto_endpoint, prefect_server):
    recipe = pipeline_recipe(moto_endpoint, "pipeline.poll_interval_s=0.2")
    first = dialogsum_sagemaker_pipeline(recipe=recipe)
    second = dialogsum_sagemaker_pipeline(recipe=recipe.model_copy(update={
        "approval": recipe.approval.model_copy(update={"min_metrics": {"rougeL": 0.4}})}))

    sm = sagemaker_client(moto_endpoint)
    assert first.status == second.status == "Succeeded"  # moto does not run steps: it reports success at once
    assert first.pipeline_arn == second.pipeline_arn  # upserted, not created twice
    assert [p["PipelineName"] for p in sm.list_pipelines()["PipelineSummaries"]].count(recipe.pipeline.name) == 1
    definition = json.loads(sm.describe_pipeline(PipelineName=recipe.pipeline.name)["PipelineDefinition"])
    assert {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}["MinRouge"] == 0.4  # the update
    executions = sm.list_pipeline_executions(PipelineName=recipe.pipeline.name)["PipelineExecutionSummaries"]
    assert {e["PipelineExecutionArn"] for e in executions} == {first.execution_arn, second.execution_arn}
    params = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=second.execution_arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in params}["MinRouge"] == "0.4"


STEP_OPERATIONS = {"Processing": "CreateProcessingJob", "Training": "CreateTrainingJob",
                   "RegisterModel": "CreateModelPackage"}


def substituted(value, parameters: dict, step_outputs: str):
    """A step's arguments as the service gets them: parameters at their defaults, other steps' outputs as the S3 URI
    they would be, joins joined."""
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            name = value["Get"]
            return parameters[name.removeprefix("Parameters.")] if name.startswith("Parameters.") else step_outputs
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(str(substituted(v, parameters, step_outputs)) for v in join["Values"])
        return {k: substituted(v, parameters, step_outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [substituted(v, parameters, step_outputs) for v in value]
    return value


def all_steps(steps: list[dict]):
    for step in steps:
        yield step
        yield from all_steps(step.get("Arguments", {}).get("IfSteps", []) + step.get("Arguments", {}).get(
            "ElseSteps", []))


def test_every_step_request_is_one_the_service_accepts(sdk_on_moto, moto_endpoint, tmp_path):
    """Each job / package step of the definition, placeholders substituted, against botocore's service model."""
    from llm_finetune.backends.service_model import request_problems

    recipe = pipeline_recipe(moto_endpoint)
    definition = definition_of(recipe, tmp_path)
    parameters = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    names = {"CreateProcessingJob": "ProcessingJobName", "CreateTrainingJob": "TrainingJobName"}
    checked = []
    for step in all_steps(definition["Steps"]):
        operation = STEP_OPERATIONS.get(step["Type"])
        if operation is None:
            continue
        request = substituted(step["Arguments"], parameters, f"s3://{recipe.pipeline.bucket}/steps/output")
        if operation in names:  # the pipeline names each execution's job itself
            request[names[operation]] = f"pipelines-{step['Name'].lower()}-0123456789ab"
        assert request_problems(operation, request) == [], step["Name"]
        checked.append(step["Name"])
    assert {"Prepare", "Train", "Evaluate"} <= set(checked) and len(checked) >= 4  # and the registration

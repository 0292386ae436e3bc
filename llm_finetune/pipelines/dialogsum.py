"""The FLAN-T5 DialogSum SageMaker Pipeline, built with the sagemaker SDK (3.x):

    Prepare (processing) -> Train (training) -> Evaluate (processing, evaluation.json)
        -> RougeCheck: <condition_metric> >= MinRouge ? Register (model package, MLflow-free) : RougeBelowThreshold (fail)

Each step runs `launcher.py <step>` from one code bundle: the llm_finetune package, the recipe as JSON and a
requirements.txt pinning this project's library versions (the DLC's own are older).
"""

from __future__ import annotations

import os
import shutil
import time
from importlib.metadata import version as pkg_version
from pathlib import Path

from pydantic import BaseModel

from llm_finetune.aws import aws_region, boto_session
from llm_finetune.backends.images import job_image, package_image
from llm_finetune.fingerprint import fingerprint
from llm_finetune.pipelines.dialogsum_steps import EVALUATION_FILE, RECIPE_FILE
from llm_finetune.recipes import DialogsumPipelineRecipe

PACKAGE_DIR = Path(__file__).resolve().parents[1]
BUNDLE_REQUIREMENTS = ("transformers", "tokenizers", "datasets", "accelerate", "rouge-score", "sentencepiece",
                       "zstandard", "pydantic", "pyyaml")
STEP_NAMES = ("Prepare", "Train", "Evaluate", "RougeCheck", "Register", "RougeBelowThreshold")
TERMINAL = {"Succeeded", "Failed", "Stopped"}


class PipelineRun(BaseModel):
    pipeline_arn: str
    execution_arn: str | None = None
    status: str | None = None
    failure_reason: str | None = None


def write_bundle(recipe: DialogsumPipelineRecipe, bundle_dir: Path) -> Path:
    """The code every step runs: llm_finetune/, launcher.py, recipe.json, requirements.txt."""
    shutil.copytree(PACKAGE_DIR, bundle_dir / "llm_finetune", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(Path(__file__).with_name("launcher.py"), bundle_dir / "launcher.py")
    (bundle_dir / RECIPE_FILE).write_text(recipe.model_dump_json(indent=2))
    (bundle_dir / "requirements.txt").write_text("".join(f"{p}=={pkg_version(p)}\n" for p in BUNDLE_REQUIREMENTS))
    return bundle_dir


def train_key(recipe: DialogsumPipelineRecipe) -> str:
    """What the Train step's model depends on that the definition knows: base model, data settings, training
    parameters. It keys the step's checkpoint location; inside, the run's folder is keyed by the data's content too."""
    return fingerprint("dialogsum-pipeline-train-v1", recipe.model, recipe.data, recipe.training)


def pipeline_session(bucket: str):
    """A PipelineSession on the named AWS session, else the default boto3 chain (AWS_ENDPOINT_URL reaches a
    stand-in)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", aws_region())  # the SDK's workflow modules need it at import
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    return PipelineSession(boto_session=boto_session(), default_bucket=bucket)


def build_pipeline(recipe: DialogsumPipelineRecipe, session, bundle_dir: Path):
    """The sagemaker.mlops Pipeline object (call .definition(), .upsert(role_arn=...))."""
    os.environ.setdefault("AWS_DEFAULT_REGION", aws_region())
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.processing import FrameworkProcessor
    from sagemaker.core.shapes import (
        CheckpointConfig,
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
    )
    from sagemaker.core.training.configs import Compute, InputData, SourceCode
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterString
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.model_trainer import ModelTrainer

    spec, package_spec = recipe.pipeline, recipe.registry.sagemaker
    bundle = str(write_bundle(recipe, bundle_dir))
    input_data = ParameterString("InputDataUri", default_value=recipe.input_data_uri())
    min_metric = ParameterFloat("MinRouge", default_value=recipe.approval.min_metrics[spec.condition_metric])
    approval = ParameterString("ModelApprovalStatus", default_value=spec.model_approval_status)
    training_instance = ParameterString("TrainingInstanceType", default_value=spec.training_instance_type)
    processing_instance = ParameterString("ProcessingInstanceType", default_value=spec.processing_instance_type)
    root = f"s3://{spec.bucket}/{spec.prefix}/{spec.name}"
    region = aws_region()
    training_image = spec.training_image_uri or job_image(region, spec.training_instance_type,
                                                          "pipeline.training_image_uri")
    processing_image = spec.processing_image_uri or job_image(region, spec.processing_instance_type,
                                                              "pipeline.processing_image_uri")

    def output(name: str, local_path: str) -> ProcessingOutput:
        uri = Join(on="/", values=[root, ExecutionVariables.PIPELINE_EXECUTION_ID, name])
        return ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
            s3_uri=uri, local_path=local_path, s3_upload_mode="EndOfJob"))

    def s3_input(name: str, uri, local_path: str) -> ProcessingInput:
        return ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
            s3_uri=uri, local_path=local_path, s3_data_type="S3Prefix", s3_input_mode="File"))

    def processor(job: str) -> FrameworkProcessor:
        return FrameworkProcessor(image_uri=processing_image,
                                  role=spec.role_arn, instance_count=1, instance_type=processing_instance,
                                  command=["python3"], sagemaker_session=session, base_job_name=f"{spec.name}-{job}")

    prepare = ProcessingStep(name="Prepare", step_args=processor("prepare").run(
        code="launcher.py", source_dir=bundle, requirements="requirements.txt", arguments=["prepare"],
        inputs=[s3_input("data", input_data, "/opt/ml/processing/input/data")],
        outputs=[output("dataset", "/opt/ml/processing/output/dataset")]))

    trainer = ModelTrainer(
        sagemaker_session=session, role=spec.role_arn, training_image=training_image,
        base_job_name=f"{spec.name}-train", compute=Compute(instance_type=training_instance, instance_count=1),
        source_code=SourceCode(source_dir=bundle, requirements="requirements.txt", command="python launcher.py train"),
        checkpoint_config=CheckpointConfig(s3_uri=f"{root}/checkpoints/{train_key(recipe)}",
                                           local_path="/opt/ml/checkpoints"))
    train = TrainingStep(name="Train", step_args=trainer.train(input_data_config=[InputData(
        channel_name="dataset", data_source=prepare.properties.ProcessingOutputConfig.Outputs["dataset"].S3Output.S3Uri)]))
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts

    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path=EVALUATION_FILE)
    evaluation_output = output("evaluation", "/opt/ml/processing/evaluation")
    evaluate = ProcessingStep(name="Evaluate", property_files=[report], step_args=processor("evaluate").run(
        code="launcher.py", source_dir=bundle, requirements="requirements.txt", arguments=["evaluate"],
        inputs=[s3_input("model", model_data, "/opt/ml/processing/model"),
                s3_input("data", input_data, "/opt/ml/processing/input/data")],
        outputs=[evaluation_output]))

    metrics_uri = Join(on="/", values=[evaluation_output.s3_output.s3_uri, EVALUATION_FILE])
    register = ModelStep(name="Register", step_args=ModelBuilder(
        image_uri=package_image(package_spec, region), s3_model_data_url=model_data, role_arn=spec.role_arn,
        env_vars={"HF_TASK": "text2text-generation", **package_spec.environment}, sagemaker_session=session,
    ).register(
        model_package_group_name=package_spec.model_package_group, approval_status=approval,
        content_types=["application/json"], response_types=["application/json"],
        inference_instances=package_spec.inference_instance_types,
        model_metrics=ModelMetrics(model_statistics=MetricsSource(content_type="application/json", s3_uri=metrics_uri)),
        description=f"{recipe.name}: registered by SageMaker Pipeline {spec.name}",
    ))
    too_low = FailStep(name="RougeBelowThreshold", error_message=Join(
        on=" ", values=[f"{spec.condition_metric} below", min_metric, ": not registered"]))
    check = ConditionStep(
        name="RougeCheck", if_steps=[register], else_steps=[too_low],
        conditions=[ConditionGreaterThanOrEqualTo(
            left=JsonGet(step_name=evaluate.name, property_file=report,
                         json_path=f"metrics.{spec.condition_metric}.value"),
            right=min_metric)])
    return Pipeline(name=spec.name, sagemaker_session=session, steps=[prepare, train, evaluate, check],
                    parameters=[input_data, min_metric, approval, training_instance, processing_instance])


def upsert_pipeline(recipe: DialogsumPipelineRecipe, bundle_dir: Path) -> tuple[str, str]:
    """Create or update the pipeline; (its ARN, the definition JSON sent)."""
    session = pipeline_session(recipe.pipeline.bucket)
    pipeline = build_pipeline(recipe, session, bundle_dir)
    definition = pipeline.definition()
    arn = pipeline.upsert(role_arn=recipe.pipeline.role_arn, description=f"{recipe.name} (llm-finetune-flows)")
    return arn["PipelineArn"], definition


def start_pipeline(sm, name: str, parameters: dict[str, str], token: str) -> str:
    """Start an execution; the same token (the Prefect flow run) never starts a second one."""
    return sm.start_pipeline_execution(
        PipelineName=name, ClientRequestToken=token[:128],
        PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in parameters.items()],
    )["PipelineExecutionArn"]


def wait_for_execution(sm, execution_arn: str, timeout_s: float, poll_interval_s: float) -> tuple[str, str | None]:
    """(final status, failure reason); TimeoutError if it is still running after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        status = described["PipelineExecutionStatus"]
        if status in TERMINAL:
            return status, described.get("FailureReason")
        if time.monotonic() + poll_interval_s > deadline:
            raise TimeoutError(f"pipeline execution {execution_arn} still {status} after {timeout_s:.0f}s")
        time.sleep(poll_interval_s)

"""The DialogSum -> FLAN-T5 recipe run as a SageMaker Pipeline: processing -> training -> evaluation -> condition on
ROUGE -> register (a model package in registry.sagemaker's group)."""

from __future__ import annotations

import posixpath
from typing import Literal

from pydantic import Field, model_validator

from llm_finetune.recipes.base import Strict
from llm_finetune.recipes.summarization import SummarizationRecipe


class SageMakerPipelineSpec(Strict):
    """Where and on what the pipeline's jobs run; the data are the recipe's s3:// train/validation files."""

    name: str = Field("dialogsum-flan-t5", description="Pipeline name; an upsert replaces its definition")
    role_arn: str = Field(description="IAM role the pipeline and its jobs run as")
    bucket: str = Field(description="S3 bucket for the code bundle and step outputs")
    prefix: str = Field("llmft-pipelines", description="Key prefix under the bucket")
    training_image_uri: str | None = Field(
        None, description="Training container; default: from the sagemaker SDK's image URI tables for the region and "
        "training_instance_type (GPU: the Hugging Face PyTorch training DLC; CPU: the PyTorch training CPU image)")
    processing_image_uri: str | None = Field(
        None, description="Processing container; default: from the same tables for processing_instance_type (the "
        "PyTorch training CPU image on ml.m5)")
    processing_instance_type: str = Field("ml.m5.xlarge", description="Default of the ProcessingInstanceType "
                                          "parameter; the default images are those of this type")
    training_instance_type: str = Field("ml.g5.2xlarge", description="Default of the TrainingInstanceType parameter")
    condition_metric: str = Field(
        "rougeL", description="Registered only when this metric >= approval.min_metrics[condition_metric]"
    )
    model_approval_status: Literal["PendingManualApproval", "Approved"] = "PendingManualApproval"
    wait_timeout_s: float = Field(4 * 3600.0, gt=0, description="How long the flow waits for the execution")
    poll_interval_s: float = Field(30.0, gt=0)


class DialogsumPipelineRecipe(SummarizationRecipe):
    """A SummarizationRecipe whose training, evaluation and registration run as one SageMaker Pipeline."""

    GATES_ON_GAIN = False  # the pipeline's condition step scores the trained model alone (min_metrics)

    name: str = "dialogsum-sagemaker-pipeline"
    pipeline: SageMakerPipelineSpec

    @model_validator(mode="after")
    def _pipeline_inputs(self) -> "DialogsumPipelineRecipe":
        problems = []
        if self.registry.sagemaker is None:
            problems.append("registry.sagemaker is required (the model package group the pipeline registers to)")
        uris = (self.data.train_uri, self.data.validation_uri)
        if not all(u.startswith("s3://") for u in uris) or len({posixpath.dirname(u) for u in uris}) != 1:
            problems.append("data.train_uri and data.validation_uri must be s3:// files in one folder")
        if self.pipeline.condition_metric not in self.approval.min_metrics:
            problems.append(f"approval.min_metrics needs '{self.pipeline.condition_metric}' (the pipeline's condition)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def input_data_uri(self) -> str:
        return posixpath.dirname(self.data.train_uri) + "/"

"""Registry tasks: log the run to MLflow and register a version (status 'pending' until the approval gate; tagged
release_status=rolled_back with the reason when the release transaction rolls back); find a registered version by
number or alias; roll the champion alias back."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.transactions import Transaction, get_transaction

from llm_finetune.aws import s3_client, sagemaker_client
from llm_finetune.backends.model_packages import record_package_release, register_model_package
from llm_finetune.errors import RecipeError, rollback_reason
from llm_finetune.evaluation.comparison import ReleaseEvidence
from llm_finetune.recipes import RecipeBase, SageMakerModelPackageSpec
from llm_finetune.registry.mlflow_registry import (
    RELEASED,
    ROLLED_BACK,
    RegisteredModelVersion,
    log_and_register,
    record_release,
    resolve_version,
    rollback_alias,
    set_version_tag,
)
from llm_finetune.training.job import TrainingResult

MODEL_PACKAGE_TAG = "sagemaker_model_package_arn"


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value
    return out


@task(name="register-model")
def register_model(
    recipe: RecipeBase,
    base_model: str,
    dataset_fingerprint: str,
    training: TrainingResult,
    evidence: ReleaseEvidence,
) -> RegisteredModelVersion:
    """Log the run and register the trained model, or return the version already registered for it."""
    metrics = {f"finetuned_{k}": v for k, v in evidence.finetuned_metrics.items()}
    metrics |= {f"base_{k}": v for k, v in evidence.base_metrics.items()}
    metrics |= {"train_tokens_per_second": training.tokens_per_second, "global_step": float(training.global_step)}
    if training.train_loss is not None:
        metrics["train_loss_mean"] = training.train_loss
    tags = {
        "recipe": recipe.name,
        "base_model": base_model,
        "dataset_fingerprint": dataset_fingerprint,
        "train_uri": recipe.data.train_uri,
    }
    version = log_and_register(
        tracking_uri=recipe.tracking_uri(),
        experiment=recipe.registry.experiment,
        model_name=recipe.registry.model_name,
        model_dir=training.model_dir,
        params=_flatten("", recipe.model_dump(mode="json"), {}),
        metrics=metrics,
        loss_curve=training.loss_curve,
        tags=tags,
        samples=evidence.samples,
        training_fingerprint=training.fingerprint or training.model_dir,
        generation=recipe.endpoint.generation,
    )
    get_run_logger().info("%s %s version %s", "reused" if version.reused else "registered", version.name,
                          version.version)
    get_transaction().set("registered", (recipe.tracking_uri(), version))
    return version


@register_model.on_rollback
def _tag_rolled_back_version(txn: Transaction) -> None:
    """The version stays registered; its tags say the release rolled back, and why."""
    tracking_uri, version = txn.get("registered")
    record_release(tracking_uri, version.name, version.version, ROLLED_BACK, rollback_reason())


@task(name="resolve-model-version")
def resolve_model_version(tracking_uri: str, name: str, version: str | None = None,
                          alias: str | None = None) -> RegisteredModelVersion:
    """The registered version a recipe names by number or alias."""
    return resolve_version(tracking_uri, name, version, alias)


@task(name="record-release")
def record_released(version: RegisteredModelVersion, tracking_uri: str) -> None:
    """Tag a version whose release committed (approved, deployed, its endpoint test passed) released, and its
    package."""
    reason = "deployed; its endpoint test passed"
    record_release(tracking_uri, version.name, version.version, RELEASED, reason)
    if version.model_package_arn:
        record_package_release(sagemaker_client(), version.model_package_arn, RELEASED, reason)


# No Prefect retries (as deploy-sagemaker-endpoint): a failed attempt would roll the release transaction back.
@task(name="register-model-package")
def register_sagemaker_model_package(
    spec: SageMakerModelPackageSpec,
    version: RegisteredModelVersion,
    tracking_uri: str,
    training: TrainingResult,
    evidence: ReleaseEvidence,
) -> RegisteredModelVersion:
    """Mirror the MLflow version as a SageMaker model package (PendingManualApproval), once per version."""
    package = register_model_package(
        sagemaker_client(), s3_client(), spec, mlflow_name=version.name, mlflow_version=version.version,
        model_source=training.model_dir, training_fingerprint=training.fingerprint or version.run_id,
        metrics=evidence.finetuned_metrics,
    )
    set_version_tag(tracking_uri, version.name, version.version, MODEL_PACKAGE_TAG, package.arn)
    get_run_logger().info("%s model package %s (%s) for %s version %s", "found" if package.reused else "created",
                          package.arn, package.status, version.name, version.version)
    return version.model_copy(update={"model_package_arn": package.arn})


@task(name="rollback-champion-alias")
def rollback_champion_alias(recipe: RecipeBase, reason: str) -> tuple[str, str]:
    """Move the approval alias (champion) back to the version the previous alias marks; returns (demoted, restored)."""
    if not recipe.approval.previous_alias:
        raise RecipeError("approval.previous_alias is not set, so no previous champion was kept to roll back to")
    demoted, restored = rollback_alias(recipe.tracking_uri(), recipe.registry.model_name, recipe.approval.alias,
                                       recipe.approval.previous_alias, reason)
    get_run_logger().info("%s: %s moved from version %s back to %s", recipe.registry.model_name,
                          recipe.approval.alias, demoted, restored)
    return demoted, restored

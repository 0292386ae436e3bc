"""Registry tasks: log the run to MLflow and register a version (status 'pending' until the approval gate); find a
registered version by number or alias."""

from __future__ import annotations

from prefect import get_run_logger, task

from llm_finetune.evaluation.comparison import ReleaseEvidence
from llm_finetune.recipes import RecipeBase
from llm_finetune.registry.mlflow_registry import RegisteredModelVersion, log_and_register, resolve_version
from llm_finetune.training.job import TrainingResult


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
    return version


@task(name="resolve-model-version")
def resolve_model_version(tracking_uri: str, name: str, version: str | None = None,
                          alias: str | None = None) -> RegisteredModelVersion:
    """The registered version a recipe names by number or alias."""
    return resolve_version(tracking_uri, name, version, alias)

"""The recipe's `sagemaker.jumpstart` section: a JumpStart model (`meta-textgeneration-llama-2-7b`,
`huggingface-llm-falcon-7b-bf16`, ...) with the fields JumpStart resolves written out, so nothing needs the network.

`llm_finetune.backends.jumpstart.resolve_jumpstart_spec` fills them in once online; `llm_finetune.backends.jumpstart` builds the fine-tune
and deploy requests from them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from llm_finetune.forms import in_declared_order


class JumpStartSpec(BaseModel):
    """A JumpStart model with the fields JumpStart would resolve (run `resolve_jumpstart_spec` once online)."""

    # Strict like every recipe section (recipes.base.Strict, which imports this module, so not its subclass).
    model_config = ConfigDict(extra="forbid", json_schema_extra=in_declared_order)

    model_id: str = Field(description="e.g. meta-textgeneration-llama-2-7b, huggingface-llm-falcon-7b-bf16")
    model_version: str = "*"
    accept_eula: bool = Field(False, description="Required for gated models (Llama 2): you accept the model's EULA")
    requires_eula: bool = Field(False, description="Resolved: the model is gated behind a EULA")
    inference_image_uri: str = Field(description="Resolved: the JumpStart inference container (e.g. TGI) image")
    inference_model_uri: str = Field(description="Resolved: s3:// of the weights to serve (prefix or tar.gz)")
    inference_environment: dict[str, str] = Field(
        default_factory=dict, description="Resolved: the inference container's environment (SM_NUM_GPUS, ...)")
    training_image_uri: str | None = Field(None, description="Resolved: the JumpStart training container image")
    training_model_uri: str | None = Field(None, description="Resolved: s3:// prefix of the weights to fine-tune")
    training_script_uri: str | None = Field(None, description="Resolved: s3:// tar.gz of JumpStart's training code")
    default_hyperparameters: dict[str, str] = Field(
        default_factory=dict, description="Resolved: the fine-tune's default hyperparameters; the recipe's training "
        "settings are merged over them where JumpStart has a hyperparameter for them")

    metric_definitions: list[dict[str, str]] = Field(
        default_factory=list, description="Resolved: the fine-tune's metrics ({Name, Regex} on its log), sent as "
        "MetricDefinitions so the job reports them (FinalMetricDataList)")

    def training_problems(self) -> list[str]:
        """Resolved fields a fine-tune needs that are missing (named as recipe fields)."""
        return [f"sagemaker.jumpstart.{name}" for name in ("training_image_uri", "training_model_uri",
                                                             "training_script_uri") if getattr(self, name) is None]

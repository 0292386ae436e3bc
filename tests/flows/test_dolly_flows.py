"""Both Dolly instruction-tuning flows end to end on tiny models, through the shared release path."""

import mlflow
import pytest

from flows.dolly_llama2_sft import DEFAULT_RECIPE_PATH as LLAMA_RECIPE
from flows.dolly_llama2_sft import dolly_llama2_sft
from flows.dolly_mixtral_moe import DEFAULT_RECIPE_PATH as MIXTRAL_RECIPE
from flows.dolly_mixtral_moe import dolly_mixtral_moe
from llm_finetune.errors import DataValidationError
from llm_finetune.recipes import InstructionRecipe, load_recipe
from llm_finetune.serving.endpoint import EndpointClient

SMALL = ("training.max_steps=8", "training.logging_steps=2", "training.save_steps=4", "evaluation.max_records=3",
         "endpoint.num_test_records=2", "approval.min_metrics={rougeL: 0.0}",
         "approval.min_gain_over_base={}", "approval.min_relative_decrease={}", "approval.require_gain=false",
         "approval.manual_review=false")  # a release-plumbing test: never a pause for a reviewer


pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def small(recipe_path, work_dir, *overrides) -> InstructionRecipe:
    where = (f"work_dir={work_dir}", f"registry.tracking_uri=sqlite:///{work_dir / 'mlflow.db'}")
    return load_recipe(recipe_path, InstructionRecipe, [*where, *SMALL, *overrides])


def test_llama_sft_end_to_end(tmp_path):
    recipe = small(LLAMA_RECIPE, tmp_path)
    outcome = dolly_llama2_sft(recipe=recipe)

    assert outcome.data_check.splits["train"].records == 26 and outcome.data_check.splits["train"].dropped == 0
    assert outcome.training.adapter_dir and outcome.training.merge.max_abs_diff <= outcome.training.merge.tolerance
    base, tuned = outcome.metrics["base"], outcome.metrics["finetuned"]
    assert tuned["perplexity"] < base["perplexity"]  # learned on the responses, measured on held-out records
    assert outcome.decision.approved and outcome.endpoint_test.num_requests == 2
    assert all(isinstance(r["output"], str) for r in outcome.endpoint_test.results)
    assert not EndpointClient(outcome.endpoint_test.url).ping()
    version = mlflow.MlflowClient(recipe.tracking_uri()).get_model_version(recipe.registry.model_name,
                                                                           outcome.version.version)
    assert version.tags["served_kind"] == "text-generation" and version.tags["approval_status"] == "approved"

    import pandas as pd

    mlflow.set_tracking_uri(recipe.tracking_uri())
    pyfunc = mlflow.pyfunc.load_model(f"models:/{recipe.registry.model_name}/{outcome.version.version}")
    answers = pyfunc.predict(pd.DataFrame({"prompt": ["[INST] Say hi. [/INST]"]}), params={"max_new_tokens": 4})
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_mixtral_moe_end_to_end_with_routing(tmp_path):
    outcome = dolly_mixtral_moe(recipe=small(MIXTRAL_RECIPE, tmp_path))
    assert outcome.decision.approved and outcome.endpoint_test.num_requests == 2
    base, tuned = outcome.routing["base"], outcome.routing["finetuned"]
    assert len(base) == len(tuned) == 2 and all(len(layer) == 4 for layer in base)  # 2 layers x 4 experts
    assert all(abs(sum(layer) - 1) < 1e-6 for layer in base + tuned)
    assert any(point.get("aux_loss") is not None for point in outcome.training.loss_curve)


def test_bad_instruction_data_fails_before_any_model_work(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"instruction": "Say hi.", "context": "", "category": "open_qa"}\n')
    with pytest.raises(DataValidationError, match=rf"{bad}, line 1, field 'response': missing"):
        dolly_llama2_sft(recipe=small(LLAMA_RECIPE, tmp_path / "work", f"data.train_uri={bad}"))
    assert not (tmp_path / "work" / "base-models").exists()


def test_llama_sft_on_sagemaker_stand_in(moto_endpoint, tmp_path):
    """training.backend: sagemaker; the contract runner trains the tiny Llama with LoRA and merges it."""
    from tests.sagemaker_helpers import jobs_overrides

    recipe = small(LLAMA_RECIPE, tmp_path, "training.backend=sagemaker",
                   *jobs_overrides(moto_endpoint))
    outcome = dolly_llama2_sft(recipe=recipe)

    training = outcome.training
    assert training.global_step == 8 and training.adapter_dir.startswith(str(tmp_path))
    assert training.merge.max_abs_diff <= training.merge.tolerance
    assert outcome.metrics["finetuned"]["perplexity"] < outcome.metrics["base"]["perplexity"]
    assert outcome.decision.approved and outcome.endpoint_test.num_requests == 2

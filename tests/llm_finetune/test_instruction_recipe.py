import pytest

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import CausalModelSpec, InstructionRecipe, LoraSpec, TinyCausalSpec, load_recipe
from tests.conftest import REPO
from tests.llm_finetune.causal_helpers import DOLLY

DOLLY_RECIPES = sorted((REPO / "recipes").glob("dolly_*.yaml"))


@pytest.mark.parametrize("path", DOLLY_RECIPES, ids=lambda p: p.name)
def test_dolly_recipes_load(path):
    # A gated JumpStart model's recipe ships with its EULA unaccepted (test_sagemaker_recipes checks the refusal).
    recipe = load_recipe(path, InstructionRecipe, ["sagemaker.jumpstart.accept_eula=true"] if "jumpstart" in path.stem
                         else [])
    assert recipe.registry.model_name == recipe.name
    assert "rougeL" in recipe.approval.min_gain_over_base or "perplexity" in recipe.approval.min_relative_decrease
    if recipe.model.tiny is not None:
        assert recipe.data.train_uri == str(DOLLY / "train.jsonl")  # lexical: a linked shared/ stays as linked
    elif recipe.sagemaker is not None and recipe.sagemaker.jumpstart is not None:  # JumpStart's trainer quantizes
        assert recipe.training.backend == "sagemaker" and recipe.endpoint.target == "sagemaker"
    else:
        assert recipe.data.train_uri.startswith("hf://") and recipe.lora.quantization.load_in_4bit


def test_mixtral_recipe_adapts_attention_and_experts_not_the_router():
    recipe = load_recipe(REPO / "recipes" / "dolly_mixtral_tiny.yaml", InstructionRecipe)
    assert recipe.model.tiny.family == "mixtral"
    assert recipe.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert recipe.lora.target_parameters == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def test_defaults_and_overrides():
    overrides = ["training.packing=true", "lora.quantization.load_in_4bit=true", "data.max_length=256"]
    recipe = load_recipe(REPO / "recipes" / "dolly_llama2_tiny.yaml", InstructionRecipe, overrides=overrides)
    assert recipe.training.packing and recipe.lora.quantization.load_in_4bit and recipe.data.max_length == 256
    assert recipe.training.completion_only_loss and recipe.training.nproc_per_node == 1
    assert recipe.training.precision == "auto" and recipe.lora.quantization.quant_type == "nf4"


def test_invalid_sections_say_what_to_change(tmp_path):
    with pytest.raises(ValueError, match="exactly one of 'name_or_path' or 'tiny'"):
        CausalModelSpec(name_or_path="meta-llama/Llama-2-7b-hf", tiny={})
    with pytest.raises(ValueError, match="load_in_4bit needs enabled: true"):
        LoraSpec(enabled=False, quantization={"load_in_4bit": True})
    with pytest.raises(ValueError, match="num_attention_heads must be a multiple of num_key_value_heads"):
        TinyCausalSpec(num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(RecipeError, match=r"field 'training.precision'"):
        load_recipe(REPO / "recipes" / "dolly_llama2_tiny.yaml", InstructionRecipe,
                    overrides=["training.precision=fp16"])

"""sentiment-comparison on two arms x two seeds (tiny GPT-2, tiny Gemma-2 with LoRA); a re-run with one more seed
trains only that seed."""

import pytest

from flows.sentiment_comparison import DEFAULT_RECIPE_PATH, sentiment_comparison
from llm_finetune.recipes import SentimentComparisonRecipe, load_recipe

TINY = "{family: %s, vocab_size: 600, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 4, " \
       "num_key_value_heads: 2, intermediate_size: 64}"
SMALL = ("data.max_train_records=48", "data.max_validation_records=16", "data.max_length=48",
         "training.max_steps=4", "training.logging_steps=2", "training.learning_rate=0.003",
         f"arms.gpt2.model={{tiny: {TINY % 'gpt2'}}}", f"arms.gemma2.model.tiny={TINY % 'gemma2'}",
         "arms.gemma2.training=null", "run_arms=[gpt2, gemma2]", "paired=[gpt2, gemma2]")


pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def test_two_arms_two_seeds_then_one_more_seed(tmp_path):
    where = (f"work_dir={tmp_path}", f"registry.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    recipe = load_recipe(DEFAULT_RECIPE_PATH, SentimentComparisonRecipe, [*where, *SMALL, "seeds=[1, 2]"])
    result = sentiment_comparison(recipe=recipe)

    assert [(r.arm, r.seed) for r in result.runs] == [("gpt2", 1), ("gpt2", 2), ("gemma2", 1), ("gemma2", 2)]
    assert not any(r.reused for r in result.runs)
    assert len({r.training_fingerprint for r in result.runs}) == 4  # each arm and seed is its own run
    assert [s.arm for s in result.summaries] == ["gpt2", "gemma2"]
    assert result.paired.seeds == [1, 2] and set(result.paired.exceeds_spread) == {"accuracy", "macro_f1"}
    assert "| gpt2 | 2 |" in result.markdown and "Paired: gemma2 - gpt2 over seeds [1, 2]" in result.markdown
    assert (tmp_path / "comparisons").exists() and result.plot_path.endswith(".png")

    more = sentiment_comparison(recipe=recipe.model_copy(update={"seeds": [1, 2, 3]}))
    assert [(r.arm, r.seed, r.reused) for r in more.runs] == [
        ("gpt2", 1, True), ("gpt2", 2, True), ("gpt2", 3, False),
        ("gemma2", 1, True), ("gemma2", 2, True), ("gemma2", 3, False)]
    assert more.runs[0].metrics == result.runs[0].metrics

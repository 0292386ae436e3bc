"""Several IMDB sentiment arms over several seeds, one comparison: accuracy and macro-F1 as mean +- std per arm, and
for two arms (GPT-2 from the original weights vs from the GPT-2 further pretrained on movie plots) a seed-by-seed
paired comparison that says whether the difference is larger than the seed-to-seed spread. Every (arm, seed) run is
cached by content, so a re-run (another seed, another arm) trains only what is missing.

    llmft run sentiment-comparison [--recipe FILE] [seeds=[1,2,3]] [run_arms=[gpt2,bert]] ...
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.imdb_sentiment import train_and_evaluate_classifier
from llm_finetune.evaluation.arms import ArmRun
from llm_finetune.recipes import SentimentComparisonRecipe, load_recipe
from tasks.aws import aws_from_recipe
from tasks.evaluation import ArmComparison, publish_arm_comparison

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "sentiment_comparison_tiny.yaml"


@flow(name="sentiment-comparison", log_prints=True)
@aws_from_recipe
def sentiment_comparison(recipe: SentimentComparisonRecipe = load_recipe(DEFAULT_RECIPE_PATH,
                                                                         SentimentComparisonRecipe)
                         ) -> ArmComparison:
    runs = []
    for arm in recipe.selected_arms():
        for seed in recipe.seeds:
            run = train_and_evaluate_classifier(recipe.arm_recipe(arm, seed))
            runs.append(ArmRun(arm=arm, seed=seed, metrics=run.comparison.finetuned.metrics,
                               base_metrics=run.comparison.base.metrics, training_fingerprint=run.training.fingerprint,
                               reused=run.training.reused))
    return publish_arm_comparison(runs, recipe.paired, recipe.tracking_uri(), recipe.registry.experiment,
                                  recipe.work_dir)

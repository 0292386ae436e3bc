"""A data engineer's own flow from the project's public tasks: DialogSum -> tiny T5, scored by BLEU (nltk) beside ROUGE.

    python examples/summarize_with_bleu.py [key.sub=value ...]      (overrides of the DialogSum default recipe)
"""
import sys

from nltk.tokenize import wordpunct_tokenize
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
from prefect import flow, task

from flows.dialogsum_flan_t5 import DEFAULT_RECIPE_PATH
from llm_finetune.data.summarization import summarization_records
from llm_finetune.recipes import SummarizationRecipe, load_recipe
from llm_finetune.training.seq2seq import seq2seq_job
from tasks.data import prepare_summarization_dataset, validate_data
from tasks.evaluation import evaluate_base_and_finetuned
from tasks.models import materialize_base_model
from tasks.training import train_model


@task(name="corpus-bleu")
def corpus_bleu_of(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 on words and punctuation runs ('#Person1#s' is '#', 'Person1', '#', 's')."""
    return corpus_bleu([[wordpunct_tokenize(r)] for r in references], [wordpunct_tokenize(p) for p in predictions],
                       smoothing_function=SmoothingFunction().method1)


@flow(name="summarize-with-bleu")
def summarize_with_bleu(recipe: SummarizationRecipe = load_recipe(DEFAULT_RECIPE_PATH)) -> dict[str, dict[str, float]]:
    work, data = recipe.work_dir, recipe.data
    validated = validate_data(data, work)
    base = materialize_base_model(recipe.model, data, validated, work)
    prepared = prepare_summarization_dataset(data, validated, base, work, recipe.sagemaker)
    training = train_model(seq2seq_job(base, prepared.path, prepared.fingerprint, data.prompt_template,
                                       recipe.training, work), recipe.sagemaker)
    scores = evaluate_base_and_finetuned(base, training, data, validated, recipe.evaluation, work)
    references = [r["summary"] for r in summarization_records(validated, "validation", data,
                                                              recipe.evaluation.max_records)]
    return {run: {"bleu": corpus_bleu_of(result.predictions, references), "rougeL": result.metrics["rougeL"]}
            for run, result in (("base", scores.base), ("finetuned", scores.finetuned))}


if __name__ == "__main__":
    print(summarize_with_bleu(load_recipe(DEFAULT_RECIPE_PATH, overrides=sys.argv[1:])))

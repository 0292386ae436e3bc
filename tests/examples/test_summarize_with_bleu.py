import importlib.util
import json

from nltk.tokenize import wordpunct_tokenize
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

from llm_finetune.data.shapes import load_data
from llm_finetune.data.summarization import summarization_records
from tests.conftest import REPO, seed_work_dir, small_recipe


def load_example(name: str):
    """examples/<name>.py by path: a dependency installs a top-level `examples` package that shadows the folder."""
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_flow_from_public_tasks_scores_bleu_beside_rouge(prefect_server, tmp_path, small_trained_work_dir):
    seed_work_dir(tmp_path, small_trained_work_dir)  # the small recipe's run, trained once per session, is reused
    recipe, example = small_recipe(tmp_path), load_example("summarize_with_bleu")
    scores = example.summarize_with_bleu(recipe)

    # Each run's BLEU is that of the evaluation's own predictions against the validation summaries, in order (a
    # tiny model's BLEU-4 is near 0 for base and fine-tuned alike: which is higher depends on the run, ROUGE-L not).
    [evaluation] = (tmp_path / "evaluations").glob("*/comparison.json")
    predictions = {run: result["predictions"] for run, result in json.loads(evaluation.read_text()).items()
                   if run in scores}
    references = [r["summary"] for r in summarization_records(load_data(recipe.data, recipe.work_dir), "validation",
                                                              recipe.data, recipe.evaluation.max_records)]
    assert set(scores) == set(predictions) == {"base", "finetuned"} and predictions["base"] != predictions["finetuned"]
    for run, said in predictions.items():
        assert len(said) == len(references) == recipe.evaluation.max_records
        tokens = [[wordpunct_tokenize(r)] for r in references], [wordpunct_tokenize(p) for p in said]
        assert scores[run]["bleu"] == corpus_bleu(*tokens, smoothing_function=SmoothingFunction().method1)
    assert scores["finetuned"]["rougeL"] > scores["base"]["rougeL"]  # 60 steps learn the summaries' words
    assert example.corpus_bleu_of.fn(["the cat sat on the mat ."], ["the cat sat on the mat ."]) == 1.0  # the scale
    assert example.corpus_bleu_of.fn(["#Person1#s mat"], ["#Person1# asks"]) > 0  # '#', 'Person1', '#' match

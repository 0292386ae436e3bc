import importlib.util

from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

from tests.conftest import REPO, seed_work_dir, small_recipe


def load_example(name: str):
    """examples/<name>.py by path: a dependency installs a top-level `examples` package that shadows the folder."""
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_flow_from_public_tasks_scores_bleu_beside_rouge(prefect_server, tmp_path, small_trained_work_dir):
    seed_work_dir(tmp_path, small_trained_work_dir)  # the small recipe's run, trained once per session, is reused
    scores = load_example("summarize_with_bleu").summarize_with_bleu(small_recipe(tmp_path))

    assert set(scores) == {"base", "finetuned"} and all(0 <= s["bleu"] <= 1 for s in scores.values())
    assert scores["finetuned"]["bleu"] > scores["base"]["bleu"]  # 60 steps learn the summaries' words
    assert scores["finetuned"]["rougeL"] > scores["base"]["rougeL"]
    assert corpus_bleu([[["a", "b", "c", "d"]]], [["a", "b", "c", "d"]],
                       smoothing_function=SmoothingFunction().method1) == 1.0  # the scale: identical text is 1

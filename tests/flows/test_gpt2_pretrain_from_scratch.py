"""GPT-2 from scratch on the Python code sample end to end: its own BPE saved with the model, packed blocks,
held-out perplexity and parsable completions vs the random init, through the shared release path."""

import ast
import json

import mlflow
import pytest
from transformers import AutoTokenizer

from flows.gpt2_pretrain_from_scratch import DEFAULT_RECIPE_PATH, gpt2_pretrain_from_scratch
from llm_finetune.recipes import CodePretrainingRecipe, load_recipe

SMALL = ("data.max_train_records=120", "data.block_size=64", "model.config.vocab_size=800", "model.config.n_embd=32",
         "model.config.n_layer=1", "model.config.n_head=2", "model.config.n_positions=128",
         "training.max_steps=40", "training.learning_rate=0.005", "training.per_device_train_batch_size=4",
         "training.warmup=0", "training.logging_steps=10", "training.save_steps=100", "training.precision=fp32",
         "evaluation.max_documents=6", "evaluation.num_samples_shown=1", "evaluation.batch_size=16",
         "evaluation.generation.max_new_tokens=8", "completions.generation.max_new_tokens=24",
         # JSON: its "\n" escapes stay newlines in YAML (a single-quoted YAML scalar folds a newline into a space).
         "completions.prompts=" + json.dumps(['def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
                                              'def is_even(n: int) -> bool:\n    """Return True if n is even."""\n']),
         "endpoint.num_test_records=1", "endpoint.generation.max_new_tokens=8")


pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def test_code_model_from_scratch_end_to_end(tmp_path):
    where = (f"work_dir={tmp_path}", f"registry.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    recipe = load_recipe(DEFAULT_RECIPE_PATH, CodePretrainingRecipe, [*where, *SMALL])
    outcome = gpt2_pretrain_from_scratch(recipe=recipe)

    tokenizer = AutoTokenizer.from_pretrained(outcome.training.model_dir)
    assert len(tokenizer) == 800 and tokenizer.eos_token == "<|endoftext|>"  # trained on the code, saved with it
    assert outcome.selection.new == 120 and outcome.training.real_tokens == 40 * 4 * 64
    base, trained = outcome.metrics["random_init"], outcome.metrics["trained"]
    assert trained["perplexity_in_domain"] < 0.5 * base["perplexity_in_domain"]
    assert 0 <= trained["body_parse_rate"] <= 1 and trained["mean_added_lines"] >= 0 and set(base) == set(trained)
    prompts = recipe.completions.prompts
    assert all(prompt.count("\n") == 2 and _parses(prompt) for prompt in prompts)
    for program in outcome.completions:  # prompt + completion, cut at the next top-level statement
        assert program.startswith("def ") and not any(line and not line[0].isspace()
                                                      for line in program.split("\n")[1:])
    counted = [_parses(program) and _adds_code(prompt, program)
               for prompt, program in zip(prompts, outcome.completions)]
    assert trained["body_parse_rate"] == sum(counted) / len(prompts)
    assert outcome.decision.approved and outcome.endpoint_test.num_requests == 1
    version = mlflow.MlflowClient(recipe.tracking_uri()).get_model_version(recipe.registry.model_name,
                                                                           outcome.version.version)
    assert version.tags["served_kind"] == "text-generation"


def _adds_code(prompt: str, program: str) -> bool:
    body = ast.parse(program).body[0].body  # the prompted function's
    return any(not isinstance(s, (ast.Pass, ast.Expr)) or not isinstance(s.value, ast.Constant)
               for s in body[len(ast.parse(prompt).body[0].body):])


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True

"""Champion / challenger aliases: an approval keeps the replaced champion as previous-champion; a rollback moves the
champion back in one alias move; registered-model tags hold state between scheduled runs."""

import json

import mlflow
import pytest

from llm_finetune.approval import ApprovalDecision
from llm_finetune.models.gpt2 import build_gpt2
from llm_finetune.recipes import GPT2ConfigSpec
from llm_finetune.registry.mlflow_registry import (
    alias_version,
    log_and_register,
    model_tags,
    record_approval,
    rollback_alias,
    set_model_tag,
)
from tests.conftest import SHARED_DATA

PLOTS = SHARED_DATA / "movie_plots" / "train.jsonl"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    texts = [json.loads(line)["text"] for line in PLOTS.read_text().splitlines()[:30]]
    spec = GPT2ConfigSpec(tokenizer="train", vocab_size=400, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    return str(build_gpt2(spec, texts, tmp_path_factory.mktemp("gpt2"), corpus_key="plots"))


def decide(uri, version, approved: bool):
    decision = ApprovalDecision(approved=approved, reviewer="policy", reason="test", automatic=True)
    return record_approval(uri, "plots", version, decision, "champion", previous_alias="previous-champion")


def test_promotions_keep_the_previous_champion_and_rollback_restores_it(model_dir, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    versions = [log_and_register(uri, "exp", "plots", model_dir, {}, {}, [], {}, [], f"fp-{i}").version
                for i in range(3)]
    assert model_tags(uri, "plots") == {} and model_tags(uri, "missing") is None
    assert alias_version(uri, "plots", "champion") is None and alias_version(uri, "missing", "champion") is None

    decide(uri, versions[0], True)
    assert alias_version(uri, "plots", "champion") == versions[0]
    assert alias_version(uri, "plots", "previous-champion") is None  # nothing was replaced
    decide(uri, versions[1], True)
    assert alias_version(uri, "plots", "previous-champion") == versions[0]
    decide(uri, versions[2], False)  # a rejected challenger moves nothing
    assert alias_version(uri, "plots", "champion") == versions[1]
    assert alias_version(uri, "plots", "previous-champion") == versions[0]

    assert rollback_alias(uri, "plots", "champion", "previous-champion", "drifted") == (versions[1], versions[0])
    assert alias_version(uri, "plots", "champion") == versions[0]
    assert alias_version(uri, "plots", "previous-champion") is None
    assert mlflow.MlflowClient(uri).get_model_version("plots", versions[1]).tags["rolled_back_reason"] == "drifted"
    with pytest.raises(ValueError, match="model 'plots' has no 'previous-champion' alias: nothing to roll back to"):
        rollback_alias(uri, "plots", "champion", "previous-champion", "again")

    set_model_tag(uri, "plots", "last_trained_corpus", "abc")
    assert model_tags(uri, "plots") == {"last_trained_corpus": "abc"}

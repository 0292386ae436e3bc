"""falcon-squad-qa end to end on tiny models: generative (tiny Falcon, SFT path) and extractive (MiniLM span head),
each through the shared release path; the question-answering request format round-trips through the endpoint."""

import json

import mlflow
import pytest

from flows.falcon_squad_qa import DEFAULT_RECIPE_PATH, falcon_squad_qa
from llm_finetune.errors import DataValidationError
from llm_finetune.recipes import QARecipe, load_recipe
from llm_finetune.serving.endpoint import EndpointClient, EndpointError, EndpointHandle, stop_local_endpoint
from tests.conftest import REPO

EXTRACTIVE = REPO / "recipes" / "squad_extractive_minilm.yaml"
COMMON = ("data.max_train_records=32", "data.max_validation_records=8", "endpoint.num_test_records=2",
          "approval.min_metrics={f1: 0.0}", "approval.min_gain_over_base={}", "approval.require_gain=false",
          "evaluation.batch_size=8")


pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def small(path, work_dir, *overrides) -> QARecipe:
    where = (f"work_dir={work_dir}", f"registry.tracking_uri=sqlite:///{work_dir / 'mlflow.db'}")
    return load_recipe(path, QARecipe, [*where, *COMMON, *overrides])


def test_generative_falcon_end_to_end(tmp_path):
    recipe = small(DEFAULT_RECIPE_PATH, tmp_path, "data.max_length=160", "generative.model.tiny.vocab_size=800",
                   "generative.model.tiny.hidden_size=32", "generative.model.tiny.intermediate_size=64",
                   "generative.training.max_steps=6", "generative.training.logging_steps=2",
                   "evaluation.max_new_tokens=8", "endpoint.generation.max_new_tokens=8")
    outcome = falcon_squad_qa(recipe=recipe)

    train_check = outcome.data_check["splits"]["train"]
    assert train_check["records"] == 32 and train_check["dropped"] == 0  # every window kept its answer
    assert outcome.training.adapter_dir is None and outcome.training.merge is None  # a full fine-tune, as shipped
    assert outcome.answers_lost_to_truncation > 0  # 160 tokens cut most SQuAD contexts at evaluation
    assert set(outcome.metrics["finetuned"]) == {"exact_match", "f1"}
    assert outcome.worst and {"question", "prediction", "gold", "f1"} <= set(outcome.worst[0])
    assert outcome.decision.approved and outcome.endpoint_test.num_requests == 2
    version = mlflow.MlflowClient(recipe.tracking_uri()).get_model_version(recipe.registry.model_name,
                                                                           outcome.version.version)
    assert version.tags["served_kind"] == "text-generation"
    assert outcome.caveat.startswith("generative model built offline with random weights: fine-tuning on these "
                                     "questions teaches it no reading comprehension")


def test_extractive_end_to_end_and_question_answering_format(tmp_path):
    recipe = small(EXTRACTIVE, tmp_path, "data.max_length=128", "extractive.doc_stride=32",
                   "extractive.training.max_steps=3", "extractive.training.per_device_train_batch_size=8",
                   "extractive.training.logging_steps=1", "endpoint.keep_running=true")
    outcome = falcon_squad_qa(recipe=recipe)
    handle: EndpointHandle = outcome.running_endpoint
    try:
        assert outcome.decision.approved and outcome.endpoint_test.num_requests == 2 and outcome.caveat is None
        assert outcome.data_check["splits"]["train"]["records_with_several_windows"] > 0
        assert outcome.training.windows > outcome.training.records
        client = EndpointClient(handle.url)
        first = json.loads((REPO.parent / "shared/data/squad/validation.jsonl").read_text().split("\n")[0])
        single = client.invoke({"inputs": {"question": first["question"], "context": first["context"]}})
        assert set(single) == {"answer", "score", "start", "end"}
        assert first["context"][single["start"]:single["end"]] == single["answer"] and 0 <= single["score"] <= 1
        pair = client.invoke({"inputs": [{"question": "Who?", "context": "Ada wrote it."}] * 2,
                              "parameters": {"max_answer_len": 2}})
        assert len(pair) == 2 and pair[0] == pair[1] and len(pair[0]["answer"].split()) <= 2
        with pytest.raises(EndpointError, match="answered 400.*inputs.question: Field required"):
            client.invoke({"inputs": {"context": "No question."}})
    finally:
        stop_local_endpoint(handle)


def test_bad_answer_start_fails_before_any_model_work(tmp_path):
    record = json.loads((REPO.parent / "shared/data/squad/train.jsonl").read_text().split("\n")[0])
    record["answers"]["answer_start"] = [0]
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataValidationError, match=rf"line 1, field 'answers': record id {record['id']}: "):
        falcon_squad_qa(recipe=small(DEFAULT_RECIPE_PATH, tmp_path / "work", f"data.train_uri={bad}"))
    assert not (tmp_path / "work" / "base-models").exists()

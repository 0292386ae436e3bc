"""The chatbot_inference flow end to end: a registered tiny Llama served locally (the real server), a URL with a bearer
token (a contract stand-in that scores predictably), and bad input failing before any endpoint work."""

import json
from pathlib import Path

import mlflow
import pytest

from flows.chatbot_inference import DEFAULT_RECIPE_PATH, chatbot_inference
from llm_finetune.approval import ApprovalDecision
from llm_finetune.errors import DataValidationError, RecipeError
from llm_finetune.models.tiny_causal import build_tiny_causal_lm
from llm_finetune.recipes import ChatInferenceRecipe, TinyCausalSpec, load_recipe
from llm_finetune.registry.mlflow_registry import log_and_register, record_approval
from llm_finetune.serving import server
from llm_finetune.serving.endpoint import EndpointClient, start_local_endpoint, stop_local_endpoint
from tests.chat_helpers import SUITES, contract_app, step_by_step_solver, write_lines
from tests.http_helpers import serving_in_thread
from tests.tiny_causal import one_torch_thread

MODEL = "chat-tiny-llama"
# The chat route comes with the `serve` branch's server; until it is merged the first test cannot pass.
SERVER_HAS_CHAT_ROUTE = "/v1/chat/completions" in Path(server.__file__).read_text()
# Two decoding settings x one length limit, two records per suite: 20 requests in all.
SMALL = ("grid.decoding=[{name: greedy}, {name: sample, do_sample: true, temperature: 0.8, seed: 3}]",
         "grid.max_new_tokens=[8]", "suites.chat.max_records=2", "suites.assistant.max_records=2",
         "suites.cot-arithmetic.max_records=2")


pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> str:
    """The repo's tiny Llama builder, its tokenizer trained on the shipped suites."""
    corpus = [line for path in SUITES.glob("*.jsonl") for line in path.read_text().splitlines()]
    spec = TinyCausalSpec(vocab_size=400, hidden_size=32, intermediate_size=64)
    return str(build_tiny_causal_lm(spec, corpus, tmp_path_factory.mktemp("models"), corpus_key="suites"))


def recipe(work_dir, *overrides) -> ChatInferenceRecipe:
    where = (f"work_dir={work_dir}", f"tracking.tracking_uri=sqlite:///{work_dir / 'mlflow.db'}")
    return load_recipe(DEFAULT_RECIPE_PATH, ChatInferenceRecipe, [*where, *SMALL, *overrides])


def rows_of(outcome, suite: str) -> list[dict]:
    return next(s.rows for s in outcome.suites if s.name == suite)


def outputs_of(outcome, suite: str) -> list[dict]:
    path = next(s.outputs_path for s in outcome.suites if s.name == suite)
    return [json.loads(line) for line in open(path)]


@pytest.mark.skipif(not SERVER_HAS_CHAT_ROUTE, reason="needs the server's chat route (branch `serve`)")
def test_registered_version_served_locally_end_to_end(tmp_path, tiny_llama):
    """Needs the chat route of the `serve` branch's server (POST /v1/chat/completions); on a server without it every
    chat request is refused and the flow fails with 'every request failed'."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = log_and_register(uri, "tiny", MODEL, tiny_llama, params={}, metrics={}, loss_curve=[], tags={},
                               samples=[], training_fingerprint="tiny-llama")
    record_approval(uri, MODEL, version.version, ApprovalDecision(approved=True, reviewer="test", reason="tiny",
                                                                  automatic=True), "champion")
    r = recipe(tmp_path, f"endpoint.registered_model.name={MODEL}",
               f"endpoint.registered_model.tracking_uri={uri}")
    with one_torch_thread():
        outcome = chatbot_inference(recipe=r)

    assert [s.name for s in outcome.suites] == ["chat", "assistant", "cot-arithmetic"]
    assert [s.num_requests for s in outcome.suites] == [4, 4, 12]  # cot: 2 problems x 3 styles
    assert all(s.num_errors == 0 for s in outcome.suites)
    assert [r["setting"] for r in rows_of(outcome, "chat")] == ["greedy/8", "sample/8"]
    cot_rows = rows_of(outcome, "cot-arithmetic")
    assert [(r["setting"], r["style"]) for r in cot_rows][:3] == [
        ("greedy/8", "direct"), ("greedy/8", "zero_shot_cot"), ("greedy/8", "few_shot_cot")]
    for suite in outcome.suites:
        assert suite.tokens_counted_by == ["endpoint"]  # the chat contract reports usage
        for o in outputs_of(outcome, suite.name):
            assert isinstance(o["output"], str) and 0 < o["completion_tokens"] <= 8
            assert o["tokens_per_s"] == pytest.approx(o["completion_tokens"] / (o["latency_ms"] / 1000), rel=0.01)
    cot = outputs_of(outcome, "cot-arithmetic")
    for row in cot_rows:
        scored = [o["correct"] for o in cot if (o["setting"], o["style"]) == (row["setting"], row["style"])]
        assert row["accuracy"] == sum(scored) / len(scored)
    assert not EndpointClient(outcome.endpoint).ping()  # the flow stopped what it started
    run = mlflow.MlflowClient(uri).get_run(outcome.mlflow_run_id)
    assert run.data.metrics["chat/greedy/8/tokens_per_s"] == rows_of(outcome, "chat")[0]["tokens_per_s"]


def test_cot_over_the_inputs_route_of_the_real_server(tmp_path, tiny_llama):
    """Plain-text cot prompts through /invocations: works on today's server (tokens counted with the tokenizer,
    which predates `details`) and on the `serve` branch's (tokens reported by the endpoint)."""
    handle = start_local_endpoint(tiny_llama, "127.0.0.1", 0, tmp_path / "server.log", timeout_s=120)
    try:
        r = recipe(tmp_path, "endpoint.registered_model=null", f"endpoint.url={handle.url}",
                   f"endpoint.tokenizer={tiny_llama}", "suites={cot: {path: " + str(SUITES / "cot_arithmetic.jsonl")
                   + ", kind: cot, route: inputs, max_records: 2, few_shot: 2}}", "tracking=null")
        with one_torch_thread():
            outcome = chatbot_inference(recipe=r)
    finally:
        stop_local_endpoint(handle)
    (suite,) = outcome.suites
    assert suite.num_requests == 12 and suite.num_errors == 0 and outcome.mlflow_run_id is None
    assert suite.tokens_counted_by in (["endpoint"], ["tokenizer"])
    outputs = outputs_of(outcome, "cot")
    assert all(o["completion_tokens"] is not None and o["tokens_per_s"] > 0 for o in outputs)
    assert all(o["correct"] == (o["extracted"] == o["expected"]) for o in outputs)


def test_url_with_bearer_token_scores_each_style(tmp_path, monkeypatch):
    """A stand-in that is right only when asked to reason: accuracy 0 for direct answers, 1 with either cue."""
    monkeypatch.setenv("CHAT_TOKEN", "t0ken")
    seen = []
    with serving_in_thread(contract_app(step_by_step_solver, token="t0ken", seen=seen)) as url:
        outcome = chatbot_inference(recipe=recipe(
            tmp_path, "endpoint.registered_model=null", f"endpoint.url={url}", "endpoint.token_env=CHAT_TOKEN",
            "suites.cot-arithmetic.max_records=4"))
    assert outcome.endpoint == url and outcome.running_endpoint is None
    accuracy = {(r["setting"], r["style"]): r["accuracy"] for r in rows_of(outcome, "cot-arithmetic")}
    assert accuracy == {(s, style): float(style != "direct") for s in ("greedy/8", "sample/8")
                        for style in ("direct", "zero_shot_cot", "few_shot_cot")}
    assert len(seen) == 4 + 4 + 24 and all(s["authorization"] == "Bearer t0ken" for s in seen)
    assert {s["path"] for s in seen} == {"/v1/chat/completions"}
    sample = [s["body"] for s in seen if s["body"].get("do_sample")]
    assert all(b["temperature"] == 0.8 and b["seed"] == 3 and b["max_tokens"] == 8 for b in sample)
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(outcome.mlflow_run_id)
    assert run.data.metrics["cot-arithmetic/greedy/8/zero_shot_cot/accuracy"] == 1.0
    assert run.data.metrics["cot-arithmetic/greedy/8/direct/accuracy"] == 0.0


def test_bad_input_fails_before_any_endpoint_work(tmp_path):
    bad = write_lines(tmp_path / "chat.jsonl", {"id": "1", "messages": [{"role": "user"}]})
    with pytest.raises(DataValidationError, match=rf"{bad}, line 1, field 'messages\[0\].content': missing"):
        chatbot_inference(recipe=recipe(tmp_path, f"suites.chat.path={bad}"))  # the registered model does not exist
    assert not (tmp_path / "endpoints").exists()
    with pytest.raises(RecipeError, match="endpoint.token_env names the environment variable NO_SUCH_TOKEN"):
        chatbot_inference(recipe=recipe(tmp_path, "endpoint.registered_model=null", "endpoint.url=http://x",
                                        "endpoint.token_env=NO_SUCH_TOKEN"))
    with pytest.raises(RecipeError, match=r"registered model 'dolly-llama2-tiny' has no version with alias "
                                          r"'champion' in sqlite"):
        chatbot_inference(recipe=recipe(tmp_path))

"""The chat models under test: HTTP and SageMaker endpoints (the chat wire contract) and in-process models."""

import json
import urllib.request
from pathlib import Path

import pytest

from llm_finetune.fingerprint import fingerprint
from llm_finetune.models.tiny_causal import build_tiny_causal_lm
from llm_finetune.probes.chat_models import (
    EndpointChatModel,
    LocalChatModel,
    ProbeTarget,
    answer_all,
    open_chat_model,
    resolve_target,
)
from llm_finetune.recipes.base import ChatSettings
from llm_finetune.recipes.instruction import TinyCausalSpec
from llm_finetune.recipes.probes import ProbeModelSpec
from llm_finetune.serving.client import EndpointError, SageMakerInferenceClient
from tests.chat_helpers import contract_app
from tests.http_helpers import serving_in_thread
from tests.probe_helpers import asked
from tests.tiny_causal import one_torch_thread

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}]
CORPUS = ["Name a fruit.", "Be brief.", "List three colours.", "apple banana cherry"]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-models")
    return build_tiny_causal_lm(TinyCausalSpec(vocab_size=300), CORPUS, root, fingerprint(CORPUS))


def test_http_endpoint_gets_the_chat_contract_with_the_token_named_by_token_env(monkeypatch):
    seen = []
    monkeypatch.setenv("PROBE_TOKEN_FOR_TEST", "s3cret")
    with serving_in_thread(contract_app(asked(lambda text: f"echo: {text}"), token="s3cret", seen=seen)) as url:
        target = ProbeTarget(name="ep", kind="http", location=url, token_env="PROBE_TOKEN_FOR_TEST")
        model = open_chat_model(target)
        assert model.chat(MESSAGES, max_tokens=12, temperature=0.0, seed=7) == "echo: Name a fruit."
        assert seen[0] == {"path": "/v1/chat/completions", "authorization": "Bearer s3cret",
                           "body": {"messages": MESSAGES, "max_tokens": 12, "temperature": 0.0, "seed": 7}}
        answers = answer_all(model, [MESSAGES, [{"role": "user", "content": "Hi."}]], ChatSettings(max_tokens=3))
        assert answers == ["echo: Name a fruit.", "echo: Hi."]
        monkeypatch.setenv("PROBE_TOKEN_FOR_TEST", "wrong")
        with pytest.raises(EndpointError, match=r"/v1/chat/completions answered 401: .*wrong bearer token"):
            open_chat_model(target).chat(MESSAGES, 12, 0.0, 7)
    monkeypatch.delenv("PROBE_TOKEN_FOR_TEST")
    with pytest.raises(EndpointError, match="PROBE_TOKEN_FOR_TEST"):
        open_chat_model(target)


def test_sagemaker_endpoint_answers_through_the_same_adapter(moto_endpoint):
    region = "eu-west-3"  # a queue of canned answers of its own on the shared moto server
    answer = {"choices": [{"message": {"role": "assistant", "content": "an apple"}, "finish_reason": "stop"}]}
    request = urllib.request.Request(
        f"{moto_endpoint}/moto-api/static/sagemaker/endpoint-results", method="POST",
        data=json.dumps({"region": region, "results": [{"Body": json.dumps(answer)}, {"Body": "[]"}]}).encode())
    urllib.request.urlopen(request).close()
    client = SageMakerInferenceClient("chat-endpoint", region=region, endpoint_url=moto_endpoint)
    model = EndpointChatModel("sm", client)
    assert model.chat(MESSAGES, 8, 0.0, 0) == "an apple"
    with pytest.raises(EndpointError, match=r"SageMaker endpoint chat-endpoint answered .*expected a chat completion"):
        model.chat([{"role": "user", "content": "again"}], 8, 0.0, 0)


def test_local_model_batches_like_one_by_one_and_folds_a_refused_system_role(tiny_llama, tmp_path):
    with one_torch_thread():
        model = LocalChatModel("tiny", str(tiny_llama))
        assert not model.folds_system  # the Llama-2 template has a system block
        conversations = [MESSAGES, [{"role": "user", "content": "List three colours."}]]
        batched = model.chat_batch(conversations, ChatSettings(max_tokens=6, batch_size=2))
        assert batched == [model.chat(c, max_tokens=6, temperature=0.0, seed=None) for c in conversations]
        assert any(batched)

        strict = model.generator.tokenizer
        strict.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                                "{{ raise_exception('no system role') }}{% endif %}[INST] {{ m['content'] }} [/INST]"
                                "{% endfor %}")
        strict.save_pretrained(tmp_path / "strict")
        model.generator.model.save_pretrained(tmp_path / "strict")
        folding = LocalChatModel("strict", str(tmp_path / "strict"))
        assert folding.folds_system
        folded = [{"role": "user", "content": "Be brief.\n\nName a fruit."}]
        assert folding.chat(MESSAGES, 6, 0.0, None) == folding.chat(folded, 6, 0.0, None)


def test_registered_versions_resolve_by_number_and_alias(tiny_llama, tmp_path):
    import mlflow

    from llm_finetune.registry.mlflow_registry import log_and_register

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = log_and_register(uri, "exp", "probed", str(tiny_llama), {}, {}, [], {}, [], "fp-probe")
    mlflow.MlflowClient(uri).set_registered_model_alias("probed", "candidate", version.version)
    for uri_text in (f"models:/probed/{version.version}", "models:/probed@candidate"):
        target = resolve_target(ProbeModelSpec(name="reg", registered=uri_text), CORPUS, tmp_path / "work", uri)
        assert target.kind == "local" and (target.key is not None)
        location = Path(target.location)
        assert tmp_path / "work" / "registered-models" in location.parents
        assert json.loads((location / "config.json").read_text())["model_type"] == "llama"


def test_model_specs_need_exactly_one_source():
    with pytest.raises(ValueError, match="set exactly one of 'name_or_path', 'registered'.*got name_or_path, tiny"):
        ProbeModelSpec(name="x", name_or_path="a/b", tiny={})
    with pytest.raises(ValueError, match="models:/NAME/VERSION or models:/NAME@ALIAS"):
        ProbeModelSpec(name="x", registered="runs:/abc/model")

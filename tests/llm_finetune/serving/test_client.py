"""The one inference client: HTTP (bearer token, chat and generate bodies of the wire contract) and SageMaker runtime
(InvokeEndpoint on a moto server), chosen from the endpoint input."""

import json

import pytest
import requests

from llm_finetune.errors import RecipeError
from llm_finetune.probes.chat_inference import client_for
from llm_finetune.recipes import InferenceTarget
from llm_finetune.serving.client import (
    EndpointError,
    EndpointUnreachable,
    HttpInferenceClient,
    InferenceClient,
    SageMakerInferenceClient,
)
from llm_finetune.serving.endpoint import EndpointClient
from tests.chat_helpers import contract_app
from tests.http_helpers import serving_in_thread

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}]


def test_http_chat_and_generate_send_the_contract_with_the_token():
    seen = []
    with serving_in_thread(contract_app(lambda body: "hi there", token="s3cret", seen=seen)) as url:
        client = HttpInferenceClient(url, token="s3cret")
        assert isinstance(client, InferenceClient) and client.ping()
        answer = client.chat(MESSAGES, max_tokens=8, temperature=None, do_sample=False, seed=3)
        generated = client.generate("Say hi.", {"max_new_tokens": 8, "top_p": None, "details": True})
        with pytest.raises(EndpointError) as err:
            HttpInferenceClient(url, token="wrong").chat(MESSAGES)
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "hi there"}
    assert answer["usage"]["completion_tokens"] == 2
    assert generated == [{"generated_text": "hi there", "details": {"finish_reason": "stop", "generated_tokens": 2}}]
    assert seen[0] == {"path": "/v1/chat/completions", "authorization": "Bearer s3cret",
                       "body": {"messages": MESSAGES, "max_tokens": 8, "do_sample": False, "seed": 3}}  # no nulls
    assert seen[1] == {"path": "/invocations", "authorization": "Bearer s3cret",
                       "body": {"inputs": "Say hi.", "parameters": {"max_new_tokens": 8, "details": True}}}
    assert err.value.status == 401 and "missing or wrong bearer token" in str(err.value)
    assert "s3cret" not in repr(client)


def test_http_errors_say_what_happened():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    with serving_in_thread(contract_app(lambda body: "x")) as url:
        pass  # stopped: nothing listens there any more
    with pytest.raises(EndpointUnreachable, match=r"/v1/chat/completions: no answer") as err:
        HttpInferenceClient(url, timeout_s=2).chat(MESSAGES)
    assert err.value.status is None and isinstance(err.value, EndpointError)

    odd = FastAPI()
    odd.post("/v1/chat/completions")(lambda: {"text": "not a completion"})
    odd.post("/invocations")(lambda: JSONResponse({"error": "generation failed: boom"}, status_code=500))
    with serving_in_thread(odd) as url:
        with pytest.raises(EndpointError, match=r"/v1/chat/completions answered .*expected a chat completion"):
            HttpInferenceClient(url).chat(MESSAGES)
        with pytest.raises(EndpointError, match=r"/invocations answered 500: .*generation failed: boom") as err:
            HttpInferenceClient(url).generate("x")
    assert err.value.status == 500


def test_endpoint_client_is_still_importable_from_endpoint_module():
    assert EndpointClient is HttpInferenceClient


@pytest.fixture
def runtime_results(moto_endpoint):
    """Queue answers for moto's InvokeEndpoint (it keeps no record of bodies: the client's hook does)."""
    def queue(*bodies):
        results = [{"Body": json.dumps(b), "ContentType": "application/json"} for b in bodies]
        requests.post(f"{moto_endpoint}/moto-api/static/sagemaker/endpoint-results", json={"results": results},
                      timeout=10).raise_for_status()
    return queue


def sent_bodies(client: SageMakerInferenceClient) -> list[dict]:
    """Every InvokeEndpoint request the client sends (url, headers, JSON body), captured before it leaves."""
    sent = []
    client.runtime.meta.events.register(
        "before-send.sagemaker-runtime.InvokeEndpoint",
        lambda request, **_: sent.append({"url": request.url, "headers": {
            k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()},
                                          "body": json.loads(request.body)}))
    return sent


def test_sagemaker_chat_and_generate(moto_endpoint, runtime_results):
    chat_answer = {"id": "1", "object": "chat.completion", "created": 0, "model": "tgi",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    runtime_results(chat_answer, {"generated_text": "Hi", "details": {"finish_reason": "length",
                                                                      "generated_tokens": 1}})
    client = client_for(InferenceTarget(sagemaker_endpoint="falcon-chat", aws_endpoint_url=moto_endpoint,
                                        region="us-east-1"))
    assert isinstance(client, SageMakerInferenceClient)
    sent = sent_bodies(client)
    assert client.chat(MESSAGES, max_tokens=16, temperature=0.7, do_sample=True, seed=1, top_k=None) == chat_answer
    # TGI on SageMaker answers one input with an object: the client returns a list either way
    assert client.generate("Hi", {"max_new_tokens": 4, "details": True}) == [
        {"generated_text": "Hi", "details": {"finish_reason": "length", "generated_tokens": 1}}]
    assert [s["url"] for s in sent] == [f"{moto_endpoint}/endpoints/falcon-chat/invocations"] * 2
    assert all(s["headers"]["Content-Type"] == "application/json" and s["headers"]["Accept"] == "application/json"
               for s in sent)
    assert [s["body"] for s in sent] == [
        {"messages": MESSAGES, "max_tokens": 16, "temperature": 0.7, "do_sample": True, "seed": 1},
        {"inputs": "Hi", "parameters": {"max_new_tokens": 4, "details": True}}]


def test_sagemaker_answer_that_is_not_the_contract_is_an_error(moto_endpoint, runtime_results):
    runtime_results({"unexpected": True})
    client = SageMakerInferenceClient("odd-endpoint", endpoint_url=moto_endpoint, region="us-east-1")
    with pytest.raises(EndpointError, match=r"SageMaker endpoint odd-endpoint answered .*expected a chat completion"):
        client.chat(MESSAGES)


def test_factory_picks_the_client_and_reads_the_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("CHAT_TOKEN", "abc")
    client = client_for(InferenceTarget(url="http://127.0.0.1:9/", token_env="CHAT_TOKEN", timeout_s=5))
    assert isinstance(client, HttpInferenceClient) and client.token == "abc" and client.url == "http://127.0.0.1:9"
    deployed = client_for(InferenceTarget(registered_model={"name": "m", "alias": "champion"}), "http://h:1")
    assert isinstance(deployed, HttpInferenceClient) and deployed.url == "http://h:1" and deployed.token is None
    monkeypatch.delenv("CHAT_TOKEN")
    with pytest.raises(RecipeError, match="endpoint.token_env names the environment variable CHAT_TOKEN, which is not"):
        client_for(InferenceTarget(url="http://127.0.0.1:9/", token_env="CHAT_TOKEN"))


def test_http_client_sends_the_token_a_local_server_reads(monkeypatch):
    """A flow that deploys a server under $LLMFT_ENDPOINT_TOKEN must reach it without passing the token around."""
    from llm_finetune.serving.client import TOKEN_ENV, HttpInferenceClient

    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    assert HttpInferenceClient("http://127.0.0.1:1").token == "s3cret"
    assert HttpInferenceClient("http://127.0.0.1:1", token="other").token == "other"
    monkeypatch.delenv(TOKEN_ENV)
    assert HttpInferenceClient("http://127.0.0.1:1").token is None

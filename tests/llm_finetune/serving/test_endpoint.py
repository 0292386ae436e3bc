import pytest

from llm_finetune.generation import GenerationParams
from llm_finetune.serving.endpoint import EndpointClient, EndpointError, start_local_endpoint, stop_local_endpoint
from llm_finetune.serving.server import InvocationError, parse_invocation


@pytest.fixture(scope="module")
def endpoint(trained_tiny_model, tmp_path_factory):
    handle = start_local_endpoint(trained_tiny_model["finetuned"], "127.0.0.1", 0,
                                  tmp_path_factory.mktemp("ep") / "server.log", timeout_s=120)
    yield handle
    stop_local_endpoint(handle)


def test_round_trip(endpoint, trained_tiny_model):
    from llm_finetune.summarizer import Summarizer

    client = EndpointClient(endpoint.url)
    assert client.ping()
    dialogue = "#Person1#: Hello, I'd like to book a table for two tonight.\n#Person2#: Sure, at what time?"
    single = client.invoke({"inputs": dialogue, "parameters": {"max_new_tokens": 16}})
    local = Summarizer(trained_tiny_model["finetuned"]).summarize([dialogue], GenerationParams(max_new_tokens=16))
    assert single == [{"summary_text": local[0]}] and local[0]
    many = client.invoke({"inputs": [dialogue, dialogue + "\n#Person1#: At eight."]})
    assert len(many) == 2 and all(r["summary_text"] for r in many)


@pytest.mark.parametrize("payload, message", [
    ({"text": "x"}, "'inputs' field"),
    ({"inputs": []}, "non-empty"),
    ({"inputs": "x", "parameters": {"temperature": 2}}, "unsupported parameters"),
])
def test_bad_requests_get_400(endpoint, payload, message):
    with pytest.raises(EndpointError, match=rf"answered 400: .*{message}"):
        EndpointClient(endpoint.url).invoke(payload)


def test_stop_ends_the_server(trained_tiny_model, tmp_path):
    handle = start_local_endpoint(trained_tiny_model["finetuned"], "127.0.0.1", 0, tmp_path / "log", timeout_s=120)
    assert EndpointClient(handle.url).ping()
    stop_local_endpoint(handle)
    assert not EndpointClient(handle.url).ping()


def test_server_that_cannot_load_reports_log(tmp_path):
    with pytest.raises(EndpointError, match="exited with code"):
        start_local_endpoint(tmp_path / "no-model", "127.0.0.1", 0, tmp_path / "log", timeout_s=60)
    assert (tmp_path / "log").read_text()


def test_parse_invocation():
    assert parse_invocation(b'{"inputs": "d", "parameters": {"max_new_tokens": "8"}}') == (["d"], {"max_new_tokens": 8}, True)
    with pytest.raises(InvocationError, match="not valid JSON"):
        parse_invocation(b"{")

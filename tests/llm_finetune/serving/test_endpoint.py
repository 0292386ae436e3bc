import json
from pathlib import Path

import pytest

from llm_finetune.generation import GenerationParams
from llm_finetune.serving.endpoint import EndpointClient, EndpointError, start_local_endpoint, stop_local_endpoint
from llm_finetune.serving.server import InvocationError, create_app, parse_invocation
from tests.http_helpers import assert_still_serving, invoke, request, send_and_hang_up, serving_in_thread
from tests.serving_helpers import FlakyModel, wait_until

MAX_BODY = 20_000  # the module's server runs with --max-body-bytes 20000
DIALOGUE = "#Person1#: Hello, I'd like to book a table for two tonight.\n#Person2#: Sure, at what time?"


@pytest.fixture(scope="module")
def endpoint(trained_tiny_model, tmp_path_factory):
    handle = start_local_endpoint(trained_tiny_model["finetuned"], "127.0.0.1", 0,
                                  tmp_path_factory.mktemp("ep") / "server.log", timeout_s=120,
                                  max_body_bytes=MAX_BODY)
    yield handle
    stop_local_endpoint(handle)


def test_round_trip(endpoint, trained_tiny_model):
    from llm_finetune.inference.summarizer import Summarizer

    client = EndpointClient(endpoint.url)
    assert client.ping()
    single = client.invoke({"inputs": DIALOGUE, "parameters": {"max_new_tokens": 16}})
    local = Summarizer(trained_tiny_model["finetuned"]).summarize([DIALOGUE], GenerationParams(max_new_tokens=16))
    assert single == [{"summary_text": local[0]}] and local[0]
    many = client.invoke({"inputs": [DIALOGUE, DIALOGUE + "\n#Person1#: At eight."]})
    assert len(many) == 2 and all(r["summary_text"] for r in many)


def test_request_parameters_reach_generate(endpoint, trained_tiny_model):
    from llm_finetune.inference.summarizer import Summarizer

    plain = GenerationParams(max_new_tokens=32, no_repeat_ngram_size=0, repetition_penalty=1.0)
    no_repeat = plain.model_copy(update={"no_repeat_ngram_size": 2})
    summarizer = Summarizer(trained_tiny_model["finetuned"])
    local = [summarizer.summarize([DIALOGUE], g)[0] for g in (plain, no_repeat)]
    client = EndpointClient(endpoint.url)
    served = [client.invoke({"inputs": DIALOGUE, "parameters": g.model_dump()})[0]["summary_text"]
              for g in (plain, no_repeat)]
    assert served == local and local[0] != local[1]


@pytest.mark.parametrize("payload, message", [
    ({"inputs": "hi", "parameters": {"max_new_tokens": -1}},
     "parameters.max_new_tokens: Input should be greater than or equal to 1"),
    ({"inputs": "hi", "parameters": {"max_new_tokens": 100_000}},
     "parameters.max_new_tokens: Input should be less than or equal to 2048"),
    ({"inputs": "hi", "parameters": {"temprature": 2}}, "parameters.temprature: Extra inputs are not permitted"),
    ({"inputs": "hi", "parameters": {"temperature": 0}}, "parameters.temperature: Input should be greater than 0"),
    ({"inputs": "hi", "parameters": {"num_beams": "many"}},
     "parameters.num_beams: Input should be a valid integer, unable to parse string as an integer"),
    ({"inputs": "hi", "parameters": {"num_beams": True}},
     "parameters.num_beams: Input should be a number, not a boolean"),
    ({"inputs": "hi", "parameters": {"repetition_penalty": 0}},
     "parameters.repetition_penalty: Input should be greater than 0"),
    ({"inputs": "hi", "parameters": {"no_repeat_ngram_size": -2}},
     "parameters.no_repeat_ngram_size: Input should be greater than or equal to 0"),
    ({"text": "x"}, "inputs: Field required; text: Extra inputs are not permitted"),
    ({"inputs": []}, "inputs: must be a non-empty string or a non-empty list of non-empty strings"),
    ({"inputs": ["ok", 3]}, "inputs: must be a non-empty string or a non-empty list of non-empty strings"),
    (["hi"], "body: Input should be an object"),
])
def test_bad_requests_get_400_naming_the_field(endpoint, payload, message):
    assert invoke(endpoint.url, payload) == (400, {"error": message})
    assert_still_serving(endpoint.url)


def test_chat_messages_to_a_text2text_model_get_400(endpoint):
    status, body = request(endpoint.url, "POST", "/v1/chat/completions",
                           json.dumps({"messages": [{"role": "user", "content": DIALOGUE}]}).encode())
    assert (status, body) == (400, {"error": 'messages: this text2text-generation model takes {"inputs": ...}, not chat'})
    assert_still_serving(endpoint.url)


def test_details_and_max_length_on_a_text2text_model(endpoint, trained_tiny_model):
    from llm_finetune.inference.summarizer import Summarizer

    local = Summarizer(trained_tiny_model["finetuned"]).summarize([DIALOGUE], GenerationParams(max_new_tokens=6))
    status, body = invoke(endpoint.url, {"inputs": DIALOGUE, "parameters": {"max_length": 7, "details": True}})
    assert status == 200 and body[0]["summary_text"] == local[0]
    assert body[0]["details"]["generated_tokens"] <= 6 and body[0]["details"]["finish_reason"] in ("length", "eos_token")


def test_malformed_json_gets_400(endpoint):
    status, body = request(endpoint.url, "POST", "/invocations", b'{"inputs": "hi"')
    assert status == 400 and body["error"].startswith("body: Invalid JSON: EOF while parsing")
    assert_still_serving(endpoint.url)


def test_unknown_route_and_wrong_method_get_json_errors(endpoint):
    assert request(endpoint.url, "GET", "/nope") == (404, {"error": "Not Found: GET /nope"})
    assert request(endpoint.url, "POST", "/nope", b"{}") == (404, {"error": "Not Found: POST /nope"})
    assert request(endpoint.url, "GET", "/invocations") == (405, {"error": "Method Not Allowed: GET /invocations"})
    assert_still_serving(endpoint.url)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_gets_413(endpoint, chunked):
    body = json.dumps({"inputs": "x" * MAX_BODY}).encode()  # valid JSON, only too large
    sent = (body[i : i + 4096] for i in range(0, len(body), 4096)) if chunked else body
    status, answer = request(endpoint.url, "POST", "/invocations", sent)
    assert (status, answer) == (413, {"error": f"request body is over the limit of {MAX_BODY} bytes (--max-body-bytes)"})
    assert_still_serving(endpoint.url)


def test_chunked_body_under_the_limit_is_served(endpoint):
    body = json.dumps({"inputs": DIALOGUE, "parameters": {"max_new_tokens": 8}}).encode()
    chunked = request(endpoint.url, "POST", "/invocations", (body[i : i + 10] for i in range(0, len(body), 10)))
    assert chunked == request(endpoint.url, "POST", "/invocations", body)
    assert chunked[0] == 200 and chunked[1][0]["summary_text"]


def test_an_upload_the_client_drops_is_no_server_error(endpoint):
    log = Path(endpoint.log_path)
    start = log.stat().st_size

    def logged() -> str:
        return log.read_bytes()[start:].decode(errors="replace")

    body = json.dumps({"inputs": DIALOGUE}).encode()
    send_and_hang_up(endpoint.url, "/invocations", body[: len(body) // 2], content_length=len(body))
    wait_until(lambda: "the client closed the connection" in logged() or "Traceback" in logged())
    assert_still_serving(endpoint.url)
    assert "Traceback" not in logged() and "generation failed" not in logged() and "500" not in logged()
    assert "POST /invocations: the client closed the connection" in logged()


def test_generation_error_gets_500_and_the_server_keeps_serving():
    with serving_in_thread(create_app(FlakyModel())) as url:
        assert invoke(url, {"inputs": "fail"}) == (500, {"error": "generation failed: RuntimeError: out of memory (simulated)"})
        assert_still_serving(url)


def test_parameters_reach_the_generator_validated_with_defaults():
    summarizer = FlakyModel()
    with serving_in_thread(create_app(summarizer)) as url:
        assert invoke(url, {"inputs": ["a", "b"], "parameters": {"no_repeat_ngram_size": 2}}) == (
            200, [{"summary_text": "summary of a"}, {"summary_text": "summary of b"}])
        assert invoke(url, {"inputs": "c", "parameters": None})[0] == 200
    assert summarizer.calls == [(["a", "b"], GenerationParams(no_repeat_ngram_size=2)), (["c"], GenerationParams())]


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
    parsed = parse_invocation(b'{"inputs": "d", "parameters": {"max_new_tokens": "8"}}')
    assert parsed.inputs == ["d"] and parsed.parameters.generation() == GenerationParams(max_new_tokens=8)
    with pytest.raises(InvocationError) as err:  # every bad field, in one message
        parse_invocation(b'{"inputs": "d", "parameters": {"num_beams": 0, "max_new_tokens": 1.5}}')
    assert str(err.value) == ("parameters.max_new_tokens: Input should be a valid integer, got a number with a "
                              "fractional part; parameters.num_beams: Input should be greater than or equal to 1")

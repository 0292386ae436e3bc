"""Request checking, auth, batching and stream cutting, on a stand-in model (no weights)."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_finetune.generation import GenerationParams, cut_at_stop
from llm_finetune.serving.batching import Batcher
from llm_finetune.serving.server import INLINE_ENCODE_CHARS, create_app, is_loopback, main
from llm_finetune.serving.streaming import StreamedAnswer
from tests.http_helpers import assert_still_serving, request, serving_in_thread
from tests.serving_helpers import FlakyModel, wait_until

CHAT = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def url():
    with serving_in_thread(create_app(FlakyModel())) as url:
        yield url


def post(url, path, payload, headers=None):
    return request(url, "POST", path, json.dumps(payload).encode(), headers)


@pytest.mark.parametrize("parameters, message", [
    ({"max_length": 0}, "parameters.max_length: Input should be greater than or equal to 1"),
    ({"max_length": True}, "parameters.max_length: Input should be a number, not a boolean"),
    ({"max_length": 20, "max_new_tokens": 5}, "parameters: give max_new_tokens or max_length, not both"),
    ({"return_full_text": "yes"}, "parameters.return_full_text: Input should be a valid boolean"),
    ({"details": 1}, "parameters.details: Input should be a valid boolean"),
    ({"seed": -1}, "parameters.seed: Input should be greater than or equal to 0"),
    ({"seed": 2**64}, "parameters.seed: Input should be less than or equal to 18446744073709551615"),
    ({"stop": [""]}, "parameters.stop.0: String should have at least 1 character"),
    ({"stop": 5}, "parameters.stop: Input should be a valid array"),
    ({"stop": ["x"] * 17}, "parameters.stop: List should have at most 16 items after validation, not 17"),
    ({"top_p": 1.5}, "parameters.top_p: Input should be less than or equal to 1"),
    ({"top_k": -1}, "parameters.top_k: Input should be greater than or equal to 0"),
    ({"temperature": 11}, "parameters.temperature: Input should be less than or equal to 10"),
    ({"do_sample": "maybe"}, "parameters.do_sample: Input should be a valid boolean, unable to interpret input"),
    ({"return_full_text": True}, "parameters.return_full_text: a text2text-generation model answers with new text only"),
])
def test_bad_inputs_parameters_get_400_naming_them(url, parameters, message):
    assert post(url, "/invocations", {"inputs": "hi", "parameters": parameters}) == (400, {"error": message})
    assert_still_serving(url)


@pytest.mark.parametrize("body, message", [
    ({"messages": None}, "messages: Input should be a valid array"),
    ({"messages": []}, "messages: List should have at least 1 item after validation, not 0"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role: Input should be 'system', 'user' or 'assistant'"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages.0.content: Input should be a valid string"),
    ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    ({"max_tokens": 4096}, "max_tokens: Input should be less than or equal to 2048"),
    ({"temperature": -1}, "temperature: Input should be greater than 0"),
    ({"temperature": 0, "do_sample": True}, "temperature: 0 means greedy decoding; give a temperature > 0 to sample"),
    ({"top_p": 0}, "top_p: Input should be greater than 0"),
    ({"top_k": "many"}, "top_k: Input should be a valid integer, unable to parse string as an integer"),
    ({"seed": "x"}, "seed: Input should be a valid integer, unable to parse string as an integer"),
    ({"stop": [1]}, "stop.0: Input should be a valid string"),
    ({"do_sample": "maybe"}, "do_sample: Input should be a valid boolean, unable to interpret input"),
    ({"num_beams": 17}, "num_beams: Input should be less than or equal to 16"),
    ({"repetition_penalty": 0}, "repetition_penalty: Input should be greater than 0"),
    ({"no_repeat_ngram_size": True}, "no_repeat_ngram_size: Input should be a number, not a boolean"),
    ({"stream": "yes"}, "stream: Input should be a valid boolean"),
    ({"n": 2}, "n: Input should be 1"),
    ({"frequency_penalty": 1}, "frequency_penalty: Extra inputs are not permitted"),
    ({"max_tokens": 0, "top_p": 2}, ("max_tokens: Input should be greater than or equal to 1; "
                                     "top_p: Input should be less than or equal to 1")),
    ({"stream": True, "num_beams": 2}, "stream: not available with num_beams > 1 (beam search decides at the end)"),
])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/invocations"])
def test_bad_chat_fields_get_400_naming_them(url, path, body, message):
    assert post(url, path, {"messages": CHAT, **body}) == (400, {"error": message})
    assert_still_serving(url)


def test_inputs_sampling_settings_imply_sampling_as_tgi():
    from llm_finetune.serving.protocol import parse_invocation

    def sampled(parameters: dict) -> bool:
        return parse_invocation(json.dumps({"inputs": "x", "parameters": parameters}).encode()).parameters.do_sample

    assert not sampled({}) and not sampled({"temperature": 1.0}) and not sampled({"top_k": 0, "top_p": 1.0})
    assert sampled({"temperature": 0.7}) and sampled({"top_p": 0.9}) and sampled({"top_k": 20})
    assert not sampled({"temperature": 0.7, "do_sample": False})


def test_a_failing_request_in_a_batch_fails_alone():
    gate = threading.Event()
    model = FlakyModel(gate)
    app = create_app(model, max_batch_size=4, max_batch_wait_ms=100)
    with serving_in_thread(app) as url, ThreadPoolExecutor(3) as pool:
        # other settings than the next two: it runs alone, and holds the worker at the gate
        first = pool.submit(post, url, "/invocations", {"inputs": "first", "parameters": {"max_new_tokens": 5}})
        wait_until(model.entered.is_set)
        rest = [pool.submit(post, url, "/invocations", {"inputs": x}) for x in ("ok", "fail")]
        wait_until(lambda: app.state.batcher._queue.qsize() == 2)  # both queued: they share the next batch
        gate.set()
        assert first.result() == (200, [{"summary_text": "summary of first"}])
        assert rest[0].result() == (200, [{"summary_text": "summary of ok"}])
        assert rest[1].result() == (500, {"error": "generation failed: RuntimeError: out of memory (simulated)"})
        assert_still_serving(url)
    calls = [sorted(c[0]) for c in model.calls]
    assert calls[:2] == [["first"], ["fail", "ok"]] and sorted(calls[2:4]) == [["fail"], ["ok"]]


def run_batches(submissions: list[tuple[str, object]], max_batch_size: int = 4,
                gone: frozenset[str] = frozenset()) -> list[list[str]]:
    """The batches a Batcher forms from submissions (payload, key) queued while its worker is busy; those in `gone`
    are cancelled while queued, as the server does when their client closes the connection."""
    gate, batches = threading.Event(), []

    def run(payloads):
        gate.wait(timeout=30)
        batches.append(payloads)
        return payloads

    async def scenario():
        batcher = Batcher(run, max_batch_size=max_batch_size, max_wait_ms=0)
        busy = asyncio.ensure_future(batcher.submit("busy", key=None))  # first in, alone, held at the gate
        queued = {p: asyncio.ensure_future(batcher.submit(p, key=k)) for p, k in submissions}
        await asyncio.sleep(0.05)
        for p in gone:
            queued[p].cancel()
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(busy, *(f for p, f in queued.items() if p not in gone))
        batcher.close()
        return results

    results = asyncio.run(scenario())
    assert results == ["busy", *[p for p, _ in submissions if p not in gone]]
    return batches[1:]


def test_batches_group_equal_keys_in_arrival_order_up_to_the_size():
    submissions = [("a1", "A"), ("b1", "B"), ("a2", "A"), ("s1", None), ("a3", "A"), ("s2", None), ("b2", "B"),
                   ("a4", "A"), ("a5", "A")]
    assert run_batches(submissions) == [["a1", "a2", "a3", "a4"], ["b1", "b2"], ["s1"], ["s2"], ["a5"]]


def test_batching_off_runs_one_at_a_time():
    assert run_batches([("a1", "A"), ("a2", "A")], max_batch_size=1) == [["a1"], ["a2"]]


def test_a_request_whose_client_went_while_queued_is_never_run():
    assert run_batches([("a1", "A"), ("gone", "A"), ("a2", "A")], gone=frozenset({"gone"})) == [["a1", "a2"]]


def test_seeded_sampling_and_settings_make_the_batch_key():
    from llm_finetune.inference.served import batch_key

    greedy = GenerationParams(max_new_tokens=8)
    assert batch_key(greedy, None) == batch_key(greedy.model_copy(update={"seed": 3}), None)  # seed unused
    assert batch_key(greedy, None) != batch_key(greedy.model_copy(update={"max_new_tokens": 9}), None)
    assert batch_key(greedy, None) != batch_key(greedy, 20)
    sampling = greedy.model_copy(update={"do_sample": True})
    assert batch_key(sampling, None) is not None and batch_key(sampling, None) != batch_key(greedy, None)
    assert batch_key(sampling.model_copy(update={"seed": 3}), None) is None


def test_bearer_token_is_required_when_set():
    with serving_in_thread(create_app(FlakyModel(), auth_token="s3cret")) as url:
        refused = (401, {"error": "missing or wrong bearer token (header 'Authorization: Bearer <token>'): "
                                  "POST /invocations"})
        assert post(url, "/invocations", {"inputs": "hi"}) == refused
        assert post(url, "/invocations", {"inputs": "hi"}, {"Authorization": "Bearer wrong"}) == refused
        assert post(url, "/invocations", {"inputs": "hi"}, {"Authorization": "Basic s3cret"}) == refused
        status, body = post(url, "/v1/chat/completions", {"messages": CHAT})
        assert status == 401 and body["error"].endswith("POST /v1/chat/completions")
        assert post(url, "/invocations", {"inputs": "hi"}, {"Authorization": "Bearer s3cret"}) == (
            200, [{"summary_text": "summary of hi"}])
        assert request(url, "GET", "/ping") == (200, {"status": "healthy"})  # health checks need no token


def test_refuses_a_non_loopback_host_without_a_token(capsys, monkeypatch):
    monkeypatch.delenv("LLMFT_ENDPOINT_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--model", "does-not-matter", "--host", "0.0.0.0"])
    assert exit_.value.code == 2
    assert ("--host 0.0.0.0 is not a loopback address: set a bearer token with --auth-token or "
            "$LLMFT_ENDPOINT_TOKEN, or serve on 127.0.0.1") in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.com")


@pytest.mark.parametrize("stop", [[], ["ab"], ["b", "xyz"], ["\n\n"]])
def test_streamed_pieces_concatenate_to_the_cut_answer(stop):
    text = "  one ab two\n\nthree xy b  "
    for step in (1, 2, 3):  # the decoded answer grows by `step` characters per token
        answer, sent = StreamedAnswer(stop), ""
        for end in range(step, len(text) + step, step):
            piece = answer.feed(text[:end])
            sent += piece
            assert cut_at_stop(text, stop).strip().startswith(sent)
        sent += answer.finish(text)
        assert sent == cut_at_stop(text, stop).strip()


def test_short_text_prompts_are_encoded_in_the_event_loop_long_ones_in_a_thread():
    class ThreadNoting(FlakyModel):
        def __init__(self):
            super().__init__()
            self.encoded_on = {}

        def encode(self, prompts, params, max_length=None):
            self.encoded_on[len(prompts[0])] = threading.current_thread().name
            return super().encode(prompts, params, max_length)

    model = ThreadNoting()
    with serving_in_thread(create_app(model)) as url:
        for prompt in ("x" * INLINE_ENCODE_CHARS, "x" * (INLINE_ENCODE_CHARS + 1)):
            status, body = post(url, "/invocations", {"inputs": prompt})
            assert status == 200 and body[0]["summary_text"] == f"summary of {prompt}"
    server_thread = model.encoded_on[INLINE_ENCODE_CHARS]  # the event loop's (no thread-pool hand-off)
    assert not server_thread.startswith("AnyIO") and model.encoded_on[INLINE_ENCODE_CHARS + 1].startswith("AnyIO")

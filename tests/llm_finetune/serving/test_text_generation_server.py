"""The endpoint on a tiny Llama, in this process: request formats, chat template, batching, streaming."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_finetune.serving.server import create_app
from tests.http_helpers import request, send_and_hang_up, serving_in_thread
from tests.serving_helpers import wait_until
from tests.tiny_causal import dolly_records

PLAIN = {"max_new_tokens": 10, "repetition_penalty": 1.0}  # no penalty: comparable with a bare model.generate


@pytest.fixture(scope="module")
def url(model):
    """Batching off: one prompt per generate, the reference for everything batched."""
    with serving_in_thread(create_app(model, max_batch_size=1, scheduler="batches")) as url:
        yield url


def post(url: str, path: str, payload) -> tuple[int, object]:
    return request(url, "POST", path, json.dumps(payload).encode())


def messages(i: int = 0) -> list[dict]:
    return dolly_records("train", i + 1)[i]["prompt"]


def bare_generate(model, ids: list[int], max_new_tokens: int) -> list[int]:
    """New token ids of a plain greedy `model.generate` on one unpadded prompt."""
    import torch

    with torch.inference_mode():
        out = model.impl.model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, len(ids):].tolist()


def test_inputs_round_trip(url, model):
    prompts = ["Why is the sky blue?", "Name three colours of the rainbow, please"]
    expected = model.impl.generate(prompts, **PLAIN)
    assert post(url, "/invocations", {"inputs": prompts[0], "parameters": PLAIN}) == (
        200, [{"generated_text": expected[0]}])
    assert post(url, "/invocations", {"inputs": prompts, "parameters": PLAIN}) == (
        200, [{"generated_text": e} for e in expected])
    assert expected[0] and expected[0] != expected[1]


def test_details_count_the_generated_tokens(url, model):
    prompt = "Why is the sky blue?"
    new = bare_generate(model, model.tokenizer(prompt)["input_ids"], 6)
    ended = new.index(model.tokenizer.eos_token_id) + 1 if model.tokenizer.eos_token_id in new else len(new)
    status, body = post(url, "/invocations", {"inputs": prompt, "parameters": {**PLAIN, "max_new_tokens": 6,
                                                                               "details": True, "seed": 3}})
    assert status == 200
    assert body[0]["details"] == {"finish_reason": "length" if ended == 6 else "eos_token",
                                  "generated_tokens": ended, "seed": 3}
    assert body[0]["generated_text"] == model.tokenizer.decode(new[:ended], skip_special_tokens=True).strip()


def test_return_full_text_and_max_length(url, model):
    prompt = "Why is the sky blue?"
    n_prompt = len(model.tokenizer(prompt)["input_ids"])
    short = model.impl.generate([prompt], **{**PLAIN, "max_new_tokens": 4})[0]
    status, body = post(url, "/invocations", {"inputs": prompt, "parameters": {
        "repetition_penalty": 1.0, "max_length": n_prompt + 4, "return_full_text": True}})
    assert status == 200 and body[0]["generated_text"].startswith(prompt)
    assert body[0]["generated_text"][len(prompt):].strip() == short
    status, body = post(url, "/invocations", {"inputs": prompt, "parameters": {"max_length": n_prompt}})
    assert (status, body) == (400, {"error": f"parameters.max_length: {n_prompt} leaves no room to generate after "
                                             f"input 0's {n_prompt} tokens"})


def test_prompt_over_the_context_gets_400(url, model):
    long = "blue " * 600  # the tiny Llama's context is 512 tokens
    n = len(model.tokenizer(long)["input_ids"])
    assert post(url, "/invocations", {"inputs": ["hi", long]}) == (400, {"error": (
        f"inputs: input 1 has {n} tokens, and with 64 new tokens it exceeds the model's context of 512 tokens; "
        "shorten it or set parameters.max_prompt_tokens")})
    status, _ = post(url, "/invocations", {"inputs": long, "parameters": {"max_prompt_tokens": 400}})
    assert status == 200


def test_chat_applies_the_chat_template(url, model):
    chat = messages()
    text = model.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    expected = model.tokenizer.decode(bare_generate(model, ids, 10), skip_special_tokens=True).strip()
    status, body = post(url, "/v1/chat/completions", {"messages": chat, "max_tokens": 10, "repetition_penalty": 1.0})
    assert status == 200
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == model.name
    assert isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": expected},
                                "finish_reason": body["choices"][0]["finish_reason"]}]
    assert body["choices"][0]["finish_reason"] in ("stop", "length") and expected
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(ids) and usage["total_tokens"] == len(ids) + usage["completion_tokens"]
    # /invocations answers chat messages the same way (SageMaker LMI)
    status, again = post(url, "/invocations", {"messages": chat, "max_tokens": 10, "repetition_penalty": 1.0})
    assert status == 200 and again["choices"] == body["choices"] and again["usage"] == usage


def test_chat_temperature_zero_is_greedy_and_above_zero_samples(url):
    base = {"messages": messages(), "max_tokens": 16, "top_k": 0}
    greedy = [post(url, "/v1/chat/completions", {**base, **extra})[1]["choices"][0]["message"]["content"]
              for extra in ({}, {"temperature": 0})]
    assert greedy[0] == greedy[1]
    sampled = {post(url, "/v1/chat/completions", {**base, "temperature": 5.0, "seed": s})[1]["choices"][0]
               ["message"]["content"] for s in (1, 2, 3)}
    assert len(sampled) > 1 and greedy[0] not in sampled


def stream_events(url: str, payload: dict) -> list:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps({**payload, "stream": True}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
        raw = response.read().decode()
    finally:
        conn.close()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]" and all(e != "[DONE]" for e in events[:-1])
    return [json.loads(e) for e in events[:-1]]


@pytest.mark.parametrize("stop", [[], ["e"], [" t", "qz"]], ids=["no-stop", "stop", "two-stops"])
def test_streamed_chunks_concatenate_to_the_answer(url, stop):
    payload = {"messages": messages(1), "max_tokens": 24, "stop": stop}
    status, whole = post(url, "/v1/chat/completions", payload)
    assert status == 200
    chunks = stream_events(url, payload)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert "".join(pieces) == whole["choices"][0]["message"]["content"]
    assert len(pieces) > 1 or stop
    last = chunks[-1]["choices"][0]
    assert last["delta"] == {} and last["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_stop_strings_cut_the_answer(url):
    free = post(url, "/invocations", {"inputs": "Why is the sky blue?", "parameters": {"max_new_tokens": 24}})[1]
    text = free[0]["generated_text"]
    stop = next(text[i : i + 2] for i in range(6, len(text) - 1) if not text[i : i + 2].isspace()
                and " " not in text[i : i + 2])
    cut = post(url, "/invocations", {"inputs": "Why is the sky blue?", "parameters": {
        "max_new_tokens": 24, "stop": stop, "details": True}})[1][0]
    assert cut["generated_text"] == text[: text.find(stop)].strip() and cut["details"]["finish_reason"] == "stop_sequence"


def concurrently(url: str, calls: list[tuple[str, dict]]) -> list:
    """Every request sent at once from its own thread; answers in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda c: post(url, *c), calls))


def test_batched_greedy_answers_equal_single_request_answers(url, model):
    calls = [("/invocations", {"inputs": r["prompt"][1]["content"], "parameters": PLAIN})
             for r in dolly_records("train", 3)]
    calls.append(("/invocations", {"inputs": ["Why is the sky blue?", "Hi"], "parameters": PLAIN}))
    calls.append(("/v1/chat/completions", {"messages": messages(2), "max_tokens": 10, "repetition_penalty": 1.0}))
    single = [post(url, *c) for c in calls]
    size = sum(len(c[1]["inputs"]) if isinstance(c[1].get("inputs"), list) else 1 for c in calls)
    app = create_app(model, max_batch_size=size, max_batch_wait_ms=5_000,  # runs once every prompt is queued
                     scheduler="batches")
    with serving_in_thread(app) as batched_url:
        batched = concurrently(batched_url, calls)
    assert app.state.batcher.batch_sizes == {size: 1}  # one generate for all of them, prompts of unequal length
    for one, many in zip(single, batched):
        assert one[0] == 200 and many[0] == 200
        assert (one[1] if isinstance(one[1], list) else one[1]["choices"]) == (
            many[1] if isinstance(many[1], list) else many[1]["choices"])


def test_seeded_sampling_is_never_batched(url, model):
    seeded = ("/invocations", {"inputs": "Why is the sky blue?", "parameters": {
        "max_new_tokens": 16, "do_sample": True, "temperature": 5.0, "top_k": 0, "seed": 7}})
    alone = post(url, *seeded)
    app = create_app(model, max_batch_size=8, max_batch_wait_ms=300, scheduler="batches")
    with serving_in_thread(app) as batched_url:
        together = concurrently(batched_url, [seeded, seeded, *[("/invocations", {"inputs": "Hello there",
                                                                  "parameters": PLAIN})] * 3])
    assert together[0] == together[1] == alone and alone[0] == 200
    assert app.state.batcher.batch_sizes == {1: 2, 3: 1}


def test_cancel_criteria_end_generation(model):
    """What the server sets when a streaming client goes away: generate stops at the next token."""
    from llm_finetune.generation import GenerationParams
    from llm_finetune.serving.streaming import cancel_criteria

    event = threading.Event()
    encoded = model.encode(["Why is the sky blue?"], GenerationParams(max_new_tokens=20))
    params = GenerationParams(max_new_tokens=20, repetition_penalty=1.0)
    running = model.complete(encoded, params, stopping_criteria=cancel_criteria(event))[0]
    event.set()
    cancelled = model.complete(encoded, params, stopping_criteria=cancel_criteria(event))[0]
    assert cancelled.generated_tokens == 1 and running.generated_tokens > 1


class CompletionLog:
    """A served model that keeps what each `complete` call generated; `started` is set as a call begins."""

    def __init__(self, model):
        self.model, self.done, self.started = model, [], threading.Event()

    def __getattr__(self, name):
        return getattr(self.model, name)

    def complete(self, encoded, params, **kwargs):
        self.started.set()
        self.done.append(self.model.complete(encoded, params, **kwargs))
        return self.done[-1]


def test_a_non_streamed_generation_stops_when_its_client_goes(model):
    # Seeded hot sampling: this seed runs to max_new_tokens without an EOS (asserted below), for over a second.
    long = {"inputs": "Why is the sky blue?", "parameters": {"max_new_tokens": 480, "do_sample": True,
                                                            "temperature": 5.0, "top_k": 0, "seed": 7}}
    served = CompletionLog(model)
    with serving_in_thread(create_app(served, max_batch_size=1)) as url:
        assert post(url, "/invocations", long)[0] == 200
        (full,) = served.done[0]
        assert full.generated_tokens == long["parameters"]["max_new_tokens"]
        served.started.clear()
        send_and_hang_up(url, "/invocations", json.dumps(long).encode(), until=served.started.is_set)
        wait_until(lambda: len(served.done) == 2)
        (cancelled,) = served.done[1]
        assert cancelled.generated_tokens < full.generated_tokens / 4
        assert post(url, "/invocations", {"inputs": "Hi", "parameters": PLAIN})[0] == 200

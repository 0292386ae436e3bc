"""Continuous batching on a tiny Llama: rows joining and leaving a running batch answer as `generate` alone does."""

import asyncio
import json
import threading

import pytest

from llm_finetune.generation import GenerationParams
from llm_finetune.serving.continuous import ClientGone, ContinuousBatcher
from llm_finetune.serving.running_batch import Row, RunningBatch
from llm_finetune.serving.server import create_app
from llm_finetune.serving.slot_batch import SlotBatch
from tests.http_helpers import request, send_and_hang_up, serving_in_thread
from tests.serving_helpers import wait_until
from tests.tiny_causal import dolly_records

PROMPTS = ["Why is the sky blue?", "Hi", "Name three colours of the rainbow, please, and say why they differ",
           "What is the capital of France?", "Tell me about the history of Rome in a few words"]


def ids(model, prompt: str) -> list[int]:
    return model.tokenizer(prompt)["input_ids"]


def alone(model, prompt: str, max_new_tokens: int, repetition_penalty: float) -> list[int]:
    """New token ids of greedy `model.generate` on the prompt alone, unpadded."""
    import torch

    prompt_ids = ids(model, prompt)
    with torch.inference_mode():
        out = model.causal_lm.generate(torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                       repetition_penalty=repetition_penalty, pad_token_id=model.tokenizer.pad_token_id)
    return out[0, len(prompt_ids):].tolist()


def eos_ids(model) -> set[int]:
    return {model.tokenizer.eos_token_id}


@pytest.mark.parametrize("batch_class", [RunningBatch, SlotBatch])
@pytest.mark.parametrize("penalty", [1.0, 1.2])
def test_staggered_rows_answer_as_generate_alone_and_reuse_the_cache(model, penalty, batch_class, monkeypatch):
    """Rows join at steps 0, 3 and 7 and leave when done; each answer equals generate alone, and every forward
    after a row's prefill feeds one token per row (the running rows' cache is never recomputed). SlotBatch runs
    its own forward: transformers' is never called."""
    budgets = [24, 5, 12, 30, 9]
    rows = [Row(ids(model, p), n, penalty) for p, n in zip(PROMPTS, budgets)]
    fed, transformers_forwards = [], []
    hook = model.causal_lm.register_forward_pre_hook(
        lambda m, args, kwargs: transformers_forwards.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    if batch_class is SlotBatch:
        own = SlotBatch._forward
        monkeypatch.setattr(SlotBatch, "_forward", lambda self, ids, *rest: fed.append(tuple(ids.shape))
                            or own(self, ids, *rest))
    else:
        fed = transformers_forwards
    batch, finished, left_early = batch_class(model.causal_lm, eos_ids(model)), [], []
    try:
        for step in range(200):
            joining = {0: rows[:1], 3: rows[1:3], 7: rows[3:]}.get(step, [])
            if joining:
                finished += batch.join(joining)
            if not batch.rows:
                if step > 7:
                    break
                continue
            done = batch.step()
            left_early += [r for r in done if batch.rows]
            finished += done
            if batch_class is RunningBatch:
                assert (batch.width == int(batch.lengths.max())) if batch.rows else (batch.cache is None)
    finally:
        hook.remove()
    for row, prompt, budget in zip(rows, PROMPTS, budgets):
        assert row.tokens == alone(model, prompt, budget, penalty), prompt
    assert sorted(map(id, finished)) == sorted(map(id, rows)) and left_early
    prefills = [(1, len(rows[0].prompt)), (2, max(len(r.prompt) for r in rows[1:3])),
                (2, max(len(r.prompt) for r in rows[3:]))]
    assert [shape for shape in fed if shape[1] > 1] == prefills
    assert len(fed) == len(prefills) + sum(1 for shape in fed if shape[1] == 1)
    assert (transformers_forwards == []) is (batch_class is SlotBatch)
    assert batch.cache is None and not getattr(batch, "keys", None)  # an idle batch holds no cache


def test_slot_batch_cancelling_a_row_moves_the_last_one_into_its_slot(model):
    """A cancelled row (dropped by the scheduler, outside the forward) leaves a hole that the last row fills; the
    rows left answer as generate alone."""
    rows = [Row(ids(model, p), 10, 1.2) for p in PROMPTS[:4]]
    batch = SlotBatch(model.causal_lm, eos_ids(model))
    batch.join(rows)
    batch.step()
    batch.drop([rows[0]])
    assert batch.rows == [rows[3], rows[1], rows[2]]
    while batch.rows:
        batch.step()
    assert [r.tokens for r in rows[1:]] == [alone(model, p, 10, 1.2) for p in PROMPTS[1:4]]


def test_slot_batch_in_bfloat16_answers_as_generate_alone(model):
    """The norms' casts and a bfloat16 cache: a row answers as generate does alone on the same bfloat16 model, to
    the token, also in slots grown and reused by earlier rows. (Rows decoded together are not compared here: in
    bfloat16, attention over a batch's masked columns rounds differently from attention over the row alone, for
    this batch and for transformers' padded batches alike.)"""
    import copy

    import torch

    lm = copy.deepcopy(model.causal_lm).to(torch.bfloat16)
    batch = SlotBatch(lm, eos_ids(model))
    for prompt in PROMPTS[:3]:
        row = Row(ids(model, prompt), 12)
        batch.join([row])
        assert batch.keys[0].dtype == torch.bfloat16
        while batch.rows:
            batch.step()
        with torch.inference_mode():
            out = lm.generate(torch.tensor([row.prompt]), max_new_tokens=12, do_sample=False,
                              pad_token_id=model.tokenizer.pad_token_id)
        assert row.tokens == out[0, len(row.prompt):].tolist(), prompt


def test_slot_batch_takes_plain_llama_only(model, tmp_path):
    """Its forward is only used where it computes what transformers does: not for LoRA-wrapped layers, not for
    GPT-2 or a sliding-window Mistral."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llm_finetune.inference.served import load_text_model
    from tests.tiny_causal import build_tiny_causal

    assert SlotBatch.supports(model.causal_lm)
    for own, chosen in ((True, SlotBatch), (False, RunningBatch)):
        engine = ContinuousBatcher(model.causal_lm, model.tokenizer, own_forward=own)
        engine.close()
        assert type(engine.batch) is chosen
    wrapped = get_peft_model(AutoModelForCausalLM.from_config(model.causal_lm.config),
                             LoraConfig(r=2, target_modules=["q_proj"]))
    assert not SlotBatch.supports(wrapped.base_model.model)
    for family in ("gpt2", "mistral"):
        assert not SlotBatch.supports(load_text_model(build_tiny_causal(tmp_path / family, family)).causal_lm)


def test_a_row_ends_at_eos_before_its_budget(model):
    eos = model.tokenizer.eos_token_id
    candidates = PROMPTS + [r["prompt"][1]["content"] for r in dolly_records("train", 40)]
    ending, reference = next((p, out) for p in candidates if eos in (out := alone(model, p, 40, 1.0)))
    long = Row(ids(model, PROMPTS[0]), 40)
    short = Row(ids(model, ending), 40)
    batch = RunningBatch(model.causal_lm, eos_ids(model))
    batch.join([long, short])
    while short in batch.rows:
        batch.step()
    assert short.tokens == reference and len(reference) < 40 and reference[-1] == eos
    assert long in batch.rows and len(long.tokens) == len(short.tokens)


@pytest.mark.parametrize("family, runs", [("gpt2", True), ("mistral", False)])
def test_other_families(tmp_path, single_thread, family, runs):
    """GPT-2 (absolute positions) answers as generate alone; Mistral's sliding-window cache goes to the batches."""
    from llm_finetune.inference.served import load_text_model
    from llm_finetune.serving.continuous import continuous_batcher
    from tests.tiny_causal import build_tiny_causal

    other = load_text_model(build_tiny_causal(tmp_path, family))
    engine = continuous_batcher(other)
    assert (engine is not None) is runs
    if engine is None:
        return
    engine.close()
    rows = [Row(ids(other, p), 10, 1.2) for p in PROMPTS[:3]]
    batch = RunningBatch(other.causal_lm, eos_ids(other))
    batch.join(rows[:1])
    batch.step()
    batch.join(rows[1:])
    while batch.rows:
        batch.step()
    assert [r.tokens for r in rows] == [alone(other, p, 10, 1.2) for p in PROMPTS[:3]]


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture()
def engine(model):
    engine = ContinuousBatcher(model.causal_lm, model.tokenizer, max_rows=3)
    yield engine
    engine.close()


def test_requests_answer_as_the_single_request_path(model, engine):
    """Completions (text, token counts, finish reason) equal the one-prompt generate path's, with stop strings,
    max_length budgets and more prompts than rows."""
    free = model.complete(model.encode([PROMPTS[0]], GenerationParams(max_new_tokens=24)),
                          GenerationParams(max_new_tokens=24))[0].raw_text
    stop = next(free[i : i + 2] for i in range(6, len(free) - 1) if free[i : i + 2].strip() == free[i : i + 2])
    cases = [([PROMPTS[0]], GenerationParams(max_new_tokens=24, stop=[stop]), None),
             (PROMPTS[1:4], GenerationParams(max_new_tokens=16, repetition_penalty=1.0), None),
             (PROMPTS[3:], GenerationParams(), 30),
             ([PROMPTS[2]], GenerationParams(max_new_tokens=8, stop=["qz"]), None)]
    expected = [[model.complete(model.encode([p], params, max_length), params)[0] for p in prompts]
                for prompts, params, max_length in cases]

    async def all_at_once():
        return await asyncio.gather(*(engine.submit(model.encode(prompts, params, max_length), params,
                                                    cancelled=threading.Event())
                                      for prompts, params, max_length in cases))

    assert run(all_at_once()) == expected
    assert expected[0][0].finish_reason == "stop_sequence" and expected[2][0].finish_reason in ("length", "eos_token")
    assert max(engine.rows_per_step) <= 3 and not engine.batch.rows


class Tokens:
    """A streamer that cancels its request once `after` new tokens have come."""

    def __init__(self, cancel: threading.Event, after: int):
        self.cancel, self.after, self.tokens, self.ended = cancel, after, [], False

    def put(self, value) -> None:
        self.tokens.append(value.tolist())
        if len(self.tokens) > self.after:  # the first put is the prompt
            self.cancel.set()

    def end(self) -> None:
        self.ended = True


def test_a_cancelled_row_leaves_at_the_next_step(model, engine):
    cancel = threading.Event()
    streamer = Tokens(cancel, after=3)
    params = GenerationParams(max_new_tokens=200, repetition_penalty=1.0)
    with pytest.raises(ClientGone):
        run(engine.submit(model.encode([PROMPTS[0]], params), params, cancelled=cancel, streamer=streamer))
    assert len(streamer.tokens) == 1 + 3 and not engine.batch.rows
    again = run(engine.submit(model.encode(["Hi"], params), params, cancelled=threading.Event()))
    assert again == model.complete(model.encode(["Hi"], params), params)


@pytest.mark.parametrize("phase", ["join", "step"])
def test_a_failing_forward_fails_its_requests_only(model, engine, monkeypatch, phase):
    real, calls = getattr(engine.batch, phase), []

    def fails_once(*args):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("out of memory (simulated)")
        return real(*args)

    monkeypatch.setattr(engine.batch, phase, fails_once)
    params = GenerationParams(max_new_tokens=6)
    with pytest.raises(RuntimeError, match="simulated"):
        run(engine.submit(model.encode(["Hi"], params), params, cancelled=threading.Event()))
    assert not engine.batch.rows and engine.batch.cache is None
    answer = run(engine.submit(model.encode(["Hi"], params), params, cancelled=threading.Event()))
    assert answer == model.complete(model.encode(["Hi"], params), params)


@pytest.mark.parametrize("params, extras, continuous", [
    (GenerationParams(), {}, True),
    (GenerationParams(do_sample=True, seed=3), {}, False),
    (GenerationParams(num_beams=2), {}, False),
    (GenerationParams(no_repeat_ngram_size=2), {}, False),
    (GenerationParams(), {"streamer": object()}, True),
    (GenerationParams(), {"stopping_criteria": object()}, False),
])
def test_which_requests_it_takes(params, extras, continuous):
    assert ContinuousBatcher.takes(params, extras) is continuous


def post(url: str, path: str, payload) -> tuple[int, object]:
    return request(url, "POST", path, json.dumps(payload).encode())


def stream(url: str, payload: dict) -> str:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps({**payload, "stream": True}))
        raw = conn.getresponse().read().decode()
    finally:
        conn.close()
    events = [json.loads(e.removeprefix("data: ")) for e in raw.split("\n\n") if e and e != "data: [DONE]"]
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events)


def test_the_server_routes_greedy_requests_to_the_running_batch(model):
    chat = {"messages": dolly_records("train", 1)[0]["prompt"], "max_tokens": 12}
    calls = [("/invocations", {"inputs": PROMPTS[:2], "parameters": {"max_new_tokens": 10}}),
             ("/v1/chat/completions", chat),
             ("/invocations", {"inputs": PROMPTS[2], "parameters": {"num_beams": 2, "max_new_tokens": 6}})]
    with serving_in_thread(create_app(model, max_batch_size=1, scheduler="batches")) as url:
        reference = [post(url, *c) for c in calls]
    app = create_app(model)
    with serving_in_thread(app) as url:
        answers = [post(url, *c) for c in calls]
        streamed = stream(url, chat)
    for one, other in zip(reference, answers):
        assert one[0] == other[0] == 200
        assert (one[1] if isinstance(one[1], list) else one[1]["choices"]) == (
            other[1] if isinstance(other[1], list) else other[1]["choices"])
    assert streamed == answers[1][1]["choices"][0]["message"]["content"]
    assert sum(app.state.continuous.rows_per_step.values()) > 0
    assert app.state.batcher.batch_sizes == {1: 1}  # beam search only


def test_a_client_that_hangs_up_has_its_row_removed(model):
    long = {"inputs": "Hi", "parameters": {"max_new_tokens": 480, "repetition_penalty": 1.0, "details": True}}
    app = create_app(model)
    engine = app.state.continuous
    with serving_in_thread(app) as url:
        status, body = post(url, "/invocations", long)
        assert status == 200 and body[0]["details"]["generated_tokens"] == 480
        steps = sum(engine.rows_per_step.values())
        send_and_hang_up(url, "/invocations", json.dumps(long).encode(), until=lambda: engine.batch.rows)
        wait_until(lambda: not engine.batch.rows)
        assert sum(engine.rows_per_step.values()) - steps < 480 / 4
        assert post(url, "/invocations", {"inputs": "Hello", "parameters": {"max_new_tokens": 4}})[0] == 200

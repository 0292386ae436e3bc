"""The suite runner against a stand-in endpoint: request settings per grid point, tokens/s from the endpoint's counts
or the tokenizer's (never made up), refused requests recorded, cot answers scored, one comparison row per setting."""

import pytest

from llm_finetune.data.suites import SuitePrompt
from llm_finetune.probes.chat_inference import GridPoint, SuiteRun, comparison_rows, grid_points, metrics_of
from llm_finetune.recipes import GenerationGrid
from llm_finetune.serving.client import EndpointError, HttpInferenceClient
from tests.chat_helpers import contract_app, words
from tests.http_helpers import serving_in_thread

GRID = GenerationGrid(decoding=[{"name": "greedy"}, {"name": "beam2", "num_beams": 2},
                                {"name": "hot", "do_sample": True, "temperature": 1.5, "seed": 4}],
                      max_new_tokens=[4, 16], stop=["\n\n"])
CHAT = SuitePrompt(record_id="r1", messages=[{"role": "user", "content": "Hi"}])


def test_grid_crosses_decoding_and_lengths_and_sends_only_set_settings():
    points = grid_points(GRID)
    assert [p.name for p in points] == ["greedy/4", "greedy/16", "beam2/4", "beam2/16", "hot/4", "hot/16"]
    assert {k: v for k, v in points[0].chat_params().items() if v is not None} == {
        "max_tokens": 4, "do_sample": False, "num_beams": 1, "stop": ["\n\n"]}
    assert {k: v for k, v in points[5].inputs_params(details=True).items() if v is not None} == {
        "max_new_tokens": 16, "do_sample": True, "num_beams": 1, "temperature": 1.5, "seed": 4, "stop": ["\n\n"],
        "details": True}


def test_chat_outputs_with_endpoint_token_counts():
    seen = []
    with serving_in_thread(contract_app(lambda body: "one two three four five", seen=seen)) as url:
        outputs = SuiteRun(HttpInferenceClient(url), "chat", "chat").run([CHAT], grid_points(GRID))
    assert len(outputs) == 6 and [s["body"]["max_tokens"] for s in seen] == [4, 16, 4, 16, 4, 16]
    first = outputs[0]
    assert first.output == "one two three four five" and first.completion_tokens == 5
    assert first.tokens_counted_by == "endpoint" and first.finish_reason == "length"
    assert first.tokens_per_s == pytest.approx(5 / (first.latency_ms / 1000), rel=0.01)
    rows = comparison_rows(outputs)
    assert [r["setting"] for r in rows] == [p.name for p in grid_points(GRID)]
    assert rows[0]["stopped_at_limit"] == 1 and rows[1]["stopped_at_limit"] == 0
    assert "accuracy" not in rows[0] and rows[0]["errors"] == 0


def test_inputs_route_on_an_endpoint_without_details_counts_with_the_tokenizer():
    """An older server refuses `details` (400 naming it): the runner asks again without it, then counts tokens with
    the tokenizer, or leaves tokens/s empty when it has none."""
    seen, refused = [], []
    app = contract_app(lambda body: "so the answer is 4", seen=seen, report_tokens=False)

    @app.middleware("http")
    async def refuse_details(request, call_next):  # as today's server: GenerationParams forbids unknown fields
        from fastapi.responses import JSONResponse

        if b'"details"' in await request.body():
            refused.append(request.url.path)
            return JSONResponse({"error": "parameters.details: Extra inputs are not permitted"}, status_code=400)
        return await call_next(request)

    prompt = SuitePrompt(record_id="q", style="direct", text="Question: 2 + 2?\nAnswer:", expected=4)
    points = grid_points(GenerationGrid(decoding=[{"name": "greedy"}], max_new_tokens=[8, 9]))
    with serving_in_thread(app) as url:
        counted = SuiteRun(HttpInferenceClient(url), "cot", "inputs", count_tokens=words).run([prompt], points)
        uncounted = SuiteRun(HttpInferenceClient(url), "cot", "inputs").run([prompt], points)
    assert refused == ["/invocations"] * 2  # once per run: then the runner stops asking
    assert [s["body"]["parameters"].get("details") for s in seen] == [None] * 4
    assert all(o.error is None and o.correct and o.extracted == 4 for o in counted + uncounted)
    assert [(o.completion_tokens, o.tokens_counted_by) for o in counted] == [(5, "tokenizer")] * 2
    assert all(o.completion_tokens is None and o.tokens_per_s is None for o in uncounted)
    assert comparison_rows(uncounted)[0]["tokens_per_s"] is None


def test_refused_requests_are_recorded_and_all_refused_is_an_error():
    def flaky(body):
        if body.get("num_beams", 1) > 1:
            raise ValueError("no beam search here")
        return "fine"

    from fastapi.responses import JSONResponse

    app = contract_app(flaky)

    @app.exception_handler(ValueError)
    async def refused(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=422)

    with serving_in_thread(app) as url:
        client = HttpInferenceClient(url)
        outputs = SuiteRun(client, "chat", "chat").run([CHAT], grid_points(GRID))
        with pytest.raises(EndpointError, match=r"suite chat: every request failed; the first: .*no beam search"):
            SuiteRun(client, "chat", "chat").run([CHAT], [GridPoint(decoding={"name": "b", "num_beams": 2},
                                                                     max_new_tokens=4)])
    rows = {r["setting"]: r for r in comparison_rows(outputs)}
    assert rows["beam2/4"]["errors"] == 1 and rows["beam2/4"]["latency_p50_ms"] is None
    assert rows["greedy/4"]["errors"] == 0 and rows["greedy/4"]["latency_p50_ms"] > 0


def test_cot_accuracy_per_setting_and_style():
    prompts = [SuitePrompt(record_id=str(i), style=style, messages=[{"role": "user", "content": f"{i} {style}"}],
                           expected=i) for i in (1, 2, 3, 4) for style in ("direct", "zero_shot_cot")]

    def half_right(body):  # right on every zero-shot question, on odd direct ones
        i, style = body["messages"][-1]["content"].split()
        return f"The answer is {i}." if style == "zero_shot_cot" or int(i) % 2 else "I think 7"

    points = grid_points(GenerationGrid(decoding=[{"name": "greedy"}], max_new_tokens=[8]))
    with serving_in_thread(contract_app(half_right)) as url:
        outputs = SuiteRun(HttpInferenceClient(url), "cot", "chat").run(prompts, points)
    rows = comparison_rows(outputs)
    assert [(r["style"], r["accuracy"]) for r in rows] == [("direct", 0.5), ("zero_shot_cot", 1.0)]
    assert metrics_of("cot", rows)["cot/greedy/8/direct/accuracy"] == 0.5
    wrong = [o for o in outputs if o.correct is False]
    assert [(o.record_id, o.extracted) for o in wrong] == [("2", 7), ("4", 7)]

"""Prompt suites through an endpoint across a grid of generation settings: every output with its latency and tokens/s,
the final answer of chain-of-thought outputs scored, and one comparison row per setting (and cot style).

Tokens/s = generated tokens / request latency. The endpoint's own count is used (chat `usage.completion_tokens`,
`details.generated_tokens`); an endpoint that reports none is counted with the model's tokenizer when one is known,
else tokens/s stays empty: a figure is never made up.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, Field

from llm_finetune.data.answers import extract_final_answer, is_correct
from llm_finetune.data.suites import SuitePrompt
from llm_finetune.errors import RecipeError
from llm_finetune.recipes.chat_inference import DecodingSetting, GenerationGrid, InferenceTarget, Route
from llm_finetune.serving.client import EndpointError, EndpointUnreachable, InferenceClient, open_client


class GridPoint(BaseModel):
    """One cell of the grid: a decoding setting at one length limit."""

    decoding: DecodingSetting
    max_new_tokens: int
    stop: list[str] = []

    @property
    def name(self) -> str:
        return f"{self.decoding.name}/{self.max_new_tokens}"

    def sampling(self) -> dict:
        """The settings both routes share; unset ones are left out (the endpoint's defaults apply)."""
        d = self.decoding
        return {"do_sample": d.do_sample, "num_beams": d.num_beams, "temperature": d.temperature, "top_p": d.top_p,
                "top_k": d.top_k, "seed": d.seed, "repetition_penalty": d.repetition_penalty,
                "stop": self.stop or None}

    def chat_params(self) -> dict:
        return {"max_tokens": self.max_new_tokens, **self.sampling()}

    def inputs_params(self, details: bool) -> dict:
        return {"max_new_tokens": self.max_new_tokens, **self.sampling(), "details": details or None}


def grid_points(grid: GenerationGrid) -> list[GridPoint]:
    return [GridPoint(decoding=d, max_new_tokens=n, stop=grid.stop) for d in grid.decoding for n in grid.max_new_tokens]


class OutputRecord(BaseModel):
    """One request of a suite under one setting, as answered."""

    suite: str
    setting: str
    record_id: str
    style: str | None = None
    output: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    status: int | None = Field(None, description="HTTP status of a refused request")
    latency_ms: float | None = None
    completion_tokens: int | None = None
    tokens_counted_by: Literal["endpoint", "tokenizer"] | None = None
    tokens_per_s: float | None = None
    expected: float | None = None
    extracted: float | None = None
    correct: bool | None = None


class TokenCounter:
    """Counts generated text in tokens with the served model's tokenizer, loaded on first use."""

    def __init__(self, name_or_path: str):
        self.name_or_path = name_or_path

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.name_or_path)

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def bearer_token(target: InferenceTarget) -> str | None:
    """The token named by endpoint.token_env; a missing variable is a recipe error, raised before any request."""
    if target.token_env is None:
        return None
    token = os.environ.get(target.token_env)
    if not token:
        raise RecipeError(f"endpoint.token_env names the environment variable {target.token_env}, which is not set")
    return token


def client_for(target: InferenceTarget, url: str | None = None) -> InferenceClient:
    """The client for the recipe's endpoint; `url` is where a registered version was deployed."""
    if target.sagemaker_endpoint:
        return open_client(sagemaker_endpoint=target.sagemaker_endpoint, region=target.region,
                           aws_endpoint_url=target.aws_endpoint_url, timeout_s=target.timeout_s)
    return open_client(url=url or target.url, token=bearer_token(target), timeout_s=target.timeout_s)


class SuiteRun:
    """Asks one suite's prompts under every grid point through one client."""

    def __init__(self, client: InferenceClient, suite: str, route: Route,
                 count_tokens: Callable[[str], int] | None = None):
        self.client, self.suite, self.route, self.count_tokens = client, suite, route, count_tokens
        # Ask for generated-token counts on the inputs route until the endpoint refuses the field (an older server).
        self.ask_details = True

    def run(self, prompts: list[SuitePrompt], points: list[GridPoint]) -> list[OutputRecord]:
        """Every prompt under every point. A refused request is recorded; an endpoint that does not answer at all,
        or refuses every request, raises EndpointError."""
        outputs = [self.ask(prompt, point) for point in points for prompt in prompts]
        if outputs and all(o.error for o in outputs):
            raise EndpointError(f"suite {self.suite}: every request failed; the first: {outputs[0].error}",
                                outputs[0].status)
        return outputs

    def ask(self, prompt: SuitePrompt, point: GridPoint) -> OutputRecord:
        record = OutputRecord(suite=self.suite, setting=point.name, record_id=prompt.record_id, style=prompt.style,
                              expected=prompt.expected)
        try:
            start = time.perf_counter()
            text, finish, tokens = self._request(prompt, point)
            latency_s = time.perf_counter() - start
        except EndpointUnreachable:  # no answer at all: the endpoint is down, not this request's fault
            raise
        except EndpointError as e:
            record.error, record.status = str(e), e.status
            return record
        record.output, record.finish_reason, record.latency_ms = text, finish, round(latency_s * 1000, 2)
        if tokens is not None:
            record.completion_tokens, record.tokens_counted_by = tokens, "endpoint"
        elif self.count_tokens is not None:
            record.completion_tokens, record.tokens_counted_by = self.count_tokens(text), "tokenizer"
        if record.completion_tokens is not None and latency_s > 0:
            record.tokens_per_s = round(record.completion_tokens / latency_s, 2)
        if prompt.expected is not None:
            record.extracted = extract_final_answer(text)
            record.correct = is_correct(record.extracted, prompt.expected)
        return record

    def _request(self, prompt: SuitePrompt, point: GridPoint) -> tuple[str, str | None, int | None]:
        """(text, finish reason, generated tokens as the endpoint reports them or None)."""
        if self.route == "chat":
            answer = self.client.chat(prompt.messages, **point.chat_params())
            choice = answer["choices"][0]
            tokens = (answer.get("usage") or {}).get("completion_tokens")
            return choice["message"]["content"], choice.get("finish_reason"), tokens
        try:
            answer = self.client.generate(prompt.text, point.inputs_params(self.ask_details))[0]
        except EndpointError as e:
            if not (self.ask_details and e.status in (400, 422) and "details" in str(e)):
                raise
            self.ask_details = False  # an endpoint that predates `details`: count with the tokenizer instead
            answer = self.client.generate(prompt.text, point.inputs_params(False))[0]
        details = answer.get("details") or {}
        return answer["generated_text"], details.get("finish_reason"), details.get("generated_tokens")


# ---------------------------------------------------------------------------------------------------------------
# Comparison


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def comparison_rows(outputs: list[OutputRecord]) -> list[dict]:
    """One row per setting (and per cot style, when the suite has styles), in the order first seen."""
    groups: dict[tuple[str, str | None], list[OutputRecord]] = {}
    for o in outputs:
        groups.setdefault((o.setting, o.style), []).append(o)
    rows = []
    for (setting, style), group in groups.items():
        answered = [o for o in group if o.error is None]
        counted = [o for o in answered if o.completion_tokens is not None]
        latency_s = sum(o.latency_ms for o in counted) / 1000
        row = {"setting": setting, **({"style": style} if style else {}), "requests": len(group),
               "errors": len(group) - len(answered),
               "latency_p50_ms": round(statistics.median(o.latency_ms for o in answered), 1) if answered else None,
               "latency_mean_ms": _mean([o.latency_ms for o in answered]),
               "completion_tokens_mean": _mean([o.completion_tokens for o in counted]),
               "tokens_per_s": round(sum(o.completion_tokens for o in counted) / latency_s, 1)
               if counted and latency_s > 0 else None,
               "stopped_at_limit": sum(o.finish_reason == "length" for o in answered)}
        if any(o.expected is not None for o in group):
            row["accuracy"] = round(sum(bool(o.correct) for o in answered) / len(answered), 4) if answered else None
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if row.get(c) is None else str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def samples_markdown(outputs: list[OutputRecord], max_records: int = 2, width: int = 160) -> str:
    """The first records' outputs under every setting, side by side."""
    first = list(dict.fromkeys(o.record_id for o in outputs))[:max_records]
    lines = []
    for record_id in first:
        lines += [f"**{record_id}**", "", "| setting | style | output |", "|---|---|---|"]
        for o in outputs:
            if o.record_id == record_id:
                text = (o.output if o.error is None else f"ERROR {o.error}") or ""
                text = " ".join(text.split())[:width].replace("|", "\\|")
                lines.append(f"| {o.setting} | {o.style or ''} | {text} |")
        lines.append("")
    return "\n".join(lines)


def metrics_of(suite: str, rows: list[dict]) -> dict[str, float]:
    """Flat metrics for a tracker: '<suite>/<setting>[/<style>]/<figure>'."""
    metrics = {}
    for row in rows:
        prefix = "/".join(p for p in (suite, row["setting"], row.get("style")) if p)
        for key in ("accuracy", "tokens_per_s", "latency_p50_ms", "completion_tokens_mean", "errors"):
            if row.get(key) is not None:
                metrics[f"{prefix}/{key}"] = float(row[key])
    return metrics

"""Endpoint test task: real dialogues through /invocations, latency percentiles, a markdown report."""

from __future__ import annotations

import time

import numpy as np

from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.summarization import summarization_records
from llm_finetune.recipes import EndpointSpec, SummarizationData
from llm_finetune.serving.endpoint import EndpointClient


class EndpointTestReport(BaseModel):
    url: str
    num_requests: int
    latency_p50_ms: float
    latency_p95_ms: float
    results: list[dict]


@task(name="test-endpoint-inference")
def test_endpoint_inference(
    url: str, data: SummarizationData, validated: ValidatedData, spec: EndpointSpec
) -> EndpointTestReport:
    client = EndpointClient(url)
    parameters = spec.generation.model_dump()
    results = []
    for record in summarization_records(validated, "validation", data, spec.num_test_records):
        start = time.perf_counter()
        answer = client.invoke({"inputs": record["dialogue"], "parameters": parameters})
        latency_ms = (time.perf_counter() - start) * 1000
        results.append({"id": record["id"], "reference": record["summary"], "summary": answer[0]["summary_text"],
                        "latency_ms": round(latency_ms, 1)})
    latencies = [r["latency_ms"] for r in results]
    report = EndpointTestReport(
        url=url, num_requests=len(results), latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p95_ms=float(np.percentile(latencies, 95)), results=results,
    )
    rows = "\n".join(f"| {r['id']} | {r['latency_ms']} | {r['summary']} | {r['reference']} |" for r in results)
    create_markdown_artifact(
        key="endpoint-inference-test",
        markdown=(
            f"## Endpoint {url}\n\n{report.num_requests} requests, latency p50 {report.latency_p50_ms:.1f} ms, "
            f"p95 {report.latency_p95_ms:.1f} ms\n\n| id | latency ms | summary | reference |\n|---|---|---|---|\n{rows}\n"
        ),
        description="Inference through the deployed endpoint",
    )
    return report

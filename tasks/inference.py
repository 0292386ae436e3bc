"""Endpoint test task: real validation inputs through /invocations, latency percentiles, a markdown report."""

from __future__ import annotations

import time

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from llm_finetune.backends.sagemaker_endpoint import SageMakerEndpointHandle, client_for, dialect_for
from llm_finetune.kinds import EndpointTestCase, ServedKind
from llm_finetune.recipes import EndpointSpec
from llm_finetune.serving.endpoint import EndpointError, EndpointHandle


class EndpointTestReport(BaseModel):
    url: str
    num_requests: int
    latency_p50_ms: float
    latency_p95_ms: float
    results: list[dict]


@task(name="test-endpoint-inference")
def test_endpoint_inference(
    endpoint: EndpointHandle | SageMakerEndpointHandle, cases: list[EndpointTestCase], spec: EndpointSpec,
    kind: ServedKind,
) -> EndpointTestReport:
    """Each case through the endpoint (local or SageMaker, the same client interface) in the dialect of the container
    serving it, generation kinds with the recipe's generation settings (only those set); every answer must be
    non-empty text."""
    client = client_for(endpoint)
    dialect, task = dialect_for(endpoint, kind)
    url = endpoint.url
    results = []
    for case in cases[: spec.num_test_records]:
        start = time.perf_counter()
        try:
            answer = client.invoke(dialect.request(task, dialect.inputs_of(case), spec.generation))
        except EndpointError as e:  # name the case: this line becomes a rolled-back release's reason
            raise EndpointError(f"endpoint test case '{case.id}': {e}", e.status) from None
        latency_ms = (time.perf_counter() - start) * 1000
        results.append({"id": case.id, "reference": case.reference, "output": dialect.answer_text(task, answer),
                        "latency_ms": round(latency_ms, 1)})
    latencies = [r["latency_ms"] for r in results]
    report = EndpointTestReport(
        url=url, num_requests=len(results), latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p95_ms=float(np.percentile(latencies, 95)), results=results,
    )
    rows = "\n".join(f"| {r['id']} | {r['latency_ms']} | {r['output']} | {r['reference']} |" for r in results)
    create_markdown_artifact(
        key="endpoint-inference-test",
        markdown=(
            f"## Endpoint {url} ({kind}, {dialect.container} container)\n\n{report.num_requests} requests, latency p50 {report.latency_p50_ms:.1f} "
            f"ms, p95 {report.latency_p95_ms:.1f} ms\n\n| id | latency ms | output | reference |\n|---|---|---|---|\n"
            f"{rows}\n"
        ),
        description="Inference through the deployed endpoint",
    )
    return report

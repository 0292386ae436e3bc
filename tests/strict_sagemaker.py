"""moto's SageMaker made as strict as the service for what it can know (test code, never product behaviour).

moto 5.2.5 stores whatever it is sent. Installed in a process that runs moto's server (`install()`; tests/conftest.py
does it for every test using `moto_endpoint`), each SageMaker request is first checked, and refused the way SageMaker
refuses it (HTTP 400, ValidationException or ResourceInUse) when:
- it breaks botocore's service model: types, required members, enums, lengths, ranges, patterns
  (llm_finetune.backends.service_model; this covers hyperparameter values over 2,500 characters and keys over 256);
- a training or processing job of that name exists (moto would overwrite it);
- managed spot training has no MaxWaitTimeInSeconds, or one below MaxRuntimeInSeconds (or one without spot);
- a training or processing image is neither in the sagemaker SDK's image URI tables for the region (registry account
  and repository; the tag is not checked) nor in the caller's own account's ECR.
So a test passing on the stand-in shows the product's requests are ones the service accepts on these points.

A bare strict server for users: `python -m tests.strict_sagemaker -H 127.0.0.1 -p 5000` (scripts/moto_server.sh).
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from pathlib import Path

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ResourceInUseException, SagemakerClientError, ValidationError
from moto.sagemaker.responses import SageMakerResponse

from llm_finetune.backends.service_model import request_problems, service_model

JOBS = {"CreateTrainingJob": ("TrainingJobName", "training_jobs", "Training"),
        "CreateProcessingJob": ("ProcessingJobName", "processing_jobs", "Processing")}
ECR_URI = re.compile(r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?"
                     r"/(?P<repo>[^:@]+)[:@].+")


@cache
def image_tables() -> frozenset[tuple[str, str, str]]:
    """(region, registry account, repository) of every image in the sagemaker SDK's bundled image URI tables."""
    from sagemaker.core import image_uris

    rows: set[tuple[str, str, str]] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("registries"), dict) and isinstance(node.get("repository"), str):
                rows.update((region, account, node["repository"]) for region, account in node["registries"].items())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for table in (Path(image_uris.__file__).parent / "image_uri_config").glob("*.json"):
        walk(json.loads(table.read_text()))
    return frozenset(rows)


def image_problem(uri: str, account: str, region: str) -> str | None:
    """Why SageMaker could not pull the image, or None."""
    match = ECR_URI.fullmatch(uri)
    if match and match["region"] == region and (
            match["account"] == account or (region, match["account"], match["repo"]) in image_tables()):
        return None
    return (f"image {uri!r} is neither one of SageMaker's images for {region} (the sagemaker SDK's image URI tables) "
            f"nor in this account's ECR ({account}.dkr.ecr.{region}.amazonaws.com/...)")


def spot_problem(request: dict) -> str | None:
    stopping = request.get("StoppingCondition", {})
    runtime, wait = stopping.get("MaxRuntimeInSeconds", 86_400), stopping.get("MaxWaitTimeInSeconds")
    if not request.get("EnableManagedSpotTraining"):
        return None if wait is None else "MaxWaitTimeInSeconds is only allowed with managed spot training"
    if wait is None:
        return "managed spot training needs StoppingCondition.MaxWaitTimeInSeconds"
    if wait < runtime:
        return f"MaxWaitTimeInSeconds ({wait}) must be at least MaxRuntimeInSeconds ({runtime})"
    return None


def refuse(response: SageMakerResponse, action: str, request: dict) -> None:
    """Raise what SageMaker answers to this request, if it refuses it."""
    if action not in service_model().operation_names:
        return
    problems = request_problems(action, request)
    if problems:
        raise ValidationError(f"{len(problems)} validation error(s) detected: " + "; ".join(problems))
    if action not in JOBS:
        return
    name_param, table, kind = JOBS[action]
    existing = getattr(response.sagemaker_backend, table).get(request[name_param])
    if existing is not None:
        raise ResourceInUseException(f"{kind} job names must be unique within an AWS account and region, and a "
                                     f"{kind.lower()} job with this name already exists ({existing.arn})")
    image = (request["AlgorithmSpecification"].get("TrainingImage") if kind == "Training"
             else request["AppSpecification"]["ImageUri"])
    for problem in (image and image_problem(image, response.current_account, response.region),
                    spot_problem(request) if kind == "Training" else None):
        if problem:
            raise ValidationError(problem)


def install() -> None:
    """Check every SageMaker request moto receives in this process before moto handles it (idempotent)."""
    original = SageMakerResponse.call_action
    if getattr(original, "strict", False):
        return

    def call_action(self: SageMakerResponse):
        action = self._get_action()
        body = self.body.decode() if isinstance(self.body, bytes) else self.body
        try:
            refuse(self, action, json.loads(body or "{}"))
        except SagemakerClientError as e:
            status, headers, body = self.serialized(ActionResult(e))
            return status, {**headers, "status": status}, body
        return original(self)

    call_action.strict = True
    SageMakerResponse.call_action = call_action


if __name__ == "__main__":
    from moto.server import main

    install()
    main(sys.argv[1:])

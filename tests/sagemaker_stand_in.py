"""Stand-in gaps of moto 5.2.5's SageMaker, filled for tests (test code, never product behaviour).

moto leaves these out, and the product's boto3 calls need them:
- `UpdateEndpoint` is not implemented (HTTP 500). Here it switches the endpoint to the new endpoint config.
- `StopTrainingJob` is not implemented (HTTP 500). Here it marks the job Stopped (the SageMaker backend's contract
  runner then ends the job's container, llm_finetune/backends/sagemaker_contract.py).
- Hosting: moto's endpoints are InService at once and InvokeEndpoint answers canned results, 200 even for an endpoint
  that does not exist. Here each endpoint hosts the model its config names, as SageMaker would: the model's
  model.tar.gz (the package's, or JumpStart's ModelDataSource) is fetched from (moto) S3 and loaded into a double of
  the container its image runs (tests/container_doubles.py: HF DLC, TGI, LMI, each with that container's request
  and answer format and parameter checks; never the product's own server); the endpoint reports
  `Creating`/`Updating` until the model is loaded, and InvokeEndpoint hands the request body to the double. An unknown
  or deleted endpoint gets ValidationError, and a container's refusal ModelError (424) with its original status and
  message, as on SageMaker.
So invocation answers in tests are the real model's answers to the real request, in the real container's format: a
test can then check what the container does with the payload and parameters the product sends.
"""

from __future__ import annotations

import json
import tarfile
import threading
import urllib.parse
from pathlib import Path

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from llm_finetune.aws import s3_client
from llm_finetune.backends.model_packages import split_s3_uri
from tests.container_doubles import Refused, container_double


class SageMakerStandIn:
    def __init__(self, moto_url: str, work_dir: Path):
        self.moto_url = moto_url
        self.work_dir = work_dir
        self.hosted: dict[str, object] = {}  # endpoint name -> the container double behind it
        self.lock = threading.Lock()

    # -- hosting -------------------------------------------------------------------------------------------------
    def _served_container(self, backend: SageMakerModelBackend, config_name: str) -> dict:
        """The config's container: {Image, Environment, ModelDataUrl}, from the model package or the model itself."""
        variant = backend.endpoint_configs[config_name].production_variants[0]
        container = backend._models[variant["ModelName"]].primary_container
        if "ModelPackageName" in container:
            package = backend.describe_model_package(container["ModelPackageName"])
            return package.inference_specification["Containers"][0]
        source = container.get("ModelDataSource", {}).get("S3DataSource", {})  # JumpStart's weights
        return {**container, "ModelDataUrl": container.get("ModelDataUrl") or source.get("S3Uri")}

    def _host(self, backend: SageMakerModelBackend, endpoint: FakeEndpoint, config_name: str) -> None:
        """Fetch the config's model.tar.gz, load it into its container's double, then mark the endpoint InService
        (or Failed)."""
        try:
            container = self._served_container(backend, config_name)
            bucket, key = split_s3_uri(container["ModelDataUrl"])
            root = self.work_dir / endpoint.endpoint_name / config_name
            root.mkdir(parents=True, exist_ok=True)
            s3_client(self.moto_url).download_file(bucket, key, str(root / "model.tar.gz"))
            with tarfile.open(root / "model.tar.gz") as tar:
                tar.extractall(root / "model", filter="data")
            double = container_double(container["Image"], root / "model", container.get("Environment") or {})
        except Exception as e:  # noqa: BLE001 - reported the way SageMaker reports it
            endpoint.endpoint_status, endpoint.failure_reason = "Failed", f"{type(e).__name__}: {e}"
            return
        with self.lock:
            self.hosted[endpoint.endpoint_name] = double
        endpoint.endpoint_status = "InService"

    def _start_hosting(self, backend, endpoint: FakeEndpoint, config_name: str, status: str) -> None:
        endpoint.endpoint_status = status
        threading.Thread(target=self._host, args=(backend, endpoint, config_name), daemon=True).start()

    def stop(self, endpoint_name: str) -> None:
        with self.lock:
            self.hosted.pop(endpoint_name, None)

    def close(self) -> None:
        for name in list(self.hosted):
            self.stop(name)

    # -- the patched moto calls ----------------------------------------------------------------------------------
    def install(self, monkeypatch) -> None:
        stand_in = self
        create_endpoint, delete_endpoint = SageMakerModelBackend.create_endpoint, SageMakerModelBackend.delete_endpoint

        def create(backend, endpoint_name, endpoint_config_name, tags):
            endpoint = create_endpoint(backend, endpoint_name, endpoint_config_name, tags)
            stand_in._start_hosting(backend, endpoint, endpoint_config_name, "Creating")
            return endpoint

        def delete(backend, endpoint_name):
            delete_endpoint(backend, endpoint_name)
            stand_in.stop(endpoint_name)

        def update_endpoint(response: SageMakerResponse):  # stand-in gap: moto 5.2.5 has no UpdateEndpoint
            backend = response.sagemaker_backend
            name, config_name = response._get_param("EndpointName"), response._get_param("EndpointConfigName")
            endpoint = backend.endpoints.get(name)
            if endpoint is None:
                raise ValidationError(message=f"Could not find endpoint '{name}'.")
            config = backend.describe_endpoint_config(config_name)  # raises for an unknown config
            endpoint.endpoint_config_name = config_name
            endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
            stand_in._start_hosting(backend, endpoint, config_name, "Updating")
            return ActionResult({"EndpointArn": endpoint.arn})

        # moto takes a tuple's status from its headers' "status"
        def invoke_endpoint(response: SageMakerRuntimeResponse):  # stand-in gap: moto answers canned results
            from moto.sagemaker.models import sagemaker_backends

            name = urllib.parse.unquote(response.path.split("/")[2])  # /endpoints/<name>/invocations
            endpoint = sagemaker_backends[response.current_account][response.region].endpoints.get(name)
            with stand_in.lock:
                double = stand_in.hosted.get(name)
            if endpoint is None or double is None or endpoint.endpoint_status not in ("InService", "Updating"):
                return 400, {"status": 400, "x-amzn-ErrorType": "ValidationError"}, json.dumps(
                    {"message": f"Endpoint {name} of account {response.current_account} not found."})
            body = response.body if isinstance(response.body, bytes) else response.body.encode()  # moto decodes it
            try:
                return 200, {"Content-Type": "application/json"}, json.dumps(double(body))
            except Refused as e:
                original = json.dumps(e.body)
                return 424, {"status": 424, "x-amzn-ErrorType": "ModelError"}, json.dumps(
                    {"message": f"Received client error ({e.status}) from primary with message \"{original}\"",
                     "OriginalStatusCode": e.status, "OriginalMessage": original})

        def stop_training_job(response: SageMakerResponse):  # stand-in gap: moto 5.2.5 has no StopTrainingJob
            name = response._get_param("TrainingJobName")
            job = response.sagemaker_backend.training_jobs.get(name)
            if job is None:
                raise ValidationError(message=f"Could not find training job '{name}'.")
            job.training_job_status = job.secondary_status = "Stopped"
            return ActionResult({})

        monkeypatch.setattr(SageMakerModelBackend, "create_endpoint", create)
        monkeypatch.setattr(SageMakerModelBackend, "delete_endpoint", delete)
        monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
        monkeypatch.setattr(SageMakerResponse, "stop_training_job", stop_training_job, raising=False)
        monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)

"""One client for every endpoint the flows talk to: a URL (our server, TGI, any OpenAI-compatible chat server) or a
SageMaker endpoint (boto3 `sagemaker-runtime`), behind the `InferenceClient` protocol.

Requests follow the chat wire contract of llm_finetune.serving.server:
  generate: {"inputs": str | [str], "parameters": {...}}  -> [{"generated_text": ..., "details": {...}?}, ...]
  chat:     {"messages": [{"role", "content"}, ...], "max_tokens", "temperature", ...}
            -> {"choices": [{"message": {"role": "assistant", "content"}, "finish_reason"}], "usage": {...}, ...}
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, Protocol, runtime_checkable

from llm_finetune.aws import sagemaker_runtime_client

TOKEN_ENV = "LLMFT_ENDPOINT_TOKEN"  # the bearer token a local server requires and a client sends
CHAT_PATH = "/v1/chat/completions"  # OpenAI's path; our server also answers chat bodies on /invocations


class EndpointError(RuntimeError):
    """A request the endpoint refused or could not answer; `status` is the HTTP status, None when no answer came."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class EndpointUnreachable(EndpointError):
    """No answer came at all (refused connection, timeout): the endpoint is down or unreachable."""


@runtime_checkable
class InferenceClient(Protocol):
    """What the flows need from an endpoint, whatever serves it."""

    def generate(self, inputs: str | list[str], parameters: dict | None = None) -> list[dict]:
        """One answer per input: [{"generated_text": ..., "details": {...}?}]."""

    def chat(self, messages: list[dict], **params: Any) -> dict:
        """One chat completion: {"choices": [{"message": {...}, "finish_reason": ...}], "usage": {...}}."""


def chat_body(messages: list[dict], params: dict) -> dict:
    """The chat request body; settings left as None are not sent (the endpoint's defaults apply)."""
    return {"messages": messages, **{k: v for k, v in params.items() if v is not None}}


def generate_body(inputs: str | list[str], parameters: dict | None) -> dict:
    return {"inputs": inputs, "parameters": {k: v for k, v in (parameters or {}).items() if v is not None}}


def as_generations(answer: Any, source: str) -> list[dict]:
    """A generate answer as a list of dicts (some containers answer one dict for one input)."""
    answer = [answer] if isinstance(answer, dict) else answer
    if not isinstance(answer, list) or not all(isinstance(a, dict) for a in answer):
        raise EndpointError(f"{source} answered {str(answer)[:200]!r}, expected a list of objects")
    return answer


def as_chat_completion(answer: Any, source: str) -> dict:
    """A chat answer checked for the one field every caller reads: choices[0].message.content."""
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str):
        raise EndpointError(f"{source} answered {str(answer)[:200]!r}, expected a chat completion "
                            "(choices[0].message.content)")
    return answer


class HttpInferenceClient:
    """An HTTP endpoint: GET /ping, POST /invocations (generate) and POST /v1/chat/completions (chat), with an
    optional bearer token (default: $LLMFT_ENDPOINT_TOKEN, the variable a local server reads its token from)."""

    def __init__(self, url: str, timeout_s: float = 120.0, token: str | None = None, chat_path: str = CHAT_PATH):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.chat_path = chat_path

    def __repr__(self) -> str:  # never the token
        return f"HttpInferenceClient({self.url!r})"

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def post(self, path: str, payload: dict) -> Any:
        """POST JSON, return the parsed answer; EndpointError names the URL, the status and the server's message."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(payload).encode(), headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise EndpointError(f"{self.url}{path} answered {e.code}: {e.read().decode(errors='replace')}",
                                e.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise EndpointUnreachable(f"{self.url}{path}: no answer ({reason})") from None

    def invoke(self, payload: dict) -> Any:
        """Any body to /invocations (the path real SageMaker endpoints and local ones share)."""
        return self.post("/invocations", payload)

    def generate(self, inputs: str | list[str], parameters: dict | None = None) -> list[dict]:
        return as_generations(self.invoke(generate_body(inputs, parameters)), f"{self.url}/invocations")

    def chat(self, messages: list[dict], **params: Any) -> dict:
        return as_chat_completion(self.post(self.chat_path, chat_body(messages, params)),
                                  f"{self.url}{self.chat_path}")


class SageMakerInferenceClient:
    """A SageMaker endpoint through `sagemaker-runtime` InvokeEndpoint (JSON in, JSON out); chat bodies go to the
    same call, as Hugging Face's TGI containers take them."""

    def __init__(self, endpoint_name: str, *, region: str | None = None, endpoint_url: str | None = None,
                 timeout_s: float = 120.0, runtime=None):
        self.endpoint_name = endpoint_name
        self.runtime = runtime or sagemaker_runtime_client(endpoint_url, region, timeout_s)

    def __repr__(self) -> str:
        return f"SageMakerInferenceClient({self.endpoint_name!r})"

    def invoke(self, payload: dict) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.runtime.invoke_endpoint(
                EndpointName=self.endpoint_name, ContentType="application/json", Accept="application/json",
                Body=json.dumps(payload).encode(),
            )
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise EndpointError(f"SageMaker endpoint {self.endpoint_name}: {e}", status) from None
        except BotoCoreError as e:
            raise EndpointUnreachable(f"SageMaker endpoint {self.endpoint_name}: no answer ({e})") from None
        raw = response["Body"].read()
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise EndpointError(f"SageMaker endpoint {self.endpoint_name} answered non-JSON "
                                f"({response.get('ContentType')}): {raw[:200]!r}") from None

    def generate(self, inputs: str | list[str], parameters: dict | None = None) -> list[dict]:
        return as_generations(self.invoke(generate_body(inputs, parameters)), f"SageMaker endpoint {self.endpoint_name}")

    def chat(self, messages: list[dict], **params: Any) -> dict:
        return as_chat_completion(self.invoke(chat_body(messages, params)), f"SageMaker endpoint {self.endpoint_name}")


def open_client(*, url: str | None = None, sagemaker_endpoint: str | None = None, token: str | None = None,
                timeout_s: float = 120.0, region: str | None = None, aws_endpoint_url: str | None = None
                ) -> InferenceClient:
    """The client for exactly one of a URL or a SageMaker endpoint name."""
    if (url is None) == (sagemaker_endpoint is None):
        raise ValueError("give exactly one of url or sagemaker_endpoint")
    if url is not None:
        return HttpInferenceClient(url, timeout_s=timeout_s, token=token)
    return SageMakerInferenceClient(sagemaker_endpoint, region=region, endpoint_url=aws_endpoint_url,
                                    timeout_s=timeout_s)

"""The chat models under test, behind one small protocol: in-process (a Hub id, local folder, registered version or
tiny model through `CausalGenerator`), an HTTP endpoint and a SageMaker endpoint (both speak the chat wire contract).

Chat wire contract: POST /v1/chat/completions {"messages": [...], "max_tokens", "temperature", "seed"} ->
{"choices": [{"message": {"role": "assistant", "content": str}, "finish_reason"}], "usage": {...}}.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel

from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.generation import CausalGenerator, GenerationParams
from llm_finetune.recipes.base import ChatSettings
from llm_finetune.recipes.probes import REGISTERED_URI, ProbeModelSpec
from llm_finetune.serving.endpoint import EndpointError

log = logging.getLogger(__name__)
Messages = list[dict[str, str]]


class ChatModel(Protocol):
    name: str

    def chat(self, messages: Messages, max_tokens: int, temperature: float, seed: int | None) -> str: ...


def answer_all(model: ChatModel, conversations: list[Messages], settings: ChatSettings) -> list[str]:
    """Every conversation's answer, in order: in batches where the model batches (`chat_batch`), else one by one."""
    batched = getattr(model, "chat_batch", None)
    if batched is not None:
        return batched(conversations, settings)
    return [model.chat(c, settings.max_tokens, settings.temperature, settings.seed) for c in conversations]


def chat_request(messages: Messages, max_tokens: int, temperature: float, seed: int | None) -> dict:
    return {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "seed": seed}


def chat_answer(body: object, source: str) -> str:
    """The assistant's text of a chat completion; a clear error naming the endpoint when the shape is wrong."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise EndpointError(f"{source}: not a chat completion (want choices[0].message.content): "
                            f"{json.dumps(body)[:300]}") from None
    if not isinstance(content, str):
        raise EndpointError(f"{source}: choices[0].message.content is {type(content).__name__}, not text")
    return content


class LocalChatModel:
    """A causal LM loaded in this process; the tokenizer's chat template renders the messages."""

    def __init__(self, name: str, model_dir: str, device: str | None = None):
        self.name = name
        self.generator = CausalGenerator(model_dir, device)
        self.folds_system = not _template_takes_system(self.generator.tokenizer)
        if self.folds_system:  # e.g. templates that insist on strict user/assistant alternation
            log.warning("%s: the chat template refuses a system message; it is put before the first user turn",
                        name)

    def chat(self, messages: Messages, max_tokens: int, temperature: float, seed: int | None) -> str:
        settings = ChatSettings(max_tokens=max_tokens, temperature=temperature, seed=seed or 0, batch_size=1)
        return self.chat_batch([messages], settings)[0]

    def chat_batch(self, conversations: list[Messages], settings: ChatSettings) -> list[str]:
        sampling = settings.temperature > 0
        params = GenerationParams(
            max_new_tokens=settings.max_tokens, do_sample=sampling, temperature=settings.temperature or 1.0,
            seed=settings.seed, repetition_penalty=1.0)  # as an endpoint answers: no penalty unless asked for
        if self.folds_system:
            conversations = [fold_system(c) for c in conversations]
        return self.generator.generate(conversations, batch_size=settings.batch_size, params=params)


def _template_takes_system(tokenizer) -> bool:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    try:
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja2 TemplateError from raise_exception(...), or whatever the template raises
        return False
    return True


def fold_system(messages: Messages) -> Messages:
    """The system message's text put before the first user message's (for templates without a system role)."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    first_user = next(m for m in rest if m["role"] == "user")
    first_user["content"] = f"{system}\n\n{first_user['content']}"
    return rest


class HttpChatModel:
    """POSTs the chat wire contract to `<url>/v1/chat/completions` (with a bearer token when one is given)."""

    def __init__(self, name: str, url: str, token: str | None = None, timeout_s: float = 300.0):
        self.name = name
        base = url.rstrip("/")
        self.url = base if base.endswith("/v1/chat/completions") else f"{base}/v1/chat/completions"
        self.token = token
        self.timeout_s = timeout_s

    def chat(self, messages: Messages, max_tokens: int, temperature: float, seed: int | None) -> str:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = json.dumps(chat_request(messages, max_tokens, temperature, seed)).encode()
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as r:
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise EndpointError(f"{self.url} answered {e.code}: {e.read().decode(errors='replace')[:300]}") from None
        except urllib.error.URLError as e:
            raise EndpointError(f"{self.url}: cannot connect ({e.reason})") from None
        return chat_answer(answer, self.url)


class SageMakerChatModel:
    """The same chat request through SageMaker's InvokeEndpoint (as TGI / LMI containers accept the messages API)."""

    def __init__(self, name: str, endpoint_name: str, client=None):
        from llm_finetune.aws import aws_client

        self.name = name
        self.endpoint_name = endpoint_name
        self.client = client or aws_client("sagemaker-runtime")

    def chat(self, messages: Messages, max_tokens: int, temperature: float, seed: int | None) -> str:
        response = self.client.invoke_endpoint(
            EndpointName=self.endpoint_name, ContentType="application/json", Accept="application/json",
            Body=json.dumps(chat_request(messages, max_tokens, temperature, seed)))
        raw = response["Body"].read()
        source = f"SageMaker endpoint {self.endpoint_name}"
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            raise EndpointError(f"{source}: answer is not JSON: {raw[:300]!r}") from None
        return chat_answer(body, source)


class ProbeTarget(BaseModel):
    """Where a model under test is reached: a local model folder / Hub id, an HTTP URL or a SageMaker endpoint.
    `key` names its weights for caching answers (None for endpoints, whose model can change under the same name)."""

    name: str
    kind: Literal["local", "http", "sagemaker"]
    location: str
    key: str | None = None
    token_env: str | None = None


def resolve_target(spec: ProbeModelSpec, corpus: list[str], work_dir: str | Path, tracking_uri: str) -> ProbeTarget:
    """Build or fetch what a spec names: a tiny model (tokenizer trained on `corpus`), a registered version (fetched
    once from the registry), or a Hub id / folder / endpoint as given."""
    work_dir = Path(work_dir)
    if spec.endpoint_url:
        return ProbeTarget(name=spec.name, kind="http", location=spec.endpoint_url, token_env=spec.token_env)
    if spec.sagemaker_endpoint:
        return ProbeTarget(name=spec.name, kind="sagemaker", location=spec.sagemaker_endpoint)
    if spec.tiny:
        from llm_finetune.models.tiny_causal import build_tiny_causal_lm

        location = str(build_tiny_causal_lm(spec.tiny, corpus, work_dir / "base-models", fingerprint(corpus)))
    elif spec.registered:
        from llm_finetune.registry.mlflow_registry import download_model_version, version_of

        match = REGISTERED_URI.match(spec.registered)
        name = match["name"]
        version = version_of(tracking_uri, name, match["version"] or match["alias"])
        dst = work_dir / "registered-models" / fingerprint(tracking_uri, name, version)
        location = str(download_model_version(tracking_uri, name, version, dst))
    else:
        location = spec.name_or_path
    return ProbeTarget(name=spec.name, kind="local", location=location, key=name_or_path_key(location))


def open_chat_model(target: ProbeTarget) -> ChatModel:
    if target.kind == "http":
        token = None
        if target.token_env:
            token = os.environ.get(target.token_env)
            if not token:
                raise EndpointError(f"model {target.name}: environment variable {target.token_env} (token_env) is "
                                    "not set")
        return HttpChatModel(target.name, target.location, token)
    if target.kind == "sagemaker":
        return SageMakerChatModel(target.name, target.location)
    return LocalChatModel(target.name, target.location)

"""The chat models under test, behind one small protocol: in-process (a Hub id, local folder, registered version or
tiny model through `CausalGenerator`), or an HTTP / SageMaker endpoint through the shared `InferenceClient`
(llm_finetune/serving/client.py, the chat wire contract: POST /v1/chat/completions {"messages", "max_tokens",
"temperature", "seed"} -> {"choices": [{"message": {"role": "assistant", "content"}, ...}], ...})."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel

from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.generation import CausalGenerator, GenerationParams
from llm_finetune.models.tiny_causal import build_tiny_causal_lm
from llm_finetune.recipes.base import ChatSettings
from llm_finetune.recipes.probes import ProbeModelSpec
from llm_finetune.registry.mlflow_registry import download_model_version, resolve_model_uri
from llm_finetune.serving.client import EndpointError, InferenceClient, open_client

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


class EndpointChatModel:
    """An endpoint behind the shared InferenceClient (llm_finetune/serving/client.py): our server, TGI, any
    OpenAI-compatible chat server, or a SageMaker endpoint; the chat wire contract either way."""

    def __init__(self, name: str, client: InferenceClient):
        self.name = name
        self.client = client

    def chat(self, messages: Messages, max_tokens: int, temperature: float, seed: int | None) -> str:
        answer = self.client.chat(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
        return answer["choices"][0]["message"]["content"]  # checked by the client


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
        location = str(build_tiny_causal_lm(spec.tiny, corpus, work_dir / "base-models", fingerprint(corpus)))
    elif spec.registered:
        name, version = resolve_model_uri(tracking_uri, spec.registered)
        dst = work_dir / "registered-models" / fingerprint(tracking_uri, name, version)
        location = str(download_model_version(tracking_uri, name, version, dst))
    else:
        location = spec.name_or_path
    return ProbeTarget(name=spec.name, kind="local", location=location, key=name_or_path_key(location))


def open_chat_model(target: ProbeTarget) -> ChatModel:
    if target.kind == "http":
        token = None  # the client then reads $LLMFT_ENDPOINT_TOKEN, as a local server does
        if target.token_env:
            token = os.environ.get(target.token_env)
            if not token:
                raise EndpointError(f"model {target.name}: environment variable {target.token_env} (token_env) is "
                                    "not set")
        return EndpointChatModel(target.name, open_client(url=target.location, token=token))
    if target.kind == "sagemaker":
        return EndpointChatModel(target.name, open_client(sagemaker_endpoint=target.location))
    return LocalChatModel(target.name, target.location)

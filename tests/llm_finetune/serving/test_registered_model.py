"""Serving a registered version by its registry URI (models:/NAME/VERSION, models:/NAME@ALIAS)."""

import json

import pytest

from llm_finetune.approval import ApprovalDecision
from llm_finetune.errors import ApprovalRequiredError
from llm_finetune.generation import GenerationParams
from llm_finetune.inference.served import load_text_model
from llm_finetune.registry.mlflow_registry import log_and_register, record_approval
from llm_finetune.serving.endpoint import start_local_endpoint, stop_local_endpoint
from llm_finetune.serving.server import load_served_model
from tests.http_helpers import request
from tests.tiny_causal import build_tiny_causal, one_torch_thread


def test_serves_a_registered_version_by_alias(tmp_path, monkeypatch):
    model_dir = build_tiny_causal(tmp_path / "llama")
    uri, cache = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "endpoints"
    version = log_and_register(uri, "exp", "chat", str(model_dir), params={}, metrics={}, loss_curve=[], tags={},
                               samples=[{"prompt": "Hi"}], training_fingerprint="fp").version
    with pytest.raises(ApprovalRequiredError, match="'pending', not 'approved'"):
        load_served_model(f"models:/chat/{version}", uri, cache)
    record_approval(uri, "chat", version, ApprovalDecision(approved=True, reviewer="ana", reason="ok",
                                                           automatic=False), "champion")

    served = load_served_model("models:/chat@champion", uri, cache)
    assert (served.kind, served.name) == ("text-generation", "models:/chat@champion")
    assert (cache / f"chat-v{version}" / "model").is_dir()
    settings = GenerationParams(max_new_tokens=8)
    with one_torch_thread():
        assert served.generate(["Why is the sky blue?"], settings) == load_text_model(model_dir).generate(
            ["Why is the sky blue?"], settings)
    assert load_served_model(f"models:/chat/{version}", uri, cache).name == f"models:/chat/{version}"
    with pytest.raises(ValueError, match="'models:/chat@nope' is not in the registry at sqlite:"):
        load_served_model("models:/chat@nope", uri, cache)
    with pytest.raises(ValueError, match="expected models:/NAME/VERSION or models:/NAME@ALIAS"):
        load_served_model("models:/chat", uri, cache)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the server process's registry
    handle = start_local_endpoint("models:/chat@champion", "127.0.0.1", 0, tmp_path / "server.log", timeout_s=120,
                                  server_args=("--cache-dir", str(cache)))
    try:
        status, body = request(handle.url, "POST", "/v1/chat/completions", json.dumps(
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).encode())
        assert status == 200 and body["model"] == "models:/chat@champion" and body["choices"][0]["message"]["content"]
    finally:
        stop_local_endpoint(handle)

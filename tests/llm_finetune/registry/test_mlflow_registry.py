from contextlib import nullcontext

import mlflow
import pytest

from llm_finetune.approval import ApprovalDecision
from llm_finetune.errors import ApprovalRequiredError
from llm_finetune.generation import GenerationParams
from llm_finetune.recipes.base import default_tracking_uri
from llm_finetune.registry import mlflow_registry as registry
from llm_finetune.registry.mlflow_registry import (
    approval_status,
    download_approved_model,
    ensure_experiment,
    log_and_register,
    record_approval,
    recorded_decision,
)


def register(uri, model_dir, training_fingerprint="fp-1"):
    return log_and_register(
        tracking_uri=uri, experiment="exp", model_name="summarizer", model_dir=model_dir,
        params={"training.learning_rate": 0.003}, metrics={"finetuned_rougeL": 0.12},
        loss_curve=[{"step": 10, "loss": 9.0}, {"step": 20, "loss": 7.5}], tags={"recipe": "test"},
        samples=[{"id": "dev_0", "dialogue": "#Person1#: Hi.", "reference": "x", "base": "", "finetuned": "y"}],
        training_fingerprint=training_fingerprint,
    )


def test_registered_version_needs_approval_and_keeps_history(trained_tiny_model, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    v1 = register(uri, trained_tiny_model["finetuned"])
    client = mlflow.MlflowClient(uri)

    run = client.get_run(v1.run_id)
    assert run.data.params["training.learning_rate"] == "0.003"
    assert run.data.metrics["finetuned_rougeL"] == 0.12
    assert [m.value for m in client.get_metric_history(v1.run_id, "train_loss")] == [9.0, 7.5]
    assert {a.path for a in client.list_artifacts(v1.run_id)} >= {"loss_curve.png", "samples.json"}
    assert (tmp_path / "mlartifacts").is_dir()  # SQLite store keeps artifacts beside the database

    version = client.get_model_version("summarizer", v1.version)
    assert version.tags["approval_status"] == "pending" and version.tags["recipe"] == "test"
    with pytest.raises(ApprovalRequiredError, match="'pending', not 'approved'"):
        download_approved_model(uri, "summarizer", v1.version, tmp_path / "dl")

    record_approval(uri, "summarizer", v1.version,
                    ApprovalDecision(approved=True, reviewer="ana", reason="good", automatic=False), "champion")
    assert str(client.get_model_version_by_alias("summarizer", "champion").version) == v1.version
    model_dir = download_approved_model(uri, "summarizer", v1.version, tmp_path / "dl")
    assert (model_dir / "config.json").exists() and (model_dir / "llmft_prompt.json").exists()

    again = register(uri, trained_tiny_model["finetuned"])  # same trained model: same version, decision kept
    assert again.reused and (again.version, again.run_id) == (v1.version, v1.run_id)
    assert recorded_decision(uri, "summarizer", v1.version).reviewer == "ana"
    kept = record_approval(uri, "summarizer", v1.version,
                           ApprovalDecision(approved=False, reviewer="late", reason="x", automatic=True), "champion")
    assert kept.approved and kept.reviewer == "ana" and approval_status(uri, "summarizer", v1.version) == "approved"

    v2 = register(uri, trained_tiny_model["finetuned"], training_fingerprint="fp-2")
    assert not v2.reused and int(v2.version) == int(v1.version) + 1
    record_approval(uri, "summarizer", v2.version,
                    ApprovalDecision(approved=False, reviewer="bo", reason="worse", automatic=False), "champion")
    assert approval_status(uri, "summarizer", v2.version) == "rejected"
    assert client.get_model_version("summarizer", v2.version).tags["approval_reviewer"] == "bo"
    assert str(client.get_model_version_by_alias("summarizer", "champion").version) == v1.version
    with pytest.raises(ApprovalRequiredError, match="'rejected'"):
        download_approved_model(uri, "summarizer", v2.version, tmp_path / "dl2")


def test_a_registry_call_leaves_the_default_tracking_uri_of_later_recipes_alone(tmp_path, monkeypatch):
    # mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI, where recipes take their default tracking URI from:
    # one flow's registry (a SageMaker ARN in CI) became the registry of every recipe loaded later in the process.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'first' / 'mlflow.db'}"
    (tmp_path / "first").mkdir()
    ensure_experiment(uri, "first")
    assert mlflow.get_tracking_uri() == uri  # mlflow.start_run's target, as before
    assert default_tracking_uri(tmp_path / "later") == f"sqlite:///{(tmp_path / 'later' / 'mlflow.db').resolve()}"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team:5001")  # a team's server stays the default
    ensure_experiment(uri, "first")
    assert default_tracking_uri(tmp_path / "later") == "http://mlflow.team:5001"


def test_two_runs_creating_one_experiment_at_once_share_it(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    made_by_the_other_run = ensure_experiment(uri, "exp")
    # This run looked before the other created it: it finds nothing, then its creation is refused as a duplicate.
    looks = []
    found_by_name = mlflow.MlflowClient.get_experiment_by_name
    monkeypatch.setattr(mlflow.MlflowClient, "get_experiment_by_name",
                        lambda self, name: found_by_name(self, name) if looks.append(name) or len(looks) > 1 else None)
    assert ensure_experiment(uri, "exp") == made_by_the_other_run
    assert looks == ["exp", "exp"]


def test_registered_model_loads_as_pyfunc(trained_tiny_model, tmp_path):
    import pandas as pd

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    v = register(uri, trained_tiny_model["finetuned"])
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/summarizer/{v.version}")
    defaults = {p.name: p.default for p in model.metadata.get_params_schema().params}
    # every setting with a value is a typed default; unset ones (seed, stop, ...) are left to the caller
    assert defaults == {k: v for k, v in GenerationParams().model_dump().items() if v not in (None, [])}
    assert {"max_new_tokens", "num_beams", "repetition_penalty", "do_sample"} <= set(defaults)
    out = model.predict(pd.DataFrame({"dialogue": ["#Person1#: Hi, Tom.\n#Person2#: Hello!"]}),
                        params={"max_new_tokens": 8})
    assert len(out) == 1 and isinstance(out[0], str) and out[0]


def test_two_processes_registering_one_trained_model_at_once_end_with_its_oldest_version(
        trained_tiny_model, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # As on a tracking server: no lock file serialises the two registrations.
    monkeypatch.setattr(registry, "registry_lock", lambda tracking_uri: nullcontext())
    lookup, raced = registry.find_version, []

    def lookup_while_another_process_registers(*args):
        if raced:
            return lookup(*args)
        raced.append(None)  # the other process's lookup below is real, and misses too
        raced.append(register(uri, trained_tiny_model["finetuned"]))
        return None  # this lookup ran before the other process registered

    monkeypatch.setattr(registry, "find_version", lookup_while_another_process_registers)
    late = register(uri, trained_tiny_model["finetuned"])
    first = raced[1]

    client = mlflow.MlflowClient(uri)
    assert [str(v.version) for v in client.search_model_versions("name = 'summarizer'")] == [first.version] == ["1"]
    assert not first.reused and late.reused and (late.version, late.run_id) == (first.version, first.run_id)
    duplicate = [r for r in client.search_runs([client.get_experiment_by_name("exp").experiment_id])
                 if r.info.run_id != first.run_id]
    assert [r.data.tags["duplicate_of"] for r in duplicate] == ["1"]  # the late run stays, pointing at the version

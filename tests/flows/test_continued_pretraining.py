"""Scheduled continued pretraining on a real local Prefect server: the cron deployment from prefect.yaml, an
unchanged corpus trained once, added documents training a challenger that is promoted, a challenger that forgets
out-of-domain text rejected with the champion alias kept, and a rollback to the previous champion."""

import os
import subprocess
import sys

import mlflow
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import get_current_settings

from deployments.serve import deployment_specs
from flows.continued_pretraining import DEFAULT_RECIPE_PATH, continued_pretraining, rollback_champion
from llm_finetune.recipes import ContinuedPretrainingRecipe, load_recipe
from tests.conftest import REPO
from tests.pretraining_helpers import SMALL, lines, write

pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def recipe(tmp_path, corpus, *overrides) -> ContinuedPretrainingRecipe:
    where = (f"work_dir={tmp_path / 'work'}", f"registry.tracking_uri=sqlite:///{tmp_path / 'work' / 'mlflow.db'}",
             f"data.train_uri={corpus}", f"data.validation_uri={corpus}", "registry.model_name=plots")
    return load_recipe(DEFAULT_RECIPE_PATH, ContinuedPretrainingRecipe, [*where, *SMALL, *overrides])


def alias(client, name: str) -> str:
    return str(client.get_model_version_by_alias("plots", name).version)


def artifact_keys(state) -> set[str]:
    with get_client(sync_client=True) as client:
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        return {a.key for a in client.read_artifacts(flow_run_filter=runs)}


def test_deployment_has_the_weekly_cron_schedule_and_the_corpus_parameter(tmp_path):
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="local", type="process"))
    env = {**os.environ, "PREFECT_API_URL": get_current_settings().api.url, "PREFECT_HOME": str(tmp_path)}
    deploy = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name",
                             "continued-pretraining"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

    spec = next(s for s in deployment_specs() if s["name"] == "continued-pretraining")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("continued-pretraining/continued-pretraining")
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * 1"] == [s["cron"] for s in spec["schedules"]]
    assert all(s.active for s in deployment.schedules)
    assert deployment.parameters == {"corpus_uri": "../shared/data/movie_plots/"}
    assert deployment.work_pool_name == "local"
    properties = deployment.parameter_openapi_schema["properties"]
    assert set(properties) == {"recipe", "corpus_uri"}


def test_champion_challenger_cycle(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # First corpus: movie plots and dialogues; held out: other plots. Later additions: plots only.
    write(corpus / "train-000.jsonl", lines("movie_plots/train.jsonl", "text", 0, 40)
          + lines("dialogsum/train.jsonl", "dialogue", 0, 60))
    write(corpus / "validation.jsonl", lines("movie_plots/validation.jsonl", "text", 0, 8))
    uri = recipe(tmp_path, corpus).tracking_uri()
    client = mlflow.MlflowClient(uri)

    # 1. First run: trained from the base model, promoted.
    first = continued_pretraining(recipe=recipe(tmp_path, corpus))
    assert first.status == "trained" and first.starting_model.label == "base model"
    assert first.selection.new == 100 and first.release.decision.approved
    assert first.metrics["challenger"]["perplexity_in_domain"] < first.metrics["base"]["perplexity_in_domain"]
    assert alias(client, "champion") == first.release.version.version == "1"

    # 2. Unchanged corpus: ends early, Completed, no new version.
    state = continued_pretraining(recipe=recipe(tmp_path, corpus), return_state=True)
    assert state.is_completed() and state.result().status == "no-new-data"
    assert "no-new-data" in artifact_keys(state)
    assert len(client.search_model_versions("name = 'plots'")) == 1

    # 3. Documents added: a challenger trained from the champion on them plus replayed ones, promoted.
    write(corpus / "train-001.jsonl", lines("movie_plots/train.jsonl", "text", 40, 80))
    second = continued_pretraining(recipe=recipe(tmp_path, corpus, "replay_share=0.75", "training.max_steps=20"))
    assert second.status == "trained" and second.starting_model.label == "champion v1"
    assert (second.selection.new, second.selection.replayed) == (40, 100)  # 120 wanted, 100 seen
    assert second.release.decision.approved, second.release.decision.reason
    assert alias(client, "champion") == "2"
    assert alias(client, "previous-champion") == "1"

    # 4. More plots, no replay, a high learning rate: in domain better, dialogues forgotten -> rejected.
    write(corpus / "train-002.jsonl", lines("movie_plots/train.jsonl", "text", 80, 120))
    third = continued_pretraining(recipe=recipe(tmp_path, corpus, "replay_share=0", "training.learning_rate=0.01",
                                                "training.max_steps=20"))
    assert third.status == "trained" and (third.selection.new, third.selection.replayed) == (40, 0)
    champion, challenger = third.metrics["champion"], third.metrics["challenger"]
    assert challenger["perplexity_in_domain"] < champion["perplexity_in_domain"]
    assert challenger["perplexity_out_of_domain"] > 1.15 * champion["perplexity_out_of_domain"]
    decision = third.release.decision
    assert not decision.approved and decision.reviewer == "policy" and decision.automatic
    assert "perplexity_out_of_domain" in decision.reason and "may rise by at most 15.00%" in decision.reason
    assert "perplexity_in_domain" not in decision.reason
    assert client.get_model_version("plots", "3").tags["approval_status"] == "rejected"
    assert alias(client, "champion") == "2"
    assert third.release.endpoint_test is None  # a rejected challenger is never deployed

    # 5. Rollback: one alias move back to the previous champion.
    rolled = rollback_champion(recipe=recipe(tmp_path, corpus), reason="plots drifted")
    assert (rolled.demoted, rolled.restored) == ("2", "1")
    assert alias(client, "champion") == "1"
    assert "previous-champion" not in client.get_registered_model("plots").aliases
    assert client.get_model_version("plots", "2").tags["rolled_back_reason"] == "plots drifted"

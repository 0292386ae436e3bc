"""Shared fixtures: offline settings, the real DialogSum sample, a small recipe, a tiny trained model, a moto server."""

from __future__ import annotations

import os

for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(key, value)
# A shell that sourced a team's env file (scripts/team_up.sh) must not send the tests' runs to the team's registry.
os.environ.pop("MLFLOW_TRACKING_URI", None)

import shutil  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

from llm_finetune.recipes import SummarizationRecipe, load_recipe  # noqa: E402

if TYPE_CHECKING:
    from llm_finetune.data.intake import ValidatedData
    from llm_finetune.data.summarization import PreparedDataset
    from llm_finetune.training.seq2seq import Seq2SeqTrainJob

REPO = Path(__file__).resolve().parent.parent
# As recipes write it: their local paths are made absolute lexically, so a symlinked shared/ stays beside the project
SHARED_DATA = REPO.parent / "shared" / "data"
DIALOGSUM = SHARED_DATA / "dialogsum"
DEFAULT_RECIPE = REPO / "recipes" / "dialogsum_flan_t5_tiny.yaml"


# The default tiny recipe cut down to run in seconds, as command-line overrides.
SMALL_OVERRIDES = (
    "data.max_train_records=128", "data.max_validation_records=40",
    "training.max_steps=60", "training.learning_rate=0.003", "training.save_steps=30", "training.logging_steps=10",
    "evaluation.max_records=16", "evaluation.num_samples_shown=2",
    "endpoint.num_test_records=3",
)


# Files that take minutes, longest first: the two pytest workers (scripts/test.sh, whole files each) start them before
# the many short ones, which then fill in, so neither worker is left with a long file at the end.
SLOW_FIRST = (  # by the summed durations of a full run (`--durations=0`), 2026-12-05
    "tests/deployments/test_cli.py", "tests/flows/test_dialogsum_flan_t5.py", "tests/team/",
    "tests/flows/test_dolly_flows.py",
    "tests/llm_finetune/training/test_causal_lm.py", "tests/flows/test_sentiment_comparison.py",
    "tests/flows/test_continued_pretraining.py", "tests/flows/test_falcon_squad_qa.py",
    "tests/llm_finetune/serving/test_endpoint.py", "tests/llm_finetune/backends/test_sagemaker_training.py",
    "tests/llm_finetune/pipelines/test_dialogsum_pipeline.py", "tests/llm_finetune/training/test_resume.py",
    "tests/flows/test_release_rollback.py", "tests/llm_finetune/training/test_classification.py",
    "tests/llm_finetune/backends/test_sagemaker_multi_instance.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path)).relative_to(REPO).as_posix()
        return next((i for i, prefix in enumerate(SLOW_FIRST) if path.startswith(prefix)), len(SLOW_FIRST))
    items.sort(key=rank)  # stable: the order inside a file, and of the other files, is kept


def small_recipe(work_dir: Path, *overrides: str) -> SummarizationRecipe:
    """The default tiny recipe with SMALL_OVERRIDES, state under work_dir, then `key.sub=value` overrides."""
    where = (f"work_dir={work_dir}", f"registry.tracking_uri=sqlite:///{work_dir / 'mlflow.db'}")
    return load_recipe(DEFAULT_RECIPE, overrides=[*where, *SMALL_OVERRIDES, *overrides])


@pytest.fixture(autouse=True)
def tracking_uri_of_the_process_restored():
    """Tests that point mlflow at their own store (mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI) leave
    later tests in the same worker their recipes' own defaults."""
    import mlflow

    before_env, before = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)
    if before_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before_env


@pytest.fixture(scope="session", autouse=True)
def stop_temporary_prefect_servers():
    """Prefect stops its temporary servers at interpreter exit and logs that to a console pytest has closed by then
    ('--- Logging error ---'); stop them while the session's streams are still open."""
    yield
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    APILogWorker.drain_all(timeout=10)  # logs still queued for a server must reach it before it stops
    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()


def session_root(tmp_path_factory) -> Path:
    """This test session's folder, shared by its pytest-xdist workers (each worker's basetemp lies inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def small_run_job(recipe: SummarizationRecipe, validated: ValidatedData,
                  work: Path) -> tuple[str, PreparedDataset, Seq2SeqTrainJob]:
    """The small recipe's base model, tokenized data and training job in work's layout (base-models/, datasets/,
    runs/<fingerprint>/): (base, prepared dataset, job); the model and data are built unless already there."""
    from llm_finetune.data.summarization import prepare_summarization_dataset
    from llm_finetune.models.base import base_model_path
    from llm_finetune.training.seq2seq import seq2seq_job

    base = base_model_path(recipe.model, recipe.data, validated, work / "base-models")
    prepared = prepare_summarization_dataset(recipe.data, validated, base, work / "datasets")
    return base, prepared, seq2seq_job(base, prepared.path, prepared.fingerprint, recipe.data.prompt_template,
                                       recipe.training, work)


@pytest.fixture(scope="session")
def small_trained_work_dir(tmp_path_factory) -> Path:
    """A work_dir in the flow's layout holding the small recipe's tiny T5, tokenized data and finished 60-step run:
    trained once per test session by whichever worker asks first (the others wait on the product's own build
    lock). Read it; copy it with `seed_work_dir` to change anything."""
    from llm_finetune.data.shapes import load_data
    from llm_finetune.fingerprint import build_once
    from llm_finetune.training.seq2seq import train_seq2seq

    work = session_root(tmp_path_factory) / "small-trained-work-dir"
    with build_once(work) as needed:
        if needed:
            recipe = small_recipe(work)
            train_seq2seq(small_run_job(recipe, load_data(recipe.data, work), work)[2])
    return work


def seed_work_dir(work_dir: Path, trained: Path) -> Path:
    """Copy the trained base model, tokenized data and finished run into work_dir, so that a flow on the small
    recipe reuses them (content fingerprints name them) instead of training again."""
    for part in ("base-models", "datasets", "runs"):
        shutil.copytree(trained / part, work_dir / part, dirs_exist_ok=True)
    return work_dir


@pytest.fixture(scope="session")
def trained_tiny_model(tmp_path_factory, small_trained_work_dir) -> dict:
    """The small recipe's tiny T5 fine-tuned for 60 steps on the DialogSum sample (in `small_trained_work_dir`):
    {'base', 'finetuned', 'recipe', 'validated', 'prepared', 'result'}; recipe and validated data in a work_dir of
    this worker's own."""
    from llm_finetune.data.shapes import load_data
    from llm_finetune.training.job import finished_result

    recipe = small_recipe(tmp_path_factory.mktemp("trained"))
    validated = load_data(recipe.data, recipe.work_dir)
    base, prepared, job = small_run_job(recipe, validated, small_trained_work_dir)
    result = finished_result(job.output_dir)
    assert result is not None, f"no finished run in {job.output_dir}"
    return {"base": base, "finetuned": result.model_dir, "recipe": recipe, "validated": validated,
            "prepared": prepared, "result": result.model_copy(update={"reused": False})}  # as its training returned


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_api_server(tmp_path_factory):
    """One temporary Prefect server, on a SQLite database of its own, per test process (starting one costs seconds
    and a dozen modules run flows). Modules use it through `prefect_server`."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    database = tmp_path_factory.mktemp("prefect") / "prefect.db"
    with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}"}):
        server = SubprocessASGIServer(port=free_port())
        server.start(timeout=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prefect_server(prefect_api_server):
    """This module's flows run against the process's temporary server, as under `prefect_test_harness`; outside
    such modules no API is set, so server-less tests stay server-less."""
    import prefect.context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    prior = SubprocessASGIServer._instances.get(None)
    SubprocessASGIServer._instances[None] = prefect_api_server  # code that asks for a temporary server gets this one
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_api_server.api_url}), \
                prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()):
            yield prefect_api_server
            APILogWorker.drain_all(timeout=10)  # this module's logs and events reach the server, not the next one's
            EventsWorker.drain_all()
    finally:
        if prior is None:
            SubprocessASGIServer._instances.pop(None, None)
        else:
            SubprocessASGIServer._instances[None] = prior


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real moto server on 127.0.0.1; boto3 clients reach it through endpoint_url, as they would real AWS. Its
    SageMaker refuses what the service refuses (tests/strict_sagemaker.py)."""
    from moto.server import ThreadedMotoServer

    from tests.strict_sagemaker import install

    install()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def sagemaker_stand_in(moto_endpoint, monkeypatch, tmp_path):
    """moto's SageMaker with its stand-in gaps filled (tests/sagemaker_stand_in.py: UpdateEndpoint, StopTrainingJob,
    and endpoints that host the real model behind InvokeEndpoint); product code reaches it through AWS_ENDPOINT_URL."""
    from tests.sagemaker_stand_in import SageMakerStandIn

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    stand_in = SageMakerStandIn(moto_endpoint, tmp_path / "sagemaker-hosting")
    stand_in.install(monkeypatch)
    yield stand_in
    stand_in.close()

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

import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from llm_finetune.recipes import SummarizationRecipe, load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# resolved: recipes resolve their data paths, and shared/ may be a symlink
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
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
SLOW_FIRST = (
    "tests/team/", "tests/flows/test_dialogsum_flan_t5.py", "tests/deployments/test_cli.py", "tests/examples/",
    "tests/flows/test_dolly_flows.py", "tests/flows/test_release_rollback.py", "tests/flows/test_sentiment_comparison.py",
    "tests/llm_finetune/backends/test_sagemaker_multi_instance.py", "tests/llm_finetune/training/test_causal_lm.py",
    "tests/flows/test_falcon_squad_qa.py", "tests/llm_finetune/backends/test_sagemaker_training.py",
    "tests/flows/test_continued_pretraining.py", "tests/llm_finetune/training/test_resume.py",
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


@pytest.fixture(scope="session")
def trained_tiny_model(tmp_path_factory) -> dict:
    """A tiny T5 fine-tuned for 60 steps on the DialogSum sample: {'base', 'finetuned', 'recipe', 'validated', ...}."""
    from llm_finetune.data.shapes import load_data
    from llm_finetune.data.summarization import prepare_summarization_dataset
    from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization
    from llm_finetune.training.seq2seq import Seq2SeqTrainJob, train_seq2seq

    work = tmp_path_factory.mktemp("trained")
    recipe = small_recipe(work)
    validated = load_data(recipe.data, work)
    base = build_tiny_t5_for_summarization(recipe.model.tiny, recipe.data, validated, work / "models")
    prepared = prepare_summarization_dataset(recipe.data, validated, str(base), work / "datasets")
    result = train_seq2seq(Seq2SeqTrainJob(base_model=str(base), dataset_dir=prepared.path,
                                           output_dir=str(work / "run"), prompt_template=recipe.data.prompt_template,
                                           params=recipe.training))
    return {"base": str(base), "finetuned": result.model_dir, "recipe": recipe, "validated": validated,
            "prepared": prepared, "result": result}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

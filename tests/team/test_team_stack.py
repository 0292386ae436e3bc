"""The team stack on real parts (scripts/team_up.sh): PostgreSQL, Prefect and MLflow servers on it, a moto S3 stand-in
for MLflow's artifacts, a process worker. A deployment runs through the worker to completion while the Prefect server
is killed and started again by team_up.sh, its artifacts land in the stand-in's bucket, another process loads the
approved model by alias; a second worker and the first take two runs of one recipe at once and they end with one
version; the Dolly deployment pauses for a reviewer, who answers its typed form through the REST API as the UI
does; a test-only cron makes the server schedule continued pretraining, whose first run trains and whose second
finds no new data; team_down.sh stops every PID."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import boto3
import mlflow
import pytest
from pydantic import BaseModel

from llm_finetune.recipes import ContinuedPretrainingRecipe, InstructionRecipe, SummarizationRecipe, load_recipe
from llm_finetune.registry.mlflow_registry import DUPLICATE_OF, TRAINING_FINGERPRINT
from tests.browser_helpers import Browser
from tests.conftest import REPO, small_recipe
from tests.pretraining_helpers import SMALL, lines, write
from tests.release_helpers import GATE_PASSES

pytestmark = pytest.mark.skipif(not (shutil.which("initdb") and shutil.which("pg_ctl")),
                                reason="PostgreSQL binaries (initdb, pg_ctl) are not on PATH")

# Run with the team's env file (PREFECT_API_URL), not this test's Prefect; timeout 0: start the run, do not wait.
START_DEPLOYMENT = """
import json, sys
from prefect.deployments import run_deployment
run = run_deployment(sys.argv[1], parameters={"recipe": json.loads(sys.argv[2])}, timeout=0)
print(json.dumps({"id": str(run.id)}))
"""
LOAD_CHAMPION = """
import json, sys
import mlflow, pandas
name = sys.argv[1]
model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
version = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
print(json.dumps({"summary": list(model.predict(pandas.DataFrame({"dialogue": [sys.argv[2]]})))[0],
                  "version": version.version,
                  "download_uri": mlflow.MlflowClient().get_model_version_download_uri(name, version.version)}))
"""
DIALOGUE = "#Person1#: Where is the station? #Person2#: Go straight and turn left at the bank."
# One run at a time per worker, so that two runs created at once go to two workers (and scheduled runs follow one
# another); workers poll every 2 s instead of 10.
WORKER_SETTINGS = {"LLMFT_TEAM_WORKER_LIMIT": "1", "PREFECT_WORKER_QUERY_SECONDS": "2"}
TINY_RUN = ("registry.tracking_uri=null", "data.max_train_records=32", "training.max_steps=6",
            "evaluation.max_records=4", "endpoint.num_test_records=1", "approval.min_metrics={}", *GATE_PASSES)
# The Dolly default, small; its gate asks for a 99% lower perplexity, which 4 steps cannot give: a reviewer decides.
DOLLY_REVIEWED = ("registry.tracking_uri=null", "registry.model_name=team-dolly", "data.max_train_records=32",
                  "training.max_steps=4", "evaluation.max_records=2", "endpoint.num_test_records=1",
                  "approval.min_relative_decrease={perplexity: 0.99}", "approval.manual_timeout_s=600")
TEST_CRON = "* * * * * */20"  # every 20 s (croniter's sixth field is seconds); prefect.yaml's schedule is weekly
SCHEDULER_PASS_SECONDS = 10  # longer than one pass of the server's scheduler over a deployment
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def read_env_file(path: Path) -> dict[str, str]:
    lines = [line.removeprefix("export ") for line in path.read_text().splitlines() if line.startswith("export ")]
    return dict(line.split("=", 1) for line in lines)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def script(name: str, env: dict, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", f"scripts/{name}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def python(code: str, *args: str, env: dict, timeout: int) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def api(base: str, path: str, body: dict | None = None, method: str | None = None):
    """The Prefect REST API: GET, POST with a JSON body, or `method`; None for an empty answer."""
    request = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = response.read()
    return json.loads(answer) if answer else None


def run_failures(prefect_api: str, runs: list[dict]) -> str:
    """What ended each run that did not complete: its state's message and its error log lines."""
    lines = []
    for r in runs:
        if r["state"]["type"] != "COMPLETED":
            errors = api(prefect_api, "/logs/filter", {"logs": {"flow_run_id": {"any_": [r["id"]]},
                                                                "level": {"ge_": 40}}})
            lines += [f"{r['id']}: {r['state']['type']}: {r['state'].get('message')}",
                      *(f"  {log['message'][-1500:]}" for log in errors)]
    return "\n".join(lines)


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(1)
    return found


def test_team_up_runs_a_deployment_through_a_server_restart_and_team_down_stops_everything():
    # Not under pytest's tmp_path: its folders are private to root, and PostgreSQL runs as the postgres user.
    team = Path(tempfile.mkdtemp(prefix="llmft-team-"))
    team.chmod(0o711)
    work = team / "work"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "LLMFT_TEAM_ARTIFACTS", "MLFLOW_S3_ENDPOINT_URL",
                          "LLMFT_PROJECT_DIR")}
    env = {**clean, "LLMFT_TEAM_DIR": str(team / "state"), "LLMFT_VENV": sys.prefix, **WORKER_SETTINGS}
    pids: dict[str, int] = {}
    try:
        started = time.monotonic()
        up = script("team_up.sh", env, timeout=420)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        print(f"team_up: {time.monotonic() - started:.0f} s")
        pids = {name: int((team / "state" / "run" / f"{name}.pid").read_text())
                for name in ("worker", "prefect", "mlflow", "s3")}
        pids["postgres"] = int((team / "state" / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
        assert all(alive(pid) for pid in pids.values()), pids
        team_env = read_env_file(team / "state" / "env")
        assert all(v.startswith("http://127.0.0.1:") for k, v in team_env.items() if k.endswith(("_URL", "_URI")))

        prefect_api = team_env["PREFECT_API_URL"]
        deployments = api(prefect_api, "/deployments/filter", {})
        pull_steps = {d["name"]: d["pull_steps"] for d in deployments}
        assert len(pull_steps) == 13 and {d["work_pool_name"] for d in deployments} == {"local"}
        # No path of this machine in what the server keeps: the worker fills in its own project folder.
        assert str(REPO) not in json.dumps(pull_steps) and all(
            steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $LLMFT_PROJECT_DIR }}"}}]
            for steps in pull_steps.values())

        recipe = small_recipe(work, *TINY_RUN)
        started = time.monotonic()
        run_id = python(START_DEPLOYMENT, "dialogsum-flan-t5/dialogsum-flan-t5",
                        json.dumps(recipe.model_dump(mode="json")), env={**clean, **team_env}, timeout=120)["id"]
        wait_for(lambda: [t for t in api(prefect_api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
                          if t["name"].startswith("train-model") and t["state"]["type"] == "RUNNING"],
                 300, "train-model task running on the worker")

        # The Prefect server goes away mid-run; team_up starts it again and nothing else (idempotent).
        restarted = time.monotonic()
        os.killpg(pids["prefect"], signal.SIGTERM)
        wait_for(lambda: not alive(pids["prefect"]), 60, "Prefect server exit")
        again = script("team_up.sh", env, timeout=300)
        assert again.returncode == 0, again.stderr
        for name in ("postgres", "s3 stand-in", "mlflow", "worker"):
            assert f"{name} already running" in again.stdout, again.stdout
        assert "prefect already running" not in again.stdout
        assert read_env_file(team / "state" / "env") == team_env
        pids["prefect"] = int((team / "state" / "run" / "prefect.pid").read_text())
        print(f"Prefect server away for {time.monotonic() - restarted:.0f} s")

        state = end_of(prefect_api, [run_id], 420, "end of the flow run")[0]["state"]
        print(f"deployment run: {time.monotonic() - started:.0f} s")
        assert state["type"] == "COMPLETED", state
        if chromium := shutil.which("chromium"):
            started = time.monotonic()
            the_ui_shows_the_deployments_the_recipe_form_and_the_run_artifacts(chromium, prefect_api, run_id)
            print(f"UI checks in headless Chromium: {time.monotonic() - started:.0f} s")

        # prefect.yaml's weekly schedule is live: the server holds runs for coming Mondays 03:00 UTC, for the worker.
        weekly = api(prefect_api, "/deployments/name/continued-pretraining/continued-pretraining")
        scheduled = wait_for(lambda: api(prefect_api, "/flow_runs/filter", {"flow_runs": {
            "deployment_id": {"any_": [weekly["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}), 90,
            "scheduled continued-pretraining run")
        starts = [datetime.fromisoformat(r["expected_start_time"]).astimezone(timezone.utc) for r in scheduled]
        assert all((t.weekday(), t.hour, t.minute) == (0, 3, 0) and t > datetime.now(timezone.utc) for t in starts)
        assert {r["work_pool_name"] for r in scheduled} == {"local"}

        client_env = {**clean, **team_env}
        loaded = python(LOAD_CHAMPION, recipe.registry.model_name, DIALOGUE, env=client_env, timeout=180)
        assert loaded["version"] == "1" and isinstance(loaded["summary"], str)
        assert not (work / "mlflow.db").exists()  # registered on the team's server, not in a local file
        # Proxied artifacts: mlflow-artifacts:/<path> is s3://llmft-mlflow/artifacts/<path> on the stand-in.
        model_key = "artifacts/" + loaded["download_uri"].split(":", 1)[1].lstrip("/") + "/MLmodel"
        s3 = boto3.client("s3", endpoint_url=team_env["LLMFT_TEAM_S3_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="llmft-mlflow")["Contents"]]
        assert model_key in keys, keys

        a_paused_review_is_answered_through_the_api(prefect_api, team_env["MLFLOW_TRACKING_URI"], work, client_env)

        worker_env = {**env, **team_env, "LLMFT_PROJECT_DIR": str(REPO),
                      "PREFECT_HOME": str(team / "state" / "prefect-home")}
        # Another fingerprint than the first run's (fewer steps): it trains, in the same work_dir.
        pair = small_recipe(work, *TINY_RUN, "training.max_steps=4").model_dump(mode="json")
        two_workers_take_two_runs_at_once(prefect_api, team_env["MLFLOW_TRACKING_URI"], pair, worker_env, pids)
        scheduled_runs_train_then_find_no_new_data(prefect_api, team_env["MLFLOW_TRACKING_URI"], team)
    finally:
        down = script("team_down.sh", env, timeout=240)
        shutil.rmtree(team, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert "stopped worker prefect mlflow s3 postgres" in down.stdout
    deadline = time.monotonic() + 30
    while [pid for pid in pids.values() if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [name for name, pid in pids.items() if alive(pid)]


@pytest.mark.parametrize("setting, message", [
    ({"LLMFT_TEAM_ARTIFACTS": "/srv/artifacts"}, "team_up: LLMFT_TEAM_ARTIFACTS must be an s3:// URI, got '/srv/artifacts'"),
    ({"LLMFT_VENV": "/nonexistent"}, "team_up: no prefect/mlflow in /nonexistent/bin: set LLMFT_VENV to the project's "
                                     "environment"),
    ({"LLMFT_TEAM_WORKER_LIMIT": "two"}, ("team_up: LLMFT_TEAM_WORKER_LIMIT must be a number of runs (1 or more), "
                                          "got 'two'")),
    ({"LLMFT_TEAM_TRACKING_URI": "mlflow.db"}, ("team_up: LLMFT_TEAM_TRACKING_URI must be a SageMaker managed MLflow "
                                                "ARN or an http(s):// URL, got 'mlflow.db'")),
    ({"LLMFT_TEAM_TRACKING_URI": "arn:aws:sagemaker:us-east-1:123456789012:team"}, (
        "team_up: LLMFT_TEAM_TRACKING_URI: 'arn:aws:sagemaker:us-east-1:123456789012:team' is not a SageMaker managed "
        "MLflow ARN: expected arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME or ...:mlflow-app/ID")),
])
def test_team_up_refuses_bad_settings_in_one_line_before_starting_anything(tmp_path, setting, message):
    env = {**os.environ, "LLMFT_VENV": sys.prefix, "LLMFT_TEAM_DIR": str(tmp_path / "state"), **setting}
    done = script("team_up.sh", env, timeout=60)
    assert done.returncode == 1 and done.stderr.strip() == message
    assert not (tmp_path / "state").exists()


def start_second_worker(env: dict, log: Path) -> subprocess.Popen:
    """Another process worker on the pool: team_up.sh's command and environment."""
    command = [f"{sys.prefix}/bin/prefect", "worker", "start", "--pool", "local", "--type", "process",
               "--limit", env["LLMFT_TEAM_WORKER_LIMIT"]]
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def end_of(prefect_api: str, run_ids: list[str], seconds: float, what: str) -> list[dict]:
    """The runs, once each has a final state."""
    def ended():
        runs = [api(prefect_api, f"/flow_runs/{run_id}") for run_id in run_ids]
        return all(r["state"]["type"] in FINAL for r in runs) and runs

    return wait_for(ended, seconds, what)


def a_paused_review_is_answered_through_the_api(prefect_api: str, tracking_uri: str, work: Path,
                                                client_env: dict) -> None:
    """The Dolly deployment runs on the worker; its gate cannot pass on the numbers, so the run pauses with the typed
    review form. The test reads the evidence and answers the form through the REST API, as the UI does (POST
    /flow_runs/{id}/resume with the input); the run completes and the version is the champion, approved by that
    reviewer."""
    recipe = load_recipe(REPO / "recipes" / "dolly_llama2_tiny.yaml", InstructionRecipe,
                         overrides=[f"work_dir={work}", *DOLLY_REVIEWED])
    started = time.monotonic()
    run_id = python(START_DEPLOYMENT, "dolly-llama2-sft/dolly-llama2-sft", json.dumps(recipe.model_dump(mode="json")),
                    env=client_env, timeout=120)["id"]

    def paused_with_form():
        paused = api(prefect_api, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}})
        keys = paused[0]["state"]["state_details"].get("run_input_keyset") if paused else None
        return keys and (paused[0]["id"], keys)

    paused_id, keys = wait_for(paused_with_form, 420, "the Dolly run paused for review")
    evidence = wait_for(lambda: _input_or_none(prefect_api, paused_id, keys["description"]), 60, "the review form")
    assert f"# Review `{recipe.registry.model_name}` version" in evidence and "perplexity" in evidence, evidence[:2000]
    schema = json.dumps(_input_or_none(prefect_api, paused_id, keys["schema"]))
    assert all(field in schema for field in ("approve", "reviewer", "reason"))
    api(prefect_api, f"/flow_runs/{paused_id}/resume",
        {"run_input": {"approve": True, "reviewer": "team-lead", "reason": "read the samples"}})
    state = end_of(prefect_api, [run_id], 300, "end of the reviewed Dolly run")[0]["state"]
    assert state["type"] == "COMPLETED", state
    champion = mlflow.MlflowClient(tracking_uri).get_model_version_by_alias(recipe.registry.model_name, "champion")
    assert champion.tags["approval_status"] == "approved" and champion.tags["approval_reviewer"] == "team-lead"
    print(f"Dolly run paused for review, resumed through the API: {time.monotonic() - started:.0f} s")


def _input_or_none(prefect_api: str, run_id: str, key: str):
    """A paused run's stored input (its form's description or schema), None until it is stored."""
    try:
        value = api(prefect_api, f"/flow_runs/{run_id}/input/{key}")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        return None
    return value  # stored as JSON: the description a string, the schema an object


def two_workers_take_two_runs_at_once(prefect_api: str, tracking_uri: str, recipe: dict, worker_env: dict,
                                      pids: dict[str, int]) -> None:
    """Two runs of one recipe created at once: each worker takes one; one trains while the other waits on the stages'
    build locks in the shared work_dir; the model ends with one version."""
    deployment = api(prefect_api, "/deployments/name/dialogsum-flan-t5/dialogsum-flan-t5")
    worker = start_second_worker(worker_env, Path(worker_env["LLMFT_TEAM_DIR"]) / "logs" / "second-worker.log")
    pids["second worker"] = worker.pid
    try:
        wait_for(lambda: len(api(prefect_api, "/work_pools/local/workers/filter", {})) == 2, 60,
                 "second worker on the pool")
        started = time.monotonic()
        run_ids = [api(prefect_api, f"/deployments/{deployment['id']}/create_flow_run",
                       {"parameters": {"recipe": recipe}})["id"] for _ in range(2)]
        runs = end_of(prefect_api, run_ids, 420, "end of both runs")
        print(f"two runs at once on two workers: {time.monotonic() - started:.0f} s")
    finally:
        stop(worker)
    assert [r["state"]["type"] for r in runs] == ["COMPLETED", "COMPLETED"], run_failures(prefect_api, runs)
    # The worker that won a run labels it (prefect.worker.name) once its PENDING proposal is accepted. Not the
    # "submitting flow run" log line: both workers write it when both fetch a run, and the loser then aborts.
    ran_by = {r["id"]: r["labels"].get("prefect.worker.name") for r in runs}
    assert None not in ran_by.values() and len(set(ran_by.values())) == 2, ran_by

    client = mlflow.MlflowClient(tracking_uri)
    versions = client.search_model_versions(f"name = '{recipe['registry']['model_name']}'")
    # one version per trained model: the first run's and this pair's
    assert sorted(Counter(v.tags[TRAINING_FINGERPRINT] for v in versions).values()) == [1, 1]
    runs = client.search_runs([client.get_experiment_by_name(recipe["registry"]["experiment"]).experiment_id])
    print(f"versions deleted as duplicates: {sum(DUPLICATE_OF in r.data.tags for r in runs)}")


def scheduled_runs_train_then_find_no_new_data(prefect_api: str, tracking_uri: str, team: Path) -> None:
    """A deployment of continued pretraining with a test-only cron: the server's scheduler makes the runs, the worker
    takes them one after the other; the first trains, the later ones find the corpus unchanged. Then the schedule is
    removed and no run is left waiting."""
    corpus = team / "corpus"
    corpus.mkdir()
    write(corpus / "train-000.jsonl", lines("movie_plots/train.jsonl", "text", 0, 40))
    write(corpus / "validation.jsonl", lines("movie_plots/validation.jsonl", "text", 0, 8))
    recipe = load_recipe(REPO / "recipes" / "continued_pretraining_gpt2_tiny.yaml", ContinuedPretrainingRecipe, [
        f"work_dir={team / 'work-pretraining'}", "registry.tracking_uri=null", f"data.train_uri={corpus}",
        f"data.validation_uri={corpus}", *SMALL])
    weekly = api(prefect_api, "/deployments/name/continued-pretraining/continued-pretraining")
    deployment = api(prefect_api, "/deployments/", {
        **{k: weekly[k] for k in ("flow_id", "entrypoint", "path", "pull_steps", "work_pool_name")},
        "name": "every-20-seconds", "parameters": {"recipe": recipe.model_dump(mode="json")},
        "schedules": [{"schedule": {"cron": TEST_CRON, "timezone": "UTC"}, "active": True}]})
    started = time.monotonic()

    def runs() -> list[dict]:
        return api(prefect_api, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}},
                                                      "sort": "EXPECTED_START_TIME_ASC"})

    # The worker takes one run at a time: once it has taken a second, the first has ended.
    wait_for(lambda: len([r for r in runs() if r["state"]["type"] != "SCHEDULED"]) >= 2, 300,
             "two scheduled runs taken by the worker")
    # Off, then gone: the server's scheduler may be inserting runs it computed from the active schedule (up to 100
    # ahead) while the schedule is deleted, and those would stay waiting. Deactivated first, no later pass of the
    # scheduler makes runs from it; the deletion, once a pass in flight has ended, takes what that pass made. The
    # worker may have taken a third run meanwhile (the second, with no new data, ends in seconds): it runs to its end.
    schedule = f"/deployments/{deployment['id']}/schedules/{deployment['schedules'][0]['id']}"
    api(prefect_api, schedule, {"active": False}, method="PATCH")
    time.sleep(SCHEDULER_PASS_SECONDS)
    api(prefect_api, schedule, method="DELETE")
    left = runs()
    assert not [r for r in left if r["state"]["type"] == "SCHEDULED"], left  # none left waiting: taken ones only
    run_ids = [r["id"] for r in left]
    ended = end_of(prefect_api, run_ids, 300, "end of the scheduled runs")
    print(f"scheduled continued pretraining, {len(ended)} runs: {time.monotonic() - started:.0f} s")
    assert len(ended) >= 2 and {r["state"]["type"] for r in ended} == {"COMPLETED"}, run_failures(prefect_api, ended)
    assert all(r["auto_scheduled"] for r in ended)  # made by the server's scheduler from the cron
    assert [r["id"] for r in runs()] == run_ids  # and none made since the schedule went

    def artifacts(run_id: str) -> set[str]:
        return {a["key"] for a in api(prefect_api, "/artifacts/filter", {"artifacts": {"flow_run_id": {
            "any_": [run_id]}}})}

    first, *later = (artifacts(i) for i in run_ids)  # by expected start
    assert "training-documents" in first and "no-new-data" not in first  # outcome 'trained'
    assert all("no-new-data" in a and "training-documents" not in a for a in later), later  # outcome 'no-new-data'
    assert len(mlflow.MlflowClient(tracking_uri).search_model_versions(
        f"name = '{recipe.registry.model_name}'")) == 1


def the_ui_shows_the_deployments_the_recipe_form_and_the_run_artifacts(chromium: str, prefect_api: str,
                                                                       run_id: str) -> None:
    """What a person sees in the Prefect UI, which reaches its API on this port: every deployment Ready; the custom
    run form of dialogsum-flan-t5 with the recipe as a typed form (the labels of its sections' fields, in declared
    order, not a JSON box); the Artifacts tabs of the run and of its release-model run listing their artifacts (evaluation, approval,
    endpoint test); the evaluation's evidence (ROUGE table, sample summaries) rendered on their artifact pages.
    Screenshots go to $LLMFT_SCREENSHOTS, else a printed temporary folder."""
    ui = prefect_api.removesuffix("/api")
    shots = Path(os.environ.get("LLMFT_SCREENSHOTS") or tempfile.mkdtemp(prefix="llmft-ui-"))
    shots.mkdir(parents=True, exist_ok=True)
    print(f"UI screenshots: {shots}")
    deployment = api(prefect_api, "/deployments/name/dialogsum-flan-t5/dialogsum-flan-t5")
    [release] = api(prefect_api, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}})
    with Browser(chromium) as page:
        text = page.open(f"{ui}/deployments", "document.body.innerText.includes('13 Deployments') && "
                         "document.body.innerText.includes('Ready') && document.body.innerText")
        assert "dialogsum-flan-t5" in text and "Not Ready" not in text

        page.open(f"{ui}/deployments/deployment/{deployment['id']}/run",
                  "document.querySelectorAll('.schema-form-property__label').length > 50")
        page.screenshot(shots / "deployment-run-form.png")  # once the form has stopped changing
        labels = [label.removesuffix(" (Optional)") for label in page.js(
            "[...document.querySelectorAll('.schema-form-property__label')].map(e => e.textContent.trim())")]
        fields = SummarizationRecipe.model_fields
        sections = [SummarizationRecipe, *(fields[s].annotation for s in ("model", "data", "training"))]
        assert not set().union(*map(titles, sections)) - set(labels), set().union(*map(titles, sections)) - set(labels)
        # In declared order (name, work_dir, data and its fields), though PostgreSQL's jsonb sorts the stored schema's
        # keys by length: llm_finetune/forms.py numbers them.
        declared = [*titles(SummarizationRecipe)[:3], *titles(fields["data"].annotation)]
        assert labels[1:1 + len(declared)] == declared, labels

        artifacts = artifacts_tab_lists_the_runs_artifacts(page, ui, prefect_api, run_id,
                                                           shots / "flow-run-artifacts.png")
        assert {"rouge-base-vs-finetuned", "sample-summaries"} <= set(artifacts), sorted(artifacts)
        evidence = artifacts_tab_lists_the_runs_artifacts(page, ui, prefect_api, release["id"],
                                                          shots / "release-run-artifacts.png")
        assert {"approval-gain-intervals", "endpoint-inference-test"} <= set(evidence), sorted(evidence)

        table = artifacts["rouge-base-vs-finetuned"]
        data = json.loads(table["data"])
        # Cells holding markdown (the metric names) fill in after the table is drawn.
        rows = page.open(f"{ui}/artifacts/artifact/{table['id']}", "(r => r.length > 1 && r.every(c => c[0]) && r)"
                         "([...document.querySelectorAll('table tr')].map(r => [...r.querySelectorAll('th, td')]"
                         ".map(c => c.textContent.trim())))")
        assert rows[0] == list(data[0]), rows
        assert [[r[0], *map(float, r[1:])] for r in rows[1:]] == [list(r.values()) for r in data], rows
        page.screenshot(shots / "artifact-rouge-base-vs-finetuned.png")

        samples = artifacts["sample-summaries"]
        headings = page.open(f"{ui}/artifacts/artifact/{samples['id']}", "(h => h.length && h)([...document."
                             "querySelectorAll('.markdown-renderer h3')].map(h => h.textContent.trim()))")
        assert headings == re.findall(r"^### (.+)$", samples["data"], re.MULTILINE)  # one per record
        assert page.js("document.querySelector('.markdown-renderer table th')?.textContent") == "metric"
        page.screenshot(shots / "artifact-sample-summaries.png")


def artifacts_tab_lists_the_runs_artifacts(page: Browser, ui: str, prefect_api: str, run_id: str,
                                           shot: Path) -> dict[str, dict]:
    """The run's artifacts by key, once its Artifacts tab shows each one's key and description."""
    artifacts = {a["key"]: a for a in api(prefect_api, "/artifacts/filter", {"artifacts": {
        "flow_run_id": {"any_": [run_id]}, "type": {"not_any_": ["result"]}}})}
    page.open(f"{ui}/runs/flow-run/{run_id}", "!!document.querySelector('li.p-tab#artifacts')")
    # Clicked: a link with ?tab=Artifacts falls back to Logs, as the tab is hidden while the run loads.
    page.js("document.querySelector('li.p-tab#artifacts').click()")
    words = [*artifacts, *(a["description"] for a in artifacts.values())]
    page.wait(f"(t => {json.dumps(words)}.every(w => t.includes(w)))"
              "(document.querySelector('.flow-run-artifacts')?.innerText ?? '')")
    page.screenshot(shot)
    return artifacts


def titles(model: type[BaseModel]) -> list[str]:
    """The labels Prefect's form gives a model's fields, in declared order."""
    return [f.title or name.replace("_", " ").title() for name, f in model.model_fields.items()]

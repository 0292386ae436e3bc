"""`llmft`: lists every flow in prefect.yaml, runs one on a recipe plus overrides, fails with one message."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from deployments.cli import load_entry, main
from deployments.serve import deployment_specs
from llm_finetune.recipes import load_recipe
from tests.conftest import DEFAULT_RECIPE, REPO

FLOW = "dialogsum-flan-t5"


def llmft_process(args: list[str], cwd, without: tuple[str, ...] = ()) -> subprocess.Popen:
    """`python -m deployments.cli` in a fresh process, with its own Prefect home, on this checkout's code; environment
    variables starting with a prefix in `without` left out."""
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(without)},
           "PYTHONPATH": os.pathsep.join(path), "PREFECT_HOME": str(cwd / "prefect"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)  # the flow runs on its own temporary server
    (cwd / "prefect").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "deployments.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def llmft(args: list[str], cwd, without: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    proc = llmft_process(args, cwd, without)
    out, err = proc.communicate(timeout=1200)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def one_failure_message(result: subprocess.CompletedProcess, cwd) -> tuple[str, Path]:
    """The run's one `llmft:` line (exit 1, no traceback on the console) and the log file it names, which holds the
    traceback."""
    assert result.returncode == 1 and result.stdout.strip() == "", result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("llmft: ")]
    log = cwd / re.fullmatch(r".* \(traceback: (.+)\)", message).group(1)
    assert "Traceback (most recent call last)" in log.read_text()
    return message, log


def test_list_names_every_flow_with_description_and_default_recipe(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for spec in deployment_specs():
        entry = load_entry(spec)
        assert f"{spec['name']}\n    {spec['description']}\n    default recipe: " \
               f"{entry.default_recipe.relative_to(REPO)}\n" in out
        assert isinstance(load_recipe(entry.default_recipe, entry.recipe_type), entry.recipe_type)
    assert "default recipe: recipes/dialogsum_flan_t5_tiny.yaml" in out


def test_unknown_flow_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "dialogsum", "training.max_steps=1"])
    known = ", ".join(spec["name"] for spec in deployment_specs())
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"llmft: error: unknown flow 'dialogsum'; did you mean '{FLOW}'? known flows: {known} (see `llmft list`)\n")


@pytest.mark.parametrize("args, message", [
    (["training.lr=0.1"], "unknown recipe key 'training.lr'; did you mean 'training.learning_rate'?"),
    (["training.max_steps=abc"], f"{DEFAULT_RECIPE}: invalid recipe:\n  - field 'training.max_steps': Input should "
                                 "be a valid integer, unable to parse string as an integer "
                                 "(set by override training.max_steps=abc)"),
    (["training.max_steps"], "override 'training.max_steps' is not of the form key.sub=value "
                             "(e.g. training.max_steps=20)"),
    (["--recipe", "missing.yaml"], "missing.yaml: recipe file not found"),
    # overrides before and after --recipe are all read
    (["training.lr=1", "--recipe", str(DEFAULT_RECIPE), "evaluation.max_record=2"],
     "2 bad overrides:\n  - unknown recipe key 'training.lr'; did you mean 'training.learning_rate'?\n"
     "  - unknown recipe key 'evaluation.max_record'; did you mean 'evaluation.max_records'?"),
])
def test_bad_recipe_or_override_exits_1_with_one_message(args, message, capsys):
    assert main(["run", FLOW, *args]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"llmft: {message}\n" and captured.out == ""


def test_options_the_command_does_not_take_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", FLOW, "training.max_steps=1", "--steps", "3"])
    assert exit_.value.code == 2 and "llmft: error: unrecognized arguments: --steps 3" in capsys.readouterr().err


def test_two_runs_at_once_both_complete_with_one_registered_version(tmp_path):
    """The same recipe started twice at once on one work_dir and one Prefect home: one trains, the other waits and
    reuses; both deploy and test the same single registered version."""
    work = tmp_path / "work"
    args = ["run", FLOW, "--recipe", str(DEFAULT_RECIPE), "data.max_train_records=128",
            "training.max_steps=30", "evaluation.max_records=8", "endpoint.num_test_records=2",
            f"work_dir={work}", f"registry.tracking_uri=sqlite:///{work / 'mlflow.db'}",
            "approval.min_metrics={rougeL: 0.0}", "approval.min_gain_over_base={rougeL: 0.0}"]
    procs = [llmft_process(args, tmp_path) for _ in range(2)]
    results = [p.communicate(timeout=1200) for p in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err[-4000:]
        assert "Traceback" not in err and "RESUME" not in err  # no tracebacks, no bytecode dumps in the log

    outcomes = [json.loads(out) for out, _ in results]
    assert {o["version"]["version"] for o in outcomes} == {"1"}
    assert sorted(o["version"]["reused"] for o in outcomes) == [False, True]
    for outcome in outcomes:
        assert outcome["decision"]["approved"] and outcome["decision"]["automatic"]
        assert outcome["decision"]["reason"].startswith(
            "all thresholds hold: rougeL >= 0.0, rougeL gain over base >= 0.0 and > 0 (95% CI lower end); rougeL gain")
        assert set(outcome["metrics"]) == {"base", "finetuned"} and "rougeL" in outcome["metrics"]["finetuned"]
        assert outcome["endpoint_test"]["num_requests"] == 2 and "results" not in outcome["endpoint_test"]
        assert outcome["running_endpoint"] is None
    assert outcomes[0]["metrics"] == outcomes[1]["metrics"]
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    assert len(client.search_model_versions("name = 'dialogsum-flan-t5-tiny'")) == 1
    assert len(client.get_metric_history(outcomes[0]["version"]["run_id"], "train_loss")) == 3  # 30 steps, every 10
    assert len(list((work / "runs").iterdir())) == 2  # one training folder and its lock file


def test_bad_data_exits_1_with_every_problem_and_no_traceback(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"fname": "t0", "dialogue": "#Person1#: Hi."}\n')
    result = llmft(["run", FLOW, "data.train_uri=train.jsonl", f"work_dir={tmp_path / 'work'}"], tmp_path)
    assert result.returncode == 1 and result.stdout.strip() == ""
    # the override's path is relative to the working directory
    assert f"llmft: 1 data problem(s):\n  - {tmp_path / 'train.jsonl'}, line 1, field 'summary': missing\n" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_aws_credentials_say_which_settings_or_the_stand_in(tmp_path):
    result = llmft(["run", "dialogsum-sagemaker-pipeline", f"work_dir={tmp_path / 'work'}"], tmp_path,
                   without=("AWS_",))
    message, log = one_failure_message(result, tmp_path)
    assert message.startswith("llmft: no AWS credentials found: ")
    for hint in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "sagemaker.role_arn", "scripts/moto_server.sh",
                 "sagemaker.endpoint_url=", "sagemaker.stand_in=true"):
        assert hint in message
    assert "NoCredentialsError" in log.read_text() and "Retry 1/" not in log.read_text()  # no retry can fix it


def test_rollback_with_nothing_to_roll_back_is_one_message(tmp_path):
    from flows.continued_pretraining import DEFAULT_RECIPE_PATH, ContinuedPretrainingRecipe

    recipe = load_recipe(DEFAULT_RECIPE_PATH, ContinuedPretrainingRecipe)
    result = llmft(["run", "rollback-champion", f"work_dir={tmp_path / 'work'}"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-4000:]
    assert (f"llmft: model '{recipe.registry.model_name}' has no '{recipe.approval.previous_alias}' alias: nothing "
            "to roll back to") in result.stderr


def test_killed_training_process_is_one_message_naming_its_log(tmp_path):
    import psutil

    work = tmp_path / "work"
    proc = llmft_process(["run", FLOW, "--recipe", str(DEFAULT_RECIPE), "data.max_train_records=64",
                          "training.max_steps=100000", "training.logging_steps=1", f"work_dir={work}"], tmp_path)
    deadline = time.monotonic() + 600
    while not list(work.glob("runs/*/progress.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-4000:]
        time.sleep(1)
    (trainer,) = [p for p in psutil.Process(proc.pid).children(recursive=True)
                  if "llm_finetune.training.seq2seq" in p.cmdline()]
    trainer.kill()
    out, err = proc.communicate(timeout=600)
    message, _ = one_failure_message(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), tmp_path)
    (train_log,) = work.glob("runs/*/train.log")
    assert message.startswith(f"llmft: training process killed by SIGKILL; its log: {train_log} (traceback: ")


def test_a_failure_message_is_one_line_with_the_type_where_the_error_is_not_ours():
    from deployments.cli import failure_message
    from llm_finetune.backends.local import TrainingProcessError

    assert failure_message(KeyError("tokenizer")) == "KeyError: 'tokenizer'"
    assert failure_message(TrainingProcessError("training exited with code 1; log: t.log\nlast lines:\nx")) == \
        "training exited with code 1; log: t.log"

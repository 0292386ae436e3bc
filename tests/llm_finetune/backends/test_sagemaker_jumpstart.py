"""A JumpStart fine-tune as the SageMaker backend sends it (recipe `sagemaker.jumpstart`), read back from a real moto
server: JumpStart's image and script, the gated base weights with the EULA accepted, the recipe's Dolly records in
JumpStart's instruction format, and the backend's own checkpoint / spot / limit settings."""

from __future__ import annotations

import json

import pytest

from llm_finetune.backends import s3files
from llm_finetune.backends.jumpstart import instruction_template
from llm_finetune.backends.sagemaker import (
    TRAINING,
    S3Layout,
    clients_for,
    create_job,
    ensure_bucket,
    job_prefix,
    job_stem,
    jumpstart_training_request,
)
from llm_finetune.data.shapes import load_data
from llm_finetune.errors import RecipeError
from llm_finetune.recipes import load_recipe
from llm_finetune.training.causal_lm import causal_job
from tests.conftest import REPO
from tests.sagemaker_helpers import jobs_spec, jumpstart_llama, tiny_dolly_job, unique


@pytest.fixture(scope="module")
def dolly_job(tmp_path_factory):
    return tiny_dolly_job(tmp_path_factory.mktemp("js"))


def sent(spec, job, name):
    clients = clients_for(spec)
    layout = S3Layout(spec)
    ensure_bucket(clients, spec)
    request = jumpstart_training_request(name, "fp123", job, spec, layout, clients)
    create_job(clients, TRAINING, request)
    return clients, request, clients.sagemaker.describe_training_job(TrainingJobName=name)


def test_fine_tune_request_and_training_channel(moto_endpoint, dolly_job, tmp_path):
    jumpstart = jumpstart_llama()
    spec = jobs_spec(moto_endpoint, jumpstart=jumpstart, training={"spot": True, "max_runtime_s": 3600})
    name = unique("js-llama")
    clients, request, job = sent(spec, dolly_job, name)

    assert job["AlgorithmSpecification"]["TrainingImage"] == jumpstart.training_image_uri
    # moto answers canned MetricDefinitions, so the request is checked for them.
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == jumpstart.metric_definitions
    hps = job["HyperParameters"]
    params, lora = dolly_job.params, dolly_job.lora
    assert hps["sagemaker_program"] == "transfer_learning.py"
    assert hps["sagemaker_submit_directory"] == jumpstart.training_script_uri
    assert (hps["instruction_tuned"], hps["epoch"], hps["learning_rate"]) == ("True", "2", str(params.learning_rate))
    assert (hps["lora_r"], hps["lora_alpha"]) == (str(lora.r), str(lora.alpha))
    assert hps["max_input_length"] == str(dolly_job.data.max_length)
    assert hps["enable_fsdp"] == jumpstart.default_hyperparameters["enable_fsdp"]  # defaults kept where not mapped
    assert "gradient_accumulation_steps" not in hps  # not a hyperparameter of this JumpStart model

    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    assert list(channels) == ["model", "training", "validation"]
    assert channels["model"]["S3Uri"] == jumpstart.training_model_uri
    assert channels["model"]["ModelAccessConfig"] == {"AcceptEula": True}
    # Our settings on JumpStart's job: checkpoints keyed by the fingerprint, spot, limits, instances.
    assert job["CheckpointConfig"]["S3Uri"] == S3Layout(spec).checkpoints("fp123")
    assert job["EnableManagedSpotTraining"] and job["StoppingCondition"]["MaxWaitTimeInSeconds"] == 7200
    assert job["ResourceConfig"]["InstanceType"] == spec.training.instance_type
    assert job["EnableNetworkIsolation"]

    files = s3files.download_prefix(clients.s3, channels["training"]["S3Uri"], tmp_path / "training")
    assert sorted(p.name for p in files) == ["template.json", "train.jsonl"]
    template = json.loads((tmp_path / "training" / "template.json").read_text())
    assert template == instruction_template() and template["completion"] == " {response}"
    rows = [json.loads(line) for line in (tmp_path / "training" / "train.jsonl").read_text().splitlines()]
    train = dolly_job.validated.load("train")
    assert len(rows) == len(train) and set(rows[0]) == {"instruction", "context", "response"}
    assert rows[0]["instruction"] == train[0]["instruction"] and rows[0]["response"] == train[0]["response"]
    # What JumpStart's script builds from each record: the template's fields are all there.
    assert all(r["instruction"] in template["prompt"].format(**r) for r in rows)
    validation = s3files.download_prefix(clients.s3, channels["validation"]["S3Uri"], tmp_path / "validation")
    assert sorted(p.name for p in validation) == ["template.json", "validation.jsonl"]
    assert len((tmp_path / "validation" / "validation.jsonl").read_text().splitlines()) == 4


def test_system_prompt_replaces_the_preamble_braces_kept():
    template = instruction_template("Answer {briefly}.")
    assert template["prompt"].format(instruction="i", context="c").startswith("Answer {briefly}.\n\n### Instruction:")


def test_only_instruction_jobs_have_a_jumpstart_format(moto_endpoint, tmp_path):
    from llm_finetune.training.seq2seq import seq2seq_job
    from tests.sagemaker_helpers import tiny_seq2seq_inputs

    inputs = tiny_seq2seq_inputs(tmp_path, max_train_records=4)
    recipe, prepared = inputs["recipe"], inputs["prepared"]
    job = seq2seq_job(inputs["base"], prepared.path, prepared.fingerprint, recipe.data.prompt_template,
                      recipe.training, tmp_path)
    spec = jobs_spec(moto_endpoint, jumpstart=jumpstart_llama())
    with pytest.raises(RecipeError, match="sagemaker.jumpstart: a JumpStart fine-tune takes instruction or "
                                          "generative-QA records"):
        sent(spec, job, unique("js-t5"))


def test_generative_qa_goes_to_jumpstart_as_instruction_rows(tmp_path):
    """The Falcon QA recipe's questions: {instruction: question, context, response: first gold answer}."""
    from llm_finetune.backends.jumpstart import write_instruction_data
    from llm_finetune.data.qa import qa_records
    from llm_finetune.recipes import QARecipe

    recipe = load_recipe(REPO / "recipes" / "squad_falcon_tiny.yaml", QARecipe,
                         ["data.max_train_records=5", "data.max_validation_records=3"])
    validated = load_data(recipe.data, tmp_path)
    g = recipe.generative
    job = causal_job("tiny-falcon", validated, recipe.data, g.lora, g.training, tmp_path)
    channels = write_instruction_data(job, tmp_path / "js")

    rows = [json.loads(line) for line in (channels["training"] / "train.jsonl").read_text().splitlines()]
    gold = qa_records(validated, "train", recipe.data, 5)
    assert rows == [{"instruction": r["question"], "context": r["context"], "response": r["answers"][0]} for r in gold]
    assert len((channels["validation"] / "validation.jsonl").read_text().splitlines()) == 3
    assert json.loads((channels["training"] / "template.json").read_text()) == instruction_template(None)


def test_stand_in_trains_with_our_trainer_in_jumpstarts_place(moto_endpoint, tmp_path):
    """Against the stand-in the JumpStart job cannot run JumpStart's script: this project's trainer runs on the job's
    channels (the recipe's base model in place of JumpStart's weights), so model.tar.gz is a real fine-tuned model.
    Its run keeps its own folder and fingerprint, apart from a run of our trainer on the same job."""
    from llm_finetune.backends.sagemaker import run_sagemaker_training

    job = tiny_dolly_job(tmp_path, "build", "training.max_steps=2", "training.logging_steps=1")
    spec = jobs_spec(moto_endpoint, jumpstart=jumpstart_llama())
    lines = []
    result = run_sagemaker_training(job, spec, on_output=lines.append)

    assert result.global_step == 2 and result.model_dir.startswith(f"{job.output_dir}-jumpstart-")
    assert result.fingerprint == result.model_dir.split("/")[-2] and result.adapter_dir
    assert any("runs this project's trainer in place of " + spec.jumpstart.training_image_uri in line
               for line in lines)
    sm = clients_for(spec).sagemaker
    stem = job_stem(job_prefix(spec, "tr", result.fingerprint))  # the prefix is too long to be kept whole
    (summary,) = sm.list_training_jobs(NameContains=stem)["TrainingJobSummaries"]
    described = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
    assert described["AlgorithmSpecification"]["TrainingImage"] == spec.jumpstart.training_image_uri
    assert described["HyperParameters"]["sagemaker_program"] == "transfer_learning.py"  # what the service got
    again = run_sagemaker_training(job, spec, on_output=lines.append)
    assert again.reused and again.fingerprint == result.fingerprint


def test_jumpstart_runs_differing_in_epochs_alone_keep_their_own_folders(tmp_path):
    """Beside max_steps our trainer ignores epochs (one run, one key); JumpStart trains for epochs, so not for it."""
    from llm_finetune.backends.sagemaker import jumpstart_job

    one, two = (tiny_dolly_job(tmp_path, "tiny-llama", "training.max_steps=2", f"training.epochs={epochs}")
                for epochs in (1, 2))
    assert one.output_dir == two.output_dir
    jumpstart = jumpstart_llama()
    assert jumpstart_job(one, jumpstart).output_dir != jumpstart_job(two, jumpstart).output_dir
    assert jumpstart_job(one, jumpstart).output_dir.startswith(f"{one.output_dir}-jumpstart-")

"""The SageMaker backend's parts that need no container: recipe settings, the job in hyperparameters, the source dir,
the image URI, the cost estimate."""

from __future__ import annotations

import json
import tarfile
from importlib import metadata

import pytest

from llm_finetune.backends.cost import PRICES_FILE, check_cost, estimate_cost, price_table
from llm_finetune.backends.sagemaker import S3Layout, job_prefix, training_image, training_job_settings
from llm_finetune.backends.sagemaker_container import (
    HP_MAX_CHARS,
    decode_job_hyperparameters,
    encode_job_hyperparameters,
    launch_command,
    missing_requirements,
)
from llm_finetune.backends.sourcedir import CONTAINER_PACKAGES, ENTRY_SCRIPT, pack_sourcedir
from llm_finetune.errors import CostLimitError, RecipeError
from llm_finetune.recipes import (
    SageMakerProcessing,
    SageMakerSpec,
    SageMakerTraining,
    Seq2SeqTrainingParams,
    load_recipe,
)
from llm_finetune.training.seq2seq import seq2seq_job
from tests.conftest import DEFAULT_RECIPE
from tests.sagemaker_helpers import sdk_table_images

ACCOUNT = "sagemaker={role_arn: arn:aws:iam::123456789012:role/x, bucket: b}"


def test_backend_is_a_recipe_field_and_sagemaker_needs_its_settings():
    with pytest.raises(RecipeError, match="training.backend, data.preparation_backend is 'sagemaker' but the recipe "
                                          "has no 'sagemaker' section"):
        load_recipe(DEFAULT_RECIPE, overrides=["training.backend=sagemaker", "data.preparation_backend=sagemaker"])
    recipe = load_recipe(DEFAULT_RECIPE, overrides=["training.backend=sagemaker", ACCOUNT,
                                                    "sagemaker.training.spot=true"])
    assert recipe.sagemaker.training.spot and recipe.sagemaker.training.instance_type == "ml.g5.2xlarge"
    assert recipe.sagemaker.processing.instance_type == "ml.m5.xlarge"
    with pytest.raises(RecipeError, match=r"sagemaker.training.*max_wait_s \(60\) must be >= max_runtime_s \(3600\)"):
        load_recipe(DEFAULT_RECIPE, overrides=[ACCOUNT, "sagemaker.training.spot=true",
                                               "sagemaker.training.max_runtime_s=3600",
                                               "sagemaker.training.max_wait_s=60"])
    with pytest.raises(RecipeError, match="unknown recipe key 'sagemaker.processing.spot'"):
        load_recipe(DEFAULT_RECIPE, overrides=[ACCOUNT, "sagemaker.processing.spot=true"])


def test_where_data_is_prepared_is_not_part_of_the_dataset_key():
    from llm_finetune.data.intake import ValidatedData
    from llm_finetune.data.summarization import summarization_dataset_key

    data = load_recipe(DEFAULT_RECIPE).data
    validated = ValidatedData(path="checked", fingerprint="f" * 16, num_records={}, sources={})
    remote = data.model_copy(update={"preparation_backend": "sagemaker"})
    assert summarization_dataset_key(data, validated, "google/flan-t5-base") == summarization_dataset_key(
        remote, validated, "google/flan-t5-base")  # a local run and a processing job share one cache folder
    longer = data.model_copy(update={"max_source_tokens": 256})
    assert summarization_dataset_key(longer, validated, "google/flan-t5-base") != summarization_dataset_key(
        data, validated, "google/flan-t5-base")


def test_job_hyperparameters_stay_under_sagemakers_limits_and_round_trip():
    # A checked 15k-record dataset carries a row locator of 15k line numbers.
    payload = {"entry_module": "m", "job": {"rows": list(range(1, 15_001)), "text": 'quotes " and \\ kept'},
               "inputs": {"data": "validated.path"}, "output": "output_dir"}
    hps = encode_job_hyperparameters(payload)
    assert all(len(v) <= HP_MAX_CHARS for v in hps.values()) and len(hps) < 100
    assert decode_job_hyperparameters(hps) == payload
    # as the training toolkit hands them on in SM_HPS: JSON-decoded
    assert decode_job_hyperparameters({k: json.loads(v) for k, v in hps.items()}) == payload


def test_sourcedir_holds_the_package_the_entry_and_pinned_requirements(tmp_path):
    path, sha = pack_sourcedir(tmp_path / "a")
    assert pack_sourcedir(tmp_path / "b")[1] == sha  # same code, same bytes: its S3 key is its hash
    with tarfile.open(path) as tar:
        names = tar.getnames()
        requirements = tar.extractfile("requirements.txt").read().decode()
        entry = tar.extractfile(ENTRY_SCRIPT).read().decode()
    assert "llm_finetune/training/seq2seq.py" in names and "llm_finetune/backends/sagemaker_container.py" in names
    assert not any("__pycache__" in n for n in names)
    assert "from llm_finetune.backends.sagemaker_container import main" in entry
    pins = dict(line.split("==") for line in requirements.splitlines())
    assert set(pins) == set(CONTAINER_PACKAGES) and "torch" not in pins
    assert all(pins[name] == metadata.version(name) for name in pins)
    req = tmp_path / "requirements.txt"
    req.write_text(requirements)
    assert missing_requirements(req) == []  # this environment is what the container gets
    req.write_text(requirements + "transformers==0.0.1\nno-such-package==1.0\n")
    assert missing_requirements(req) == ["transformers==0.0.1", "no-such-package==1.0"]


def test_job_images_come_from_the_sdk_tables_for_region_and_instance_type():
    gpu, cpu = SageMakerTraining(), SageMakerProcessing()  # ml.g5.2xlarge, ml.m5.xlarge
    for region in ("us-east-1", "cn-north-1", "eu-west-1"):
        gpu_image, cpu_image = training_image(gpu, region), training_image(cpu, region)
        assert gpu_image in sdk_table_images(region, gpu.instance_type) and "huggingface-pytorch-training" in gpu_image
        assert cpu_image in sdk_table_images(region, cpu.instance_type) and "-cpu-" in cpu_image  # not a GPU image
    assert training_image(gpu.model_copy(update={"image_uri": "my/image:1"}), "us-east-1") == "my/image:1"
    with pytest.raises(RecipeError, match="^sagemaker.training.image_uri: the sagemaker SDK's image tables have no "
                                          "huggingface training image for ml.g5.2xlarge in xx-nowhere-1 .*; set "
                                          "sagemaker.training.image_uri to an image URI$"):
        training_image(gpu, "xx-nowhere-1")


def test_stand_in_is_an_explicit_setting_that_needs_its_endpoint():
    loopback = load_recipe(DEFAULT_RECIPE, overrides=[ACCOUNT, "sagemaker.endpoint_url=http://127.0.0.1:4566"])
    assert not loopback.sagemaker.stand_in  # a loopback API (LocalStack, a proxy) is the real API unless told
    with pytest.raises(RecipeError, match="field 'sagemaker': Value error, stand_in runs jobs against a local API "
                                          "stand-in: set endpoint_url to it"):
        load_recipe(DEFAULT_RECIPE, overrides=[ACCOUNT, "sagemaker.stand_in=true"])


def test_a_training_parameter_keys_the_run_folder_job_and_checkpoints(tmp_path):
    """Both backends reuse a finished model by its run folder (local: the folder; SageMaker: its name is the key of
    the jobs a re-run attaches to and of their checkpoints), so one training parameter changed changes all three."""
    spec = SageMakerSpec(role_arn="arn:aws:iam::123456789012:role/x", bucket="b")
    keys = [seq2seq_job("google/flan-t5-small", "data", "data-fingerprint", "Summarize: {dialogue}",
                        Seq2SeqTrainingParams(learning_rate=lr), tmp_path).output_dir.rsplit("/", 1)[1]
            for lr in (3e-4, 1e-3)]
    assert keys[0] != keys[1]
    assert job_prefix(spec, "tr", keys[0]) != job_prefix(spec, "tr", keys[1])
    checkpoints = [training_job_settings(key, spec, S3Layout(spec))["CheckpointConfig"]["S3Uri"] for key in keys]
    assert checkpoints[0] != checkpoints[1]


def test_cost_estimate_uses_the_price_table_and_the_limit():
    training = SageMakerTraining(instance_type="ml.g5.12xlarge", instance_count=2, max_runtime_s=5400, spot=True)
    estimate = estimate_cost("training", training, "us-east-1")
    price = price_table()[("us-east-1", "ml.g5.12xlarge")]
    assert estimate.usd == round(2 * 1.5 * price, 2) and estimate.hours == 1.5 and estimate.spot
    assert estimate.price_source == f"{PRICES_FILE.name}, us-east-1"
    assert "spot" in estimate.summary() and "| managed spot | yes" in estimate.markdown()
    check_cost(estimate)  # no limit set
    check_cost(estimate.model_copy(update={"max_cost_usd": estimate.usd}))  # at the limit is allowed
    with pytest.raises(CostLimitError, match="over the limit, not launched"):
        check_cost(estimate.model_copy(update={"max_cost_usd": estimate.usd - 0.01}))

    elsewhere = estimate_cost("training", training, "eu-west-1")
    assert elsewhere.usd == estimate.usd and "(no row for eu-west-1)" in elsewhere.price_source
    unknown = SageMakerProcessing(instance_type="ml.x9.huge", max_cost_usd=5)
    with pytest.raises(CostLimitError, match=r"without a price; set sagemaker.processing.usd_per_hour"):
        check_cost(estimate_cost("processing", unknown, "us-east-1"))
    priced = estimate_cost("processing", unknown.model_copy(update={"usd_per_hour": 2.0}), "us-east-1")
    assert priced.usd == 2.0 and priced.price_source == "recipe sagemaker.processing.usd_per_hour"


def test_container_runs_torchrun_when_instances_or_gpus_add_up_to_several():
    def cmd(**env):
        return launch_command({k.upper(): v for k, v in env.items()}, "llm_finetune.training.causal_lm", "job.json")

    assert cmd(sm_num_gpus="0")[1:] == ["-m", "llm_finetune.training.causal_lm", "--job", "job.json"]
    assert cmd(sm_num_gpus="4")[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    two_hosts = cmd(sm_num_gpus="1", sm_hosts='["algo-1", "algo-2"]', sm_current_host="algo-2")
    assert two_hosts[3:8] == ["--nnodes=2", "--node_rank=1", "--nproc_per_node=1", "--master_addr=algo-1",
                              "--master_port=7777"]
    assert two_hosts[-4:] == ["-m", "llm_finetune.training.causal_lm", "--job", "job.json"]

"""JumpStart fine-tune and deploy requests from a recipe's resolved fields, sent to a real moto server (no network:
the spec below is what `resolve_jumpstart_spec` returns for Llama 2 7B, written out)."""

import pytest

from llm_finetune.aws import sagemaker_client
from llm_finetune.backends.jumpstart import EulaNotAcceptedError, JumpStartSpec, model_request, training_job_request
from tests.sagemaker_helpers import ROLE_ARN, unique

CACHE = "s3://jumpstart-cache-prod-us-east-1"
LLAMA = JumpStartSpec(
    model_id="meta-textgeneration-llama-2-7b", model_version="4.*", requires_eula=True,
    inference_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:2.1.1-tgi1.4.0-gpu-py310-cu121-ubuntu20.04",
    inference_model_uri="s3://jumpstart-private-cache-prod-us-east-1/meta-textgeneration/meta-textgeneration-llama-2-7b/artifacts/inference-prepack/v1.0.0/",
    inference_environment={"SM_NUM_GPUS": "1", "MAX_INPUT_LENGTH": "4095"},
    training_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04",
    training_model_uri="s3://jumpstart-private-cache-prod-us-east-1/meta-training/train-meta-textgeneration-llama-2-7b.tar.gz",
    training_script_uri=f"{CACHE}/source-directory-tarballs/meta/transfer_learning/textgeneration/v1.0.6/sourcedir.tar.gz",
    default_hyperparameters={"epoch": "5", "learning_rate": "0.0001", "instruction_tuned": "False"},
)


def test_gated_model_needs_the_eula_accepted():
    with pytest.raises(EulaNotAcceptedError, match="accept_eula: true"):
        training_job_request(LLAMA, job_name="x", role_arn=ROLE_ARN, train_s3_uri="s3://b/train/",
                             output_s3_uri="s3://b/out/", instance_type="ml.g5.12xlarge")
    with pytest.raises(EulaNotAcceptedError):
        model_request(LLAMA, model_name="x", role_arn=ROLE_ARN)


def test_fine_tune_request_shape(moto_endpoint):
    sm = sagemaker_client(moto_endpoint)
    spec = LLAMA.model_copy(update={"accept_eula": True})
    name = unique("llama2-dolly")
    request = training_job_request(spec, job_name=name, role_arn=ROLE_ARN, train_s3_uri="s3://b/dolly/train/",
                                   validation_s3_uri="s3://b/dolly/validation/", output_s3_uri="s3://b/out/",
                                   instance_type="ml.g5.12xlarge", hyperparameters={"epoch": 1, "instruction_tuned": True})
    sm.create_training_job(**request)
    job = sm.describe_training_job(TrainingJobName=name)

    assert job["AlgorithmSpecification"]["TrainingImage"] == spec.training_image_uri
    assert job["HyperParameters"] == {"epoch": "1", "learning_rate": "0.0001", "instruction_tuned": "True",
                                      "sagemaker_program": "transfer_learning.py",
                                      "sagemaker_submit_directory": spec.training_script_uri}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    assert list(channels) == ["model", "training", "validation"]
    assert channels["model"]["S3Uri"] == spec.training_model_uri
    assert channels["model"]["ModelAccessConfig"] == {"AcceptEula": True}
    assert channels["training"]["S3Uri"] == "s3://b/dolly/train/" and "ModelAccessConfig" not in channels["training"]
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.12xlarge"


def test_deploy_request_shape(moto_endpoint):
    sm = sagemaker_client(moto_endpoint)
    spec = LLAMA.model_copy(update={"accept_eula": True})
    name = unique("llama2-chat")
    sm.create_model(**model_request(spec, model_name=name, role_arn=ROLE_ARN))
    container = sm.describe_model(ModelName=name)["PrimaryContainer"]
    assert container["Image"] == spec.inference_image_uri and container["Environment"]["SM_NUM_GPUS"] == "1"
    assert container["ModelDataSource"]["S3DataSource"] == {
        "S3Uri": spec.inference_model_uri, "S3DataType": "S3Prefix", "CompressionType": "None",
        "ModelAccessConfig": {"AcceptEula": True}}

    falcon = JumpStartSpec(model_id="huggingface-llm-falcon-7b-bf16", inference_image_uri=spec.inference_image_uri,
                           inference_model_uri="s3://jumpstart-cache-prod-us-east-1/huggingface-llm/falcon-7b/")
    request = model_request(falcon, model_name=unique("falcon"), role_arn=ROLE_ARN)  # not gated: no EULA needed
    assert "ModelAccessConfig" not in request["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]
    fine_tuned = model_request(spec, model_name="x", role_arn=ROLE_ARN, model_data_uri="s3://b/out/job/model.tar.gz")
    assert fine_tuned["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["CompressionType"] == "Gzip"

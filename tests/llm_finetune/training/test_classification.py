"""Sequence classification trainer: seeds reproduce and differ, LoRA on a 4-bit GPT-2 merges, the
text-classification request format round-trips through a real endpoint."""

import json

import pytest
from safetensors.torch import load_file

from llm_finetune.inference.classifier import TextClassifier
from llm_finetune.recipes import LoraSpec
from llm_finetune.serving.endpoint import EndpointClient, EndpointError, start_local_endpoint, stop_local_endpoint
from llm_finetune.training.classification import train_classifier
from tests.llm_finetune.classification_helpers import small_job, tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("imdb"))


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    model, validated = base
    return train_classifier(small_job(model, validated, tmp_path_factory.mktemp("run"), seed=1))


def weights(result) -> dict:
    from pathlib import Path

    return load_file(str(Path(result.model_dir) / "model.safetensors"))


def test_fixed_seeds_reproduce_and_different_seeds_differ(base, trained, tmp_path):
    model, validated = base
    again = train_classifier(small_job(model, validated, tmp_path / "again", seed=1))
    other = train_classifier(small_job(model, validated, tmp_path / "other", seed=2))
    assert again.loss_curve == trained.loss_curve and not again.reused
    first, second = weights(trained), weights(again)
    assert all((first[k] == second[k]).all() for k in first)
    assert other.loss_curve != trained.loss_curve
    assert any((first[k] != weights(other)[k]).any() for k in first)
    assert trained.truncated_records > 0 and 0 < trained.real_tokens <= trained.padded_tokens  # reviews cut at 48


def test_lora_on_4bit_base_trains_head_and_merges(base, tmp_path):
    model, validated = base
    lora = LoraSpec(r=4, alpha=8, dropout=0.0, quantization={"load_in_4bit": True})
    result = train_classifier(small_job(model, validated, tmp_path, lora=lora))
    assert result.quantized_layers > 0 and result.trainable_parameters < result.total_parameters
    assert result.merge_max_abs_diff is not None and result.merge_max_abs_diff <= 1e-3
    served = json.loads((tmp_path.glob("runs/*/model/llmft_serving.json").__next__()).read_text())
    assert served["kind"] == "text-classification" and served["truncation"]["max_length"] == 48
    base_head = TextClassifier(model, head={"num_labels": 2}, rule=TextClassifier(result.model_dir).encoder.rule)
    tuned = TextClassifier(result.model_dir)
    text = ["A wonderful, moving film."]
    assert tuned.probabilities(text) != base_head.probabilities(text)


def test_text_classification_round_trips_through_the_endpoint(trained, tmp_path):
    handle = start_local_endpoint(trained.model_dir, "127.0.0.1", 0, tmp_path / "server.log", timeout_s=120)
    try:
        client = EndpointClient(handle.url)
        local = TextClassifier(trained.model_dir)
        texts = ["Dreadful. I want my money back.<br /><br />Avoid.", "A masterpiece, beautifully acted."]
        single = client.invoke({"inputs": texts[0]})
        best = local.classify(texts[:1])[0][0]
        assert len(single) == 1 and single[0]["label"] == best["label"]
        assert single[0]["score"] == pytest.approx(best["score"], abs=1e-5)
        many = client.invoke({"inputs": texts})
        assert [r["label"] for r in many] == [r[0]["label"] for r in local.classify(texts)]
        ranked = client.invoke({"inputs": texts[1], "parameters": {"top_k": 2}})
        assert {r["label"] for r in ranked} == {"negative", "positive"}
        assert ranked[0]["score"] >= ranked[1]["score"] and sum(r["score"] for r in ranked) == pytest.approx(1)
        for payload, message in [({"inputs": ""}, "inputs: must be a non-empty string"),
                                 ({"inputs": ["ok"], "parameters": {"top_k": 0}},
                                  "parameters.top_k: Input should be greater than or equal to 1"),
                                 ({"inputs": "ok", "parameters": {"max_new_tokens": 4}},
                                  "parameters.max_new_tokens: Extra inputs are not permitted")]:
            with pytest.raises(EndpointError, match="answered 400") as e:
                client.invoke(payload)
            assert message in str(e.value)
        assert client.invoke({"inputs": "still serving"})[0]["label"] in ("negative", "positive")
    finally:
        stop_local_endpoint(handle)


def test_classifier_trains_as_a_sagemaker_job_through_the_stand_in(base, moto_endpoint, tmp_path):
    """training.backend: sagemaker - base model and checked data go as channels; the container trains the classifier
    with the same entry point and the model comes back as the run's model folder."""
    from pathlib import Path

    from llm_finetune.backends.sagemaker import clients_for, job_prefix, run_sagemaker_training
    from tests.sagemaker_helpers import jobs_spec

    model, validated = base
    spec = jobs_spec(moto_endpoint)
    job = small_job(model, validated, tmp_path / "sm", seed=1, backend="sagemaker", max_steps=2)
    result = run_sagemaker_training(job, spec)
    assert result.global_step == 2 and result.model_dir.startswith(job.output_dir)
    sm = clients_for(spec).sagemaker
    (summary,) = sm.list_training_jobs(NameContains=job_prefix(spec, "tr", Path(job.output_dir).name))[
        "TrainingJobSummaries"]
    described = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
    assert {c["ChannelName"] for c in described["InputDataConfig"]} == {"base_model", "data"}
    labels = [r[0]["label"] for r in TextClassifier(result.model_dir).classify(["Great film.", "Awful."])]
    assert set(labels) <= {"negative", "positive"}


def test_torchrun_counts_the_tokens_of_every_process(base, tmp_path):
    """One epoch as 2 processes x batch 4 and as 1 process x batch 8 trains every record once either way: the
    reported real tokens are the sum over both processes, not rank 0's share."""
    from llm_finetune.backends.local import run_training_process

    model, validated = base
    settings = {"max_steps": -1, "epochs": 1}
    one = run_training_process(small_job(model, validated, tmp_path / "one", **settings))
    two = run_training_process(small_job(model, validated, tmp_path / "two", per_device_train_batch_size=4,
                                         nproc_per_node=2, **settings))
    assert two.global_step == one.global_step == 6  # 48 records, global batch 8
    assert 0 < two.real_tokens == one.real_tokens

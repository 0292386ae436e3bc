"""Pretraining on packed movie-plot blocks with a tiny GPT-2: every block trained unpadded, EOS learned, the
documents saved with the model, and a killed run resumed from its last complete checkpoint."""

import json
from pathlib import Path

import pytest
import torch

from llm_finetune.backends.local import command
from llm_finetune.data.raw_text import DOCUMENTS_FILE, document_key, prepare_blocks, seen_documents
from llm_finetune.models.gpt2 import build_gpt2
from llm_finetune.recipes import GPT2ConfigSpec, PretrainParams
from llm_finetune.training.job import last_complete_checkpoint
from llm_finetune.training.pretrain import BlockCollator, pretrain_job, train_pretraining
from tests.conftest import REPO, SHARED_DATA
from tests.training_helpers import kill_at_first_checkpoint, step_weighted_mean_loss

PLOTS = SHARED_DATA / "movie_plots" / "train.jsonl"


def plots(n: int) -> list[str]:
    return [json.loads(line)["text"] for line in PLOTS.read_text().splitlines()[:n]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("pretrain")
    texts = plots(40)
    spec = GPT2ConfigSpec(tokenizer="train", vocab_size=500, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    base = str(build_gpt2(spec, texts, work / "base", corpus_key="plots-40"))
    packed = prepare_blocks(texts, base, 32, work / "blocks", seen_before={"earlier-document"})
    return {"work": work, "base": base, "packed": packed, "texts": texts}


def params(**overrides) -> PretrainParams:
    return PretrainParams(**{"max_steps": 8, "learning_rate": 5e-3, "per_device_train_batch_size": 4,
                             "logging_steps": 2, "save_steps": 4, "warmup": 0, "precision": "fp32", **overrides})


def test_collator_learns_every_token_eos_included():
    batch = BlockCollator()([{"input_ids": [5, 0, 7]}, {"input_ids": [0, 0, 9]}])  # 0: EOS = pad for GPT-2
    assert torch.equal(batch["labels"], batch["input_ids"]) and "attention_mask" not in batch


def test_training_lowers_the_loss_on_full_blocks_and_saves_the_documents(tiny):
    packed = tiny["packed"]
    assert packed.blocks > 8 and packed.tokens == packed.blocks * 32 and 0 <= packed.dropped_tokens < 32
    result = train_pretraining(pretrain_job(tiny["base"], packed, params(max_steps=16), tiny["work"]))
    assert result.global_step == 16 and result.block_size == 32
    assert result.real_tokens == result.padded_tokens == 16 * 4 * 32  # no padding: every token is real
    assert result.loss_curve[-1]["loss"] < result.loss_curve[0]["loss"]
    seen = seen_documents(result.model_dir)
    assert seen == {document_key(t) for t in tiny["texts"]} | {"earlier-document"}
    assert json.loads((Path(result.model_dir) / DOCUMENTS_FILE).read_text())["documents"] == sorted(seen)


def test_killed_run_resumes_from_its_last_complete_checkpoint(tiny, tmp_path):
    job = pretrain_job(tiny["base"], tiny["packed"], params(max_steps=12, save_steps=3), tmp_path)
    job_file = tmp_path / "job.json"
    job_file.write_text(job.model_dump_json())
    checkpoints = Path(job.output_dir) / "checkpoints"
    step_at_kill = kill_at_first_checkpoint(command(job, job_file), REPO, checkpoints)
    killed_at = last_complete_checkpoint(checkpoints)
    assert 3 <= step_at_kill < 12 and not (Path(job.output_dir) / "model").exists()

    resumed = train_pretraining(job)
    assert resumed.resumed_from_checkpoint == str(killed_at) and resumed.global_step == 12
    assert resumed.loss_curve[0]["step"] == 2  # steps logged before the kill are kept
    # Totals of the whole run, not of the resumed part: every block of every step, the loss of every step.
    p = job.params
    blocks_trained = resumed.global_step * p.per_device_train_batch_size
    assert resumed.real_tokens == resumed.padded_tokens == blocks_trained * job.packed.block_size
    assert resumed.train_loss == pytest.approx(step_weighted_mean_loss(resumed.loss_curve))
    again = train_pretraining(job)
    assert again.reused and again.global_step == 12


def test_pretraining_runs_as_a_sagemaker_job_through_the_stand_in(tiny, moto_endpoint):
    """training.backend: sagemaker - the blocks folder (documents list inside) and the base model go as channels;
    the container's model keeps the documents it was trained on."""
    from llm_finetune.backends.sagemaker import clients_for, job_prefix, run_sagemaker_training
    from tests.sagemaker_helpers import jobs_spec

    spec = jobs_spec(moto_endpoint)
    job = pretrain_job(tiny["base"], tiny["packed"], params(max_steps=2, save_steps=100, backend="sagemaker"),
                       tiny["work"] / "sm")
    result = run_sagemaker_training(job, spec)

    assert result.global_step == 2 and result.block_size == 32
    assert seen_documents(result.model_dir) == seen_documents(tiny["packed"].path)
    prefix = job_prefix(spec, "tr", Path(job.output_dir).name)
    (summary,) = clients_for(spec).sagemaker.list_training_jobs(NameContains=prefix)["TrainingJobSummaries"]
    described = clients_for(spec).sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])
    assert {c["ChannelName"] for c in described["InputDataConfig"]} == {"base_model", "data"}
